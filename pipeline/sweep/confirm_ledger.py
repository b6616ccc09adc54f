"""The confirmation's state on disk, <sweep>/confirm.json, rewritten atomically after every
(temperature, seed) run that ends: its val top-1 (or the divergence that ended it) under the key
of what decided it, and the MLflow parent run of the confirmation in progress with the child runs
it already has. An interrupted `--confirm K` continues from it: a run whose key still matches is
reported again, never retrained; one whose params, code or data changed trains anew.

Runs are kept across confirmations (another K, a new sweep): the paper's 0.1 is in every one, and
a (T, seed) run does not depend on the sweep that chose T.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline import atomic
from pipeline.checkpoint import describe_changes, fingerprint
from pipeline.errors import UserError

LEDGER_FILE = "confirm.json"


def temperature_key(temperature: float) -> str:
    """A temperature as a JSON key: the shortest text that reads back as the same float."""
    return repr(float(temperature))


@dataclass
class RunRecord:
    key: dict
    """What decided the result (confirm_train.result_key): params, seed, code and data digests."""
    val_top1: float | None
    """The linear probe's best val top-1; None when training diverged."""
    best_epoch: int | None
    seconds: float
    mlflow_run_id: str
    """The child run that trained it (for a main-comparison run taken over: linear_eval's run)."""
    date: str
    error: str = ""
    """The divergence line, when the run failed (it would fail again the same way: not retried)."""


@dataclass
class ConfirmLedger:
    path: Path
    plan: dict = field(default_factory=dict)
    """The confirmation the MLflow runs below belong to: k, temperatures, seeds, epochs."""
    mlflow_run_id: str = ""
    """Its parent run."""
    logged: list[str] = field(default_factory=list)
    """"<T>/<seed>" of the runs that have a child run under that parent."""
    runs: dict[str, dict[str, RunRecord]] = field(default_factory=dict)
    """<T> -> <seed> -> the run that ended."""

    def begin(self, plan: dict) -> str:
        """Make `plan` the confirmation in progress; returns the parent run to reopen ('' for a
        new plan: its MLflow runs start afresh, the ended runs stay usable)."""
        if plan != self.plan:
            self.plan, self.mlflow_run_id, self.logged = plan, "", []
        return self.mlflow_run_id

    def ended(self, temperature: float, seed: int, key: dict) -> RunRecord | None:
        """The ended run of (temperature, seed) trained under `key`, or None (none, or another key)."""
        record = self._recorded(temperature, seed)
        return record if record is not None and fingerprint(record.key) == fingerprint(key) else None

    def outdated(self, temperature: float, seed: int, key: dict) -> str | None:
        """What differs when (temperature, seed) ended under another key ('code (pipeline.losses)'), else None."""
        record = self._recorded(temperature, seed)
        if record is None or fingerprint(record.key) == fingerprint(key):
            return None
        return describe_changes(record.key, key)

    def _recorded(self, temperature: float, seed: int) -> RunRecord | None:
        return self.runs.get(temperature_key(temperature), {}).get(str(seed))

    def record(self, temperature: float, seed: int, record: RunRecord) -> None:
        self.runs.setdefault(temperature_key(temperature), {})[str(seed)] = record
        self.mark_logged(temperature, seed)

    def has_child(self, temperature: float, seed: int) -> bool:
        return f"{temperature_key(temperature)}/{seed}" in self.logged

    def mark_logged(self, temperature: float, seed: int) -> None:
        if not self.has_child(temperature, seed):
            self.logged.append(f"{temperature_key(temperature)}/{seed}")
        self.save()

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        atomic.write_json(self.path, data)


def load(folder: Path) -> ConfirmLedger:
    """<folder>/confirm.json, or an empty ledger when there is none."""
    path = Path(folder) / LEDGER_FILE
    if not path.is_file():
        return ConfirmLedger(path)
    try:
        data = json.loads(path.read_text())
        runs = {t: {seed: _record(record) for seed, record in seeds.items()} for t, seeds in data.pop("runs").items()}
        return ConfirmLedger(path=path, runs=runs, **data)
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as err:
        raise UserError(f"{path}: not a confirmation state this code reads ({err}); delete it to confirm from scratch") from None


def _record(data: dict) -> RunRecord:
    record = RunRecord(**data)
    if not isinstance(record.key, dict):
        raise TypeError(f"a run's key is a {type(record.key).__name__}, not a mapping")
    return record
