"""`run_sweep`: one sweep from its settings to its results, with either backend.

Opens (or, resuming, reopens) the MLflow parent run and the ledger, runs the trials still to do,
and whatever happens (finished, Ctrl-C, an error) closes the open child runs, writes
results.csv / summary.json / the figure from the trials that ended, and ends the parent run
FINISHED, KILLED or FAILED. Every path is absolute: Ray runs trials in other directories.
"""

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pipeline.config import Params
from pipeline.config_schema import as_dict
from pipeline.errors import UserError
from pipeline.sweep import ledger as ledgers
from pipeline.sweep import results
from pipeline.sweep.grid import describe, enumerate_space
from pipeline.sweep.ledger import Ledger, TrialRecord
from pipeline.sweep.mlflow_runs import SweepRuns
from pipeline.sweep.ray_output import RAY_LOG
from pipeline.sweep.recorder import Recorder
from pipeline.sweep.spaces import SPACES
from pipeline.sweep.study import STUDY_FILE
from pipeline.sweep.trial import TrialSetup

BACKENDS = ("ray", "optuna")


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep and how; the CLI fills it from flags and params' `sweep` section."""

    space: str
    method: Literal["supcon", "ce"]
    folder: Path
    """sweeps/<name>: results, summary, figure, state, the Optuna study (and Ray's files)."""
    prepared: Path
    """The prepared store trials train on."""
    tracking_uri: str
    experiment: str
    num_samples: int = 8
    max_concurrent: int = 1
    epochs: int = 2
    backend: Literal["ray", "optuna"] = "ray"
    address: str | None = None
    storage_path: str | None = None
    """Ray's storage (a folder every node sees, or s3://...); None: <folder>/ray."""
    commit: str = "unknown"

    @property
    def name(self) -> str:
        return self.folder.name

    def settings(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples, "max_concurrent": self.max_concurrent, "epochs": self.epochs, "backend": self.backend,
            "address": self.address, "storage_path": self.storage_path, "scheduler": "ASHA grace_period 1, reduction_factor 2" if self.backend == "ray" else "optuna SuccessiveHalvingPruner min_resource 1, reduction_factor 2",
        }  # fmt: skip


@dataclass
class SweepOutcome:
    ledger: Ledger
    files: dict[str, Path]
    best: TrialRecord | None
    interrupted: bool
    new_trials: list[TrialRecord] = field(default_factory=list)

    @property
    def dvc_line(self) -> str | None:
        return results.dvc_line(self.best.params) if self.best else None


def sweep_name(space: str, method: str) -> str:
    return space if method == "supcon" else f"{space}-{method}"


def _fresh_ledger(spec: SweepSpec, objective: str) -> Ledger:
    """A new sweep replaces the previous one of the same name on disk (its MLflow runs stay)."""
    for stale in (ledgers.STATE_FILE, STUDY_FILE, RAY_LOG, results.RESULTS_FILE, results.SUMMARY_FILE, results.FIGURE_FILE):
        (spec.folder / stale).unlink(missing_ok=True)
    shutil.rmtree(spec.folder / "ray", ignore_errors=True)
    section = spec.method
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Ledger(spec.folder, spec.space, spec.method, section, spec.backend, spec.epochs, objective, started=started)


def run_sweep(params: Params, spec: SweepSpec, *, resume: bool = False, pruner: Any = None, echo=print) -> SweepOutcome:
    """Run (or continue) the sweep; `pruner` replaces the Optuna backend's default pruner."""
    from pipeline.data import load_prepared

    if spec.method not in SPACES[spec.space].methods:
        raise ValueError(f"space {spec.space} does not apply to method {spec.method}")
    # absolute: Ray trials run in another working directory
    files_root = Path(params.data.root).resolve() if params.data.root is not None else None
    data = load_prepared(spec.prepared, files_root=files_root)  # a missing or damaged store is one UserError now, not a failure per trial
    if len(data.val) == 0:
        raise UserError("data.val_fraction = 0: a sweep scores its trials on the val split; prepare one (e.g. data.val_fraction: 0.1) to sweep")
    setup = TrialSetup(
        params=params, section=spec.method, prepared=spec.prepared.resolve(), epochs=spec.epochs, threads=params.run.threads,
        train_fraction=params.sweep.train_fraction, files_root=files_root,
    )  # fmt: skip
    if setup.train_fraction is not None:
        from pipeline.sweep.trial import train_images

        train_images(data, params, setup.train_fraction)  # a fraction that empties a class: one line now
    if resume:
        ledger = ledgers.load(spec.folder)
        ledgers.check_resumable(ledger, backend=spec.backend, epochs=spec.epochs)
    else:
        ledger = _fresh_ledger(spec, setup.objective)
    runs = SweepRuns(spec.tracking_uri, spec.experiment)
    tags = {"stage": "sweep", "method": params.supcon.method if spec.method == "supcon" else "ce", "sweep.space": spec.space, "dataset": params.data.dataset}
    # val_images: the objective's sample size, from which the report bounds its sampling error
    settings = {**spec.settings(), "train_fraction": setup.train_fraction or params.data.train_fraction, "val_images": len(data.val.labels)}
    settings["searcher"] = describe(enumerate_space(spec.space, spec.method, params), spec.num_samples)
    raw = as_dict(params)  # the sweep as it ran (flags over params' sweep section), beside the params
    parent_params = {**raw, "sweep": {**raw.get("sweep", {}), "space": spec.space, "objective": setup.objective, **settings}}
    ledger.mlflow_run_id = runs.start_parent(spec.name, tags={**tags, "git_commit": spec.commit}, params=parent_params, resume_id=ledger.mlflow_run_id if resume else "")
    ledger.save()
    recorder = Recorder(ledger, runs, epochs=spec.epochs, tags=tags, seed=params.run.seeds[0], echo=echo)
    todo = spec.num_samples - ledger.done()
    before = len(ledger.trials)
    if resume:
        echo(f"resuming {spec.folder}: {ledger.done()} trial(s) done, {max(todo, 0)} to run")
    status = "FAILED"
    try:
        if todo > 0:
            _backend_run(spec, setup, recorder, todo, pruner, seed=params.run.seed, fresh=not resume)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
    finally:
        recorder.interrupt_open()
        files = results.write(ledger, commit=spec.commit, settings=settings)
        best = results.best_trial(ledger.trials)
        runs.finish(best=best.params if best else None, objective=best.objective if best else None, artifacts=list(files.values()), status=status)
    return SweepOutcome(ledger, files, best, interrupted=status == "KILLED", new_trials=ledger.trials[before:])


def _backend_run(spec: SweepSpec, setup: TrialSetup, recorder: Recorder, todo: int, pruner: Any, *, seed: int, fresh: bool) -> None:
    common = dict(space=spec.space, study_folder=spec.folder.resolve(), study_name=spec.name, seed=seed, samples=spec.num_samples, todo=todo, recorder=recorder, fresh=fresh)
    if spec.backend == "optuna":
        from pipeline.sweep import optuna_backend

        optuna_backend.run(setup, pruner=pruner, **common)
    else:
        from pipeline.sweep import tune_backend

        tune_backend.run(setup, max_concurrent=spec.max_concurrent, address=spec.address, storage_path=spec.storage_path, **common)
