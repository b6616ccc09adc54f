"""Finite spaces are run as a grid, not sampled: TPE re-proposes categorical values, so a sampled
`--space augmentation --samples 4` can train the same configuration twice with the same seed
(the same result bit for bit, a wasted trial). A space whose every suggestion is categorical is
enumerated; the sweep runs its configurations in order (params.yaml's own first), and samples
beyond the grid repeat it as replicates: replicate r of a configuration trains with training
seed run.seeds[0] + r, so a repeat measures seed variance instead of nothing.

Importing this module imports neither Ray nor Optuna.
"""

import itertools
from collections.abc import Mapping
from typing import Any

from pipeline.sweep.spaces import REPLICATE, SPACES
GRID_LIMIT = 64
"""Spaces with more configurations than this are sampled (TPE), not enumerated."""


class _Continuous(Exception):
    """The space suggests a float: it has no grid."""


class _Walk:
    """Answers a space's suggestions from a fixed list of choice indices, recording each choice
    list, so a depth-first walk visits every configuration of a define-by-run space."""

    def __init__(self, path: tuple[int, ...]) -> None:
        self.path, self.values, self.widths = path, {}, []

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        raise _Continuous(name)

    def suggest_categorical(self, name: str, choices: tuple) -> Any:
        depth = len(self.widths)
        self.widths.append(len(choices))
        value = choices[self.path[depth] if depth < len(self.path) else 0]
        self.values[name] = value
        return value


def enumerate_space(space: str, section: str, base: Any = None) -> list[dict[str, Any]] | None:
    """Every configuration of a categorical-only space, in the order its choices are listed;
    None for a space with a continuous value or more than GRID_LIMIT configurations."""
    found, stack = [], [()]
    while stack:
        path = stack.pop()
        walk = _Walk(path)
        try:
            SPACES[space].sample(walk, section, base)
        except _Continuous:
            return None
        if len(path) < len(walk.widths):  # a choice left at its first value: branch on it
            stack.extend(path + (i,) for i in reversed(range(walk.widths[len(path)])))
            continue
        found.append(walk.values)
        if len(found) > GRID_LIMIT:
            return None
    return found


def planned(grid: list[dict[str, Any]], samples: int, first: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The first `samples` trials: the grid (`first`, params.yaml's configuration, leading), then
    the grid again as replicate 1, 2, ..."""
    ordered = sorted(grid, key=lambda config: config != dict(first or {}))  # stable: the rest keep their order
    cycle = ({**config, REPLICATE: r} for r in itertools.count() for config in ordered)
    return list(itertools.islice(cycle, samples))


def replicate_of(values: Mapping[str, Any]) -> int:
    return int(values.get(REPLICATE, 0))


def config_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params values without its replicate number."""
    return {key: value for key, value in values.items() if key != REPLICATE}


def describe(grid: list[dict[str, Any]] | None, samples: int) -> str:
    """The searcher, in words, for the sweep's settings and its MLflow parent run."""
    if grid is None:
        return "optuna TPE (seeded with run.seed)"
    repeats = f", then replicates (training seed run.seeds[0] + replicate) up to {samples} trials" if samples > len(grid) else ""
    return f"grid of its {len(grid)} configurations (params.yaml's first){repeats}"
