"""What happens on the driver when a trial starts, reports an epoch and ends, whichever backend
runs it: its MLflow child run is opened, gets each epoch's metrics (step = epoch) and is closed
with its end state, and the ended trial goes into the ledger (state.json)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.sweep.grid import REPLICATE, replicate_of
from pipeline.sweep.ledger import FAILED, FINISHED, STOPPED, Ledger, TrialRecord
from pipeline.sweep.mlflow_runs import SweepRuns


@dataclass
class OpenTrial:
    values: dict[str, Any]
    run_id: str
    epochs: int = 0
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    node: str = ""


class Recorder:
    def __init__(self, ledger: Ledger, runs: SweepRuns, *, epochs: int, tags: Mapping[str, str], seed: int = 0, echo: Callable[[str], None] = print) -> None:
        self.ledger, self.runs, self.epochs, self.tags, self.seed, self.echo = ledger, runs, epochs, dict(tags), seed, echo
        self.open: dict[int, OpenTrial] = {}
        self.ended = 0
        """Trials ended by this process (any state)."""

    def start(self, values: Mapping[str, Any]) -> int:
        number = max([self.ledger.next_number(), *(n + 1 for n in self.open)])
        replicate = replicate_of(values)
        tags = {**self.tags, "seed": str(self.seed + replicate), **({"sweep.replicate": str(replicate)} if REPLICATE in values else {})}
        self.open[number] = OpenTrial(dict(values), self.runs.start_trial(number, values, tags=tags))
        self.echo(f"trial {number} started: {_shown(values)}")
        return number

    def place(self, number: int, node: str) -> None:
        """Where trial `number` runs (tag sweep.node; results.csv's node column)."""
        trial = self.open[number]
        if node and node != trial.node:
            trial.node = node
            self.runs.tag(trial.run_id, "sweep.node", node)

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        trial = self.open[number]
        self.runs.log_epoch(trial.run_id, epoch, metrics)
        trial.epochs = max(trial.epochs, epoch)
        trial.metrics.update(metrics)
        if self.ledger.objective in metrics:
            trial.objective = float(metrics[self.ledger.objective])

    def objective(self, number: int) -> float | None:
        return self.open[number].objective

    def end(self, number: int, state: str | None = None, error: str = "") -> TrialRecord:
        """Close trial `number`: state None means finished when it trained every epoch, else stopped early."""
        trial = self.open.pop(number)
        if state is None:
            state = FINISHED if trial.epochs >= self.epochs else STOPPED
        self.runs.end_trial(trial.run_id, state, error)
        record = TrialRecord(number, trial.values, state, trial.epochs, trial.objective, trial.metrics, trial.run_id, error, trial.node)
        self.ledger.add(record)
        self.ended += 1
        result = f"{self.ledger.objective} {trial.objective:.4f}" if trial.objective is not None else "no result"
        reason = f": {error.strip().splitlines()[-1]}" if state == FAILED and error.strip() else ""
        where = f" on {trial.node}" if trial.node else ""
        self.echo(f"trial {number} {state} after {trial.epochs} epoch(s){where}: {_shown(trial.values)} -> {result}{reason}")
        return record

    def interrupt_open(self) -> None:
        """Close the child runs of trials still running (Ctrl-C): KILLED, end state `interrupted`;
        they are not in the ledger, so a resumed sweep runs new trials in their place."""
        for number in list(self.open):
            self.runs.end_trial(self.open.pop(number).run_id, "interrupted")


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
