"""The Optuna study both backends sample from: TPE, seeded, stored in sqlite beside the sweep's
results, so `--resume` continues the search where it stopped (TPE sees every earlier trial).

Only the driver process opens it (Ray's OptunaSearch runs on the driver), so sqlite's single
writer is never contended.
"""

from pathlib import Path
from typing import Any

STUDY_FILE = "optuna.db"


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(Path(folder) / STUDY_FILE).resolve()}"


def storage(folder: Path) -> Any:
    import optuna

    return optuna.storages.RDBStorage(storage_url(folder))


def open_study(folder: Path, name: str, *, seed: int, samples: int, pruner: Any = None) -> Any:
    """Create or load study `name` in <folder>/optuna.db (maximising the objective).

    TPE starts from max(2, samples // 2) random proposals (Optuna's 10 would make a short sweep a
    random search), seeded with `seed` plus the trials the study holds, so a resumed study does
    not draw its first proposals again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage(folder), pruner=pruner, direction="maximize", load_if_exists=True)
    held = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed + held, n_startup_trials=min(10, max(2, samples // 2)))
    return study


class _ConfiguredValues:
    """Answers a space's suggestions with params' own values, noting whether they lie in the space."""

    def __init__(self, raw: dict) -> None:
        self.raw, self.values, self.inside = raw, {}, True

    def _value(self, name: str) -> Any:
        node = self.raw
        for part in name.split("."):
            node = node[part]
        self.values[name] = node
        return node

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        value = self._value(name)
        self.inside &= isinstance(value, int | float) and low <= value <= high
        return value

    def suggest_categorical(self, name: str, choices: tuple) -> Any:
        value = self._value(name)
        self.inside &= value in choices
        return value


def enqueue_configured(study: Any, sample: Any, raw_params: dict) -> dict | None:
    """Make params.yaml's own values the first trial of a new sweep (when they lie in the space), so
    the sweep always measures the configured setting beside the proposals. Returns them or None."""
    configured = _ConfiguredValues(raw_params)
    sample.space_only(configured)
    if not configured.inside:
        return None
    study.enqueue_trial(configured.values)
    return configured.values


def enqueue_grid(study: Any, grid: list[dict], samples: int, raw_params: dict, sample: Any) -> int:
    """Queue the trials of a grid sweep (grid.py) that the study has not run or queued yet: the
    first `samples` of its plan. A failed or interrupted trial's configuration is queued again.
    Returns how many were queued."""
    import optuna

    from pipeline.sweep.grid import planned

    configured = _ConfiguredValues(raw_params)
    sample.space_only(configured)
    first = configured.values if configured.inside else None
    kept = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    held = [_queued_params(t) for t in study.get_trials(deepcopy=False, states=kept)]
    queued = 0
    for values in planned(grid, samples, first):
        if values in held:
            held.remove(values)
            continue
        study.enqueue_trial(values)
        queued += 1
    return queued


def _queued_params(trial: Any) -> dict:
    """A trial's values: what it suggested, or for one still queued, what it was queued with."""
    return dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))


def queue_trials(study: Any, space: str, section: str, params: Any, *, samples: int, fresh: bool) -> Any:
    """The space's define-by-run function for this sweep, with the study's queue filled: a finite
    space's grid (grid.py), or for a sampled one, params.yaml's own values first (new sweeps)."""
    from pipeline.config_schema import as_dict
    from pipeline.sweep.grid import enumerate_space
    from pipeline.sweep.spaces import DefineByRun

    grid = enumerate_space(space, section, params)
    sample = DefineByRun(space, section, params, grid=grid is not None)
    if grid is not None:
        enqueue_grid(study, grid, samples, as_dict(params), sample)
    elif fresh:
        enqueue_configured(study, sample, as_dict(params))
    return sample


def close_stale_trials(study: Any) -> int:
    """Mark trials an interrupted run left RUNNING as failed (they never finished); returns how many."""
    import optuna

    stale = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for number in stale:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    return len(stale)
