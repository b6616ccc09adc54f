"""The search spaces, defined once: both backends sample them through Optuna's define-by-run API.

A space is a function of an Optuna-like trial (`suggest_float`, `suggest_categorical`) and the
config section it sweeps ("supcon" or "ce"); the names it suggests are dotted params keys
(`supcon.temperature`), so a trial's values apply to params.yaml's structure as they are and
print as `dvc exp run -S key=value`. Importing this module imports neither Ray nor Optuna.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

METHODS = ("supcon", "ce")

# Base learning rates (per 256 images, params use scale_lr) per optimizer: log-uniform ranges
# around what works for each (SGD/LARS take large steps, RMSprop/AdamW small ones).
LR_RANGES: dict[str, tuple[float, float]] = {
    "sgd": (0.05, 1.0),
    "lars": (0.1, 2.0),
    "rmsprop": (1e-4, 1e-2),
    "adamw": (1e-4, 1e-2),
}
AUGMENTATIONS = ("simaugment", "autoaugment", "randaugment", "stacked_randaugment")
BATCH_SIZES = (64, 128, 256, 512)
HEADS = ("mlp", "linear")
FEAT_DIMS = (32, 64, 128, 256)
VARIANTS = ("out", "in")
TEMPERATURE = (0.03, 1.0)
# The momentum-key queue (supcon.memory): 0 = off, then 4x steps up to ImageNet-scale queues
# (a queue larger than a trial's training images is capped at them); MoCo-style momenta.
MEMORY_SIZES = (0, 1024, 4096, 16384)
MEMORY_MOMENTA = (0.9, 0.99, 0.999)
REPLICATE = "replicate"
"""A grid sweep's trial value naming a configuration's repeat (0: its first run; grid.py); not a
params key: replicate r trains with training seed run.seeds[0] + r."""
REPLICATE_MAX = 10**6


class Suggest(Protocol):
    """The part of optuna.Trial a space uses (a test can pass its own)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: tuple) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


@dataclass(frozen=True)
class Space:
    name: str
    help: str
    """One line for --help and --list."""
    methods: tuple[str, ...]
    """Config sections it applies to (temperature, head and variant exist for SupCon only)."""
    sample: Callable[[Suggest, str, Any], None]
    """(trial, section, base params) -> None; suggests the space's dotted keys on the trial."""
    primary: Callable[[str], str]
    """section -> the dotted key plotted on the x axis and named first."""


def _temperature(trial: Suggest, section: str, base: Any) -> None:
    trial.suggest_float(f"{section}.temperature", *TEMPERATURE, log=True)


def _optimizer(trial: Suggest, section: str, base: Any) -> None:
    name = trial.suggest_categorical(f"{section}.optimizer.name", tuple(LR_RANGES))
    trial.suggest_float(f"{section}.optimizer.lr", *LR_RANGES[name], log=True)


def _augmentation(trial: Suggest, section: str, base: Any) -> None:
    trial.suggest_categorical(f"{section}.augmentation.policy", AUGMENTATIONS)


def _lr(trial: Suggest, section: str, base: Any) -> None:
    # The range of the optimizer params.yaml configures for this section.
    name = getattr(base, section).optimizer.name if base is not None else "sgd"
    trial.suggest_float(f"{section}.optimizer.lr", *LR_RANGES.get(name, LR_RANGES["sgd"]), log=True)


def _batch_size(trial: Suggest, section: str, base: Any) -> None:
    trial.suggest_categorical(f"{section}.batch_size", BATCH_SIZES)


def _head(trial: Suggest, section: str, base: Any) -> None:
    trial.suggest_categorical("model.head", HEADS)
    trial.suggest_categorical("model.feat_dim", FEAT_DIMS)


def _variant(trial: Suggest, section: str, base: Any) -> None:
    trial.suggest_categorical(f"{section}.variant", VARIANTS)


def _memory(trial: Suggest, section: str, base: Any) -> None:
    size = trial.suggest_categorical(f"{section}.memory.size", MEMORY_SIZES)
    if size > 0:  # without a queue the momentum changes nothing: no trial is spent on it
        trial.suggest_categorical(f"{section}.memory.momentum", MEMORY_MOMENTA)


def _key(suffix: str) -> Callable[[str], str]:
    return lambda section: suffix if suffix.startswith("model.") else f"{section}.{suffix}"


BOTH, SUPCON = METHODS, ("supcon",)
SPACES: dict[str, Space] = {
    space.name: space
    for space in (
        Space("temperature", f"supcon.temperature, log-uniform {TEMPERATURE[0]} to {TEMPERATURE[1]} (SupCon only)", SUPCON, _temperature, _key("temperature")),
        Space("optimizer", "optimizer.name in " + ", ".join(LR_RANGES) + ", each with its optimizer.lr range", BOTH, _optimizer, _key("optimizer.name")),
        Space("augmentation", "augmentation.policy in " + ", ".join(AUGMENTATIONS), BOTH, _augmentation, _key("augmentation.policy")),
        Space("lr", "optimizer.lr, log-uniform over the configured optimizer's range", BOTH, _lr, _key("optimizer.lr")),
        Space("batch_size", "batch_size in " + ", ".join(map(str, BATCH_SIZES)), BOTH, _batch_size, _key("batch_size")),
        Space("head", "model.head in " + ", ".join(HEADS) + "; model.feat_dim in " + ", ".join(map(str, FEAT_DIMS)) + " (SupCon only)", SUPCON, _head, _key("model.head")),
        Space("variant", "supcon.variant in " + ", ".join(VARIANTS) + ": L_out or L_in (SupCon only)", SUPCON, _variant, _key("variant")),
        Space("memory", "supcon.memory.size in " + ", ".join(map(str, MEMORY_SIZES)) + "; memory.momentum in " + ", ".join(map(str, MEMORY_MOMENTA)) + " with a queue (SupCon only)", SUPCON, _memory, _key("memory.size")),
    )
}  # fmt: skip


def listing() -> str:
    """The spaces, one per line, for --help and --list."""
    width = max(map(len, SPACES))
    return "\n".join(f"  {name:<{width}}  {space.help}" for name, space in SPACES.items())


def spaces_for(method: str) -> list[str]:
    return [name for name, space in SPACES.items() if method in space.methods]


@dataclass(frozen=True)
class DefineByRun:
    """Space `name` over config `section` as an Optuna define-by-run function (what OptunaSearch
    and the plain Optuna loop call); a dataclass, not a closure, so Ray can pickle the searcher."""

    name: str
    section: str
    base: Any = None
    """The base Params (the lr space reads the configured optimizer)."""
    grid: bool = False
    """A grid sweep: every trial is queued with its values and a replicate number (grid.py)."""

    def __call__(self, trial: Any) -> None:
        self.space_only(trial)
        if self.grid:
            # An integer, not a categorical over range(n): its range may grow on --resume --samples,
            # which Optuna refuses for a categorical. Queued trials fix it, so TPE never samples it.
            trial.suggest_int(REPLICATE, 0, REPLICATE_MAX)

    def space_only(self, trial: Any) -> None:
        SPACES[self.name].sample(trial, self.section, self.base)
