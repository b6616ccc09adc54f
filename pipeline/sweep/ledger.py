"""The sweep's state on disk, <sweep>/state.json: its settings, its MLflow parent run, and every
trial that ended (finished, stopped early, failed), rewritten atomically by the driver after each
one. `--resume` reads it: ended trials are never run again, and results.csv / summary.json are
rebuilt from it whatever happened to the process.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.errors import UserError

STATE_FILE = "state.json"
FINISHED, STOPPED, FAILED = "finished", "stopped early", "failed"
"""A trial's end state (MLflow: FINISHED, KILLED, FAILED; the tag sweep.end_state says which)."""


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    """The trial's values, dotted keys (supcon.temperature)."""
    state: str
    epochs: int
    """Epochs it trained (fewer than the sweep's when stopped early)."""
    objective: float | None
    """The objective at its last reported epoch (None: it failed before reporting one)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Its last reported metrics."""
    mlflow_run_id: str = ""
    error: str = ""
    node: str = ""
    """Where it ran: a Ray node as <ip>/<first 8 hex of its node id> (two nodes of one host
    differ), or this host's name for the plain Optuna backend."""


@dataclass
class Ledger:
    folder: Path
    space: str
    method: str
    section: str
    backend: str
    epochs: int
    objective: str
    mlflow_run_id: str = ""
    started: str = ""
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.folder / STATE_FILE

    def add(self, record: TrialRecord) -> None:
        self.trials.append(record)
        self.save()

    def next_number(self) -> int:
        return max((t.number for t in self.trials), default=-1) + 1

    def done(self) -> int:
        """Trials that ended with a result (finished or stopped early): they count as samples."""
        return sum(t.state in (FINISHED, STOPPED) for t in self.trials)

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "folder"}
        atomic.write_json(self.path, data)


def load(folder: Path) -> Ledger:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no sweep to resume (no {STATE_FILE}); run the sweep without --resume")
    try:
        data = json.loads(path.read_text())
        trials = [TrialRecord(**t) for t in data.pop("trials")]
        return Ledger(folder=Path(folder), trials=trials, **data)
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise UserError(f"{path}: not a sweep state this code reads ({err}); start the sweep again without --resume") from None


def check_resumable(ledger: Ledger, *, backend: str, epochs: int) -> None:
    """A resumed sweep must compare like with like: the same backend and epochs per trial."""
    for key, was, now in (("--backend", ledger.backend, backend), ("--epochs", ledger.epochs, epochs)):
        if was != now:
            raise UserError(f"{key} {now} differs from the sweep being resumed ({was}); pass {key} {was} or start anew without --resume")
