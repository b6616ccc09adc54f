"""MLflow: one run per stage run, with flattened params, tags, per-epoch metrics and artifacts.

Only the main process logs (`dist.is_main_process()`); other ranks get a `NullRun`. MLflow is
imported lazily because it takes seconds to import and most library users never need it.
"""

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline import dist
from pipeline.config_schema import flatten

MAX_METRICS_PER_REQUEST = 1000  # MLflow's limit on one log_batch (mlflow.utils.validation)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""MLflow 3's UI opens a GenAI experiment on its traces overview; this kind opens on model
training (runs, metrics, charts), which is what every run here is."""


def tracking_uri(configured: str | None, default_db: Path) -> str:
    """MLFLOW_TRACKING_URI, else params' tracking.uri, else sqlite at an absolute path."""
    # MLflow 3.13+ refuses the old ./mlruns file store, and Ray trials change the working
    # directory, so the default is sqlite with an absolute path.
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{Path(default_db).resolve()}"


def git_commit(cwd: Path | None = None) -> str:
    """HEAD's commit hash (with '-dirty' when the tree has changes), or 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class Run:
    """An open MLflow run: the only logging surface the stages use."""

    def __init__(self, mlflow_module: Any, run: Any) -> None:
        self._mlflow = mlflow_module
        self.run_id: str = run.info.run_id
        self.experiment_id: str = run.info.experiment_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_epochs(self, rows: Sequence[Mapping[str, float]], prefix: str = "") -> None:
        """Each row's metrics (`prefix` + key) at step row["epoch"], in as few requests as MLflow
        takes (MAX_METRICS_PER_REQUEST values each): the epochs since the last checkpoint at once."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(prefix + key, float(value), now, int(row["epoch"])) for row in rows for key, value in row.items() if key != "epoch"]
        client = self._mlflow.MlflowClient()
        for start in range(0, len(metrics), MAX_METRICS_PER_REQUEST):
            client.log_batch(self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_REQUEST])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_figure(self, figure: Any, name: str) -> None:
        self._mlflow.log_figure(figure, name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._mlflow.set_tags(dict(tags))

    def log_dataset(self, path: Path, *, name: str, digest: str, context: str) -> None:
        """Record the dataset the run read (the UI's Dataset column): its local folder, by name
        and content digest; metadata only, the data stays where it is."""
        from mlflow.data.dataset_source_registry import get_dataset_source_from_json
        from mlflow.data.meta_dataset import MetaDataset

        source = get_dataset_source_from_json(json.dumps({"uri": str(Path(path).resolve())}), source_type="local")
        self._mlflow.log_input(MetaDataset(source, name=name, digest=digest[:36]), context=context)

    def log_model(self, model: Any, name: str, example: Any) -> str:
        """Log `model` as an MLflow model that `mlflow.pytorch.load_model` loads; returns its URI.

        Saved as a torch.export graph (MLflow's pt2 format, traced on `example`, a small input
        batch): loading needs torch only, not this project's code, and runs no pickled code.
        """
        import mlflow.pytorch
        import torch

        requirement = f"torch=={torch.__version__.split('+')[0]}"
        # validate_serving_input=False: MLflow would otherwise load the exported graph back and run
        # the example through it on every log (about 5 s a model, twice per seed); loading from
        # runs:/<id>/model is tested against the stage's checkpoint instead.
        info = mlflow.pytorch.log_model(
            model, name=name, serialization_format="pt2", input_example=example, pip_requirements=[requirement], validate_serving_input=False,
        )  # fmt: skip
        return info.model_uri


class NullRun:
    """Stand-in on non-main ranks (and when tracking is off): accepts every call, logs nothing."""

    run_id = ""
    experiment_id = ""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


@contextmanager
def start_run(
    *,
    uri: str,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    resume_run_id: str | None = None,
) -> Iterator[Run | NullRun]:
    """Open (or, after an interruption, reopen) an MLflow run; params are logged flattened.

    `resume_run_id` continues the run a killed stage left behind, so one stage run stays one
    MLflow run across restarts. The run ends FINISHED on success and FAILED on an exception.
    """
    if not dist.is_main_process():
        yield NullRun()
        return
    import mlflow

    mlflow.set_tracking_uri(uri)
    open_experiment(mlflow, experiment)
    active = _reopen(mlflow, resume_run_id) or mlflow.start_run(run_name=run_name)
    with active:  # mlflow's context manager marks the run FAILED or KILLED on an exception
        if active.info.run_id != resume_run_id:
            _log_params(mlflow, params)
        mlflow.set_tags(dict(tags))
        yield Run(mlflow, active)


def open_experiment(mlflow: Any, name: str) -> str:
    """Make `name` the active experiment (created if missing) of kind model training; its id."""
    found = mlflow.set_experiment(name)
    if any(found.tags.get(key) != value for key, value in EXPERIMENT_KIND.items()):
        for key, value in EXPERIMENT_KIND.items():
            mlflow.MlflowClient().set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def _reopen(mlflow: Any, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        return mlflow.start_run(run_id=run_id)
    except Exception:  # the run was deleted or the store changed: start a fresh one
        return None


def _log_params(mlflow: Any, params: Mapping[str, Any]) -> None:
    flat = {key: _param_value(value) for key, value in flatten(params).items()}
    # MLflow caps a batch at 100 params.
    items = list(flat.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


def _param_value(value: Any) -> str:
    return "null" if value is None else str(value)
