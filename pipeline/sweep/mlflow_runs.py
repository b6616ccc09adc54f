"""Driver-side MLflow logging: one parent run per sweep, one child run per trial.

Only the driver writes (an MlflowClient in the process that runs the search): Ray trials only
report to Tune, and a callback on the driver logs what they report. So a sqlite store never sees
two writers (no "database is locked", no two processes creating its schema at once) and no
trial can fail or be lost because of tracking. Works the same against an MLflow server.
"""

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config_schema import flatten

END_STATUS = {"finished": "FINISHED", "stopped early": "KILLED", "failed": "FAILED", "interrupted": "KILLED"}
_BATCH = 100  # MLflow's cap on params per log_batch
_METRICS_BATCH = 1000  # and on metrics


class SweepRuns:
    """The sweep's parent run and its children, through one MlflowClient."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.parent_id = ""

    def start_parent(self, name: str, *, tags: Mapping[str, str], params: Mapping[str, Any], resume_id: str = "") -> str:
        """Open the parent run, or reopen `resume_id` (a resumed sweep keeps its parent run)."""
        if resume_id and self._exists(resume_id):
            self.parent_id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
            self.client.set_tag(resume_id, "sweep.resumed", "true")
            return resume_id
        run = self.client.create_run(self.experiment_id, run_name=f"sweep-{name}", tags=dict(tags))
        self.parent_id = run.info.run_id
        self._params(self.parent_id, params)
        return self.parent_id

    def start_trial(self, number: int, values: Mapping[str, Any], *, tags: Mapping[str, str]) -> str:
        return self.start_child(f"trial-{number}", values, tags={"sweep.trial": str(number), **tags})

    def start_child(self, name: str, values: Mapping[str, Any], *, tags: Mapping[str, str]) -> str:
        """A child run of the parent: a trial, or one (temperature, seed) run of a confirmation."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"mlflow.parentRunId": self.parent_id, **tags})
        self._params(run.info.run_id, values)
        return run.info.run_id

    def tag(self, run_id: str, key: str, value: str) -> None:
        """One tag on a run already started (a trial's node, known once Ray has placed it)."""
        self.client.set_tag(run_id, key, value)

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, epoch) for key, value in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)

    def log_history(self, run_id: str, rows: list[Mapping[str, float]]) -> None:
        """History rows (each with its `epoch`) at step = epoch, in as few requests as MLflow takes:
        a full-length run hands over the epochs since its last checkpoint at once."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, int(row["epoch"])) for row in rows for key, value in row.items() if key != "epoch"]
        for start in range(0, len(batch), _METRICS_BATCH):
            self.client.log_batch(run_id, metrics=batch[start : start + _METRICS_BATCH])

    def end_trial(self, run_id: str, state: str, error: str = "") -> None:
        self.client.set_tag(run_id, "sweep.end_state", state)
        if error:
            self.client.set_tag(run_id, "sweep.error", error[:5000])
        self.client.set_terminated(run_id, status=END_STATUS[state])

    def finish(self, *, best: Mapping[str, Any] | None, objective: float | None, artifacts: list[Path], status: str) -> None:
        """Best config (tags best.<key>, metric best/objective), the result files, the end status."""
        if best:
            for key, value in best.items():
                self.client.set_tag(self.parent_id, f"best.{key}", str(value))
        if objective is not None:
            self.client.log_metric(self.parent_id, "best/objective", float(objective))
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(self.parent_id, str(path), artifact_path="sweep")
        self.client.set_terminated(self.parent_id, status=status)

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
        except Exception:  # deleted, or another store
            return False
        return True

    def _params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, "null" if value is None else str(value)) for key, value in flatten(params).items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[start : start + _BATCH])
