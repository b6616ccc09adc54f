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
    sample(configured)
    if not configured.inside:
        return None
    study.enqueue_trial(configured.values)
    return configured.values


def close_stale_trials(study: Any) -> int:
    """Mark trials an interrupted run left RUNNING as failed (they never finished); returns how many."""
    import optuna

    stale = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for number in stale:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    return len(stale)
