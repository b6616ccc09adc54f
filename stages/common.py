"""Glue the training stages share: one `training_stage` sets a stage's run up (device, data, key,
resume, MLflow), and its job scores the test split and writes metrics and plots."""

import copy
import csv
import dataclasses
import io
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from pipeline import atomic, checkpoint, dist, environment, figures, methods, provenance, tracking
from pipeline.config import RESULT_NEUTRAL_KEYS, Params
from pipeline.config_schema import as_dict
from pipeline.data import PreparedDataset, Split, load_prepared
from pipeline.device import place_model, resolve_device
from pipeline.dvc_experiment import experiment_tags
from pipeline.errors import UserError
from pipeline.evaluate import classification_metrics, confusion_matrix, per_class_top1
from pipeline.long_tail import long_tailed_split
from pipeline.preprocess import predict
from pipeline.reduced import labelled_subset
from pipeline.run_context import RunContext
from pipeline.sync_batchnorm import sync_batchnorm
from pipeline.training import Trained, train
from stages import paths


@dataclass(frozen=True)
class Cell:
    """A reduced-data cell: the labelled fraction it trains on, its method and its training seed."""

    fraction: int | float
    """As params.yaml's reduced.fractions types it (1 or 1.0): the name spells it the same way."""
    method: str
    seed: int

    per_class: ClassVar[bool] = False
    """Whether the cell's metrics carry per-class test top-1 and train counts."""

    @property
    def name(self) -> str:
        # As dvc.yaml renders ${item.fraction}: str() of the YAML value, so 1 -> "1", 1.0 -> "1.0".
        return f"{self.method}-{self.fraction}-seed{self.seed}"

    @property
    def fields(self) -> dict:
        """What names the cell in its metrics file."""
        return {"cell": self.name, "fraction": self.fraction, "method": self.method, "seed": self.seed}

    @property
    def key(self) -> dict:
        return {"cell": {"fraction": self.fraction, "seed": self.seed}}

    @property
    def tags(self) -> dict[str, str]:
        return {"fraction": str(self.fraction), "cell": self.name}

    @property
    def folder(self) -> Path:
        return paths.reduced_dir(self.name)

    @property
    def output(self) -> str:
        return f"reduced/{self.name}"

    def train_split(self, data: PreparedDataset, params: Params) -> Split:
        """Its labelled fraction of the whole (balanced) train split."""
        return labelled_subset(data, self.fraction, params.run.seed)


@dataclass(frozen=True)
class LongTailCell:
    """A long-tailed-data cell: the imbalance factor it trains at, its method and its training seed."""

    factor: int | float
    """As params.yaml's long_tail.factors types it (10 or 10.0): the name spells it the same way."""
    method: str
    seed: int
    per_class: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return f"{self.method}-{self.factor}-seed{self.seed}"  # as dvc.yaml renders ${item.factor}

    @property
    def fields(self) -> dict:
        return {"cell": self.name, "factor": self.factor, "method": self.method, "seed": self.seed}

    @property
    def key(self) -> dict:
        return {"cell": {"factor": self.factor, "seed": self.seed}}

    @property
    def tags(self) -> dict[str, str]:
        return {"imbalance_factor": str(self.factor), "cell": self.name}

    @property
    def folder(self) -> Path:
        return paths.long_tail_dir(self.name)

    @property
    def output(self) -> str:
        return f"long_tail/{self.name}"

    def train_split(self, data: PreparedDataset, params: Params) -> Split:
        """What the main stages train on, made long-tailed at this cell's factor."""
        return long_tailed_split(data.subset(params.data.train_fraction), params.data.imbalance, params.run.seed, factor=self.factor, key="long_tail.factors")


@dataclass(frozen=True)
class SmallBatchCell:
    """A small-batch cell: its batch, queue size (0 = none), what it keeps equal to the main SupCon
    run (steps or epochs; pipeline/small_batch.py) and its training seed. Always contrastive."""

    batch_size: int
    queue: int
    equal: str
    seed: int
    method: ClassVar[str] = "supcon"
    per_class: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return f"b{self.batch_size}-q{self.queue}-{self.equal}-seed{self.seed}"  # as dvc.yaml renders it

    @property
    def fields(self) -> dict:
        return {"cell": self.name, "batch_size": self.batch_size, "queue": self.queue, "equal": self.equal, "seed": self.seed}

    @property
    def key(self) -> dict:
        return {"cell": {"batch_size": self.batch_size, "queue": self.queue, "equal": self.equal, "seed": self.seed}}

    @property
    def tags(self) -> dict[str, str]:
        return {"batch_size": str(self.batch_size), "queue": str(self.queue), "equal": self.equal, "cell": self.name}

    @property
    def folder(self) -> Path:
        return paths.small_batch_dir(self.name)

    @property
    def output(self) -> str:
        return f"small_batch/{self.name}"

    def train_split(self, data: PreparedDataset, params: Params) -> Split:
        """What the main stages train on: the comparison is with their SupCon run."""
        return train_split(data, params)


MatrixCell = Cell | LongTailCell | SmallBatchCell
"""A cell of one of the matrix stages (reduced_data, long_tail, small_batch)."""


def train_split(data: PreparedDataset, params: Params) -> Split:
    """The train split of the main stages: data.train_fraction's subset, long-tailed when
    data.imbalance.factor is set (pipeline/long_tail.py). Val and test are never subsampled."""
    return long_tailed_split(data.subset(params.data.train_fraction), params.data.imbalance, params.run.seed)


@dataclass
class StageJob:
    """One training stage's run: what to train on, how it is hosted, and where its results go."""

    stage: str
    trains: str
    """The config section whose method this stage trains (supcon, ce, linear)."""
    params: Params
    device: torch.device
    data: PreparedDataset
    train_split: Split
    context: RunContext
    run: tracking.Run | tracking.NullRun
    env: dict[str, str]
    output: str
    """metrics/<output>.json and plots/<output>.csv."""
    cell: MatrixCell | None = None

    def train(self, **kwargs) -> Trained:
        """Train this stage's method on its train split (pipeline.training.train); kwargs: config, model_config, encoder."""
        return train(self.trains, self.data, self.train_split, run=self.context, **kwargs)

    def then(self, trains: str, *, model_dir: str, sections: tuple[str, ...], epochs: int, inputs: dict[str, str], key: dict | None = None) -> "StageJob":
        """A second training in the same MLflow run (a cell's linear probe after its pretraining),
        with its own checkpoint, key and resume state; its epoch metrics are logged as probe/*."""
        methods.method(trains)
        checkpoint_path = _checkpoint_path(model_dir, self.context.seed, self.cell)
        config = run_config(self.params, *sections, inputs={"prepared": prepared_digest(self.params), **inputs}, seed=self.context.seed, extra=key)
        resume = resume_state(checkpoint_path, config, epochs=epochs)
        context = dataclasses.replace(
            self.context, checkpoint_path=checkpoint_path, config=config, resume=resume, log_epochs=epoch_logger(self.run, prefix="probe/")
        )
        return dataclasses.replace(self, trains=trains, context=context)

    def selected_epoch(self) -> dict[str, float]:
        """The epoch model selection kept (best val top-1) and its val top-1, from the BEST file;
        nothing without a val split (data.val_fraction 0): the last epoch is the model, and the
        report says so. A BEST file that is gone (deleted beside a finished last.pt) is one line:
        the selected epoch cannot be recovered, and its test score must not be reported."""
        path = self.context.checkpoint_path.with_name(checkpoint.BEST)
        best = checkpoint.best_so_far(path)
        if best is None:
            last = self.context.checkpoint_path
            raise UserError(f"{path}: missing or unreadable, so the epoch model selection kept is unknown; delete {last} too and rerun to train again")
        if best["val_top1"] is None:
            return {}
        return {"best_epoch": best["epoch"], "val/top1_best": best["val_top1"]}

    def score_test(self, predictor: nn.Module, *, per_class: bool = False) -> dict:
        """Test metrics of `predictor` (uint8 images -> logits), read once; logs the confusion matrix.
        per_class: also each class's test top-1 and train images (by class index), which the
        report groups into head, middle and tail by train-class size."""
        logits = predict(predictor, self.data.test.images, preprocess=lambda images: images, device=self.device)
        log_confusion(self.run, confusion_matrix(logits, self.data.test.labels), self.data.class_names, self.output)
        # test/images: the report's test-set ± (binomial) needs how many images each top-1 is over.
        metrics = classification_metrics(logits, self.data.test.labels, "test") | {"test/images": len(self.data.test.labels)}
        if per_class:
            train_counts = torch.bincount(self.train_split.labels.to(torch.long), minlength=self.data.num_classes)
            metrics |= {"test/top1_per_class": per_class_top1(logits, self.data.test.labels), "train_per_class": train_counts.tolist()}
        return metrics

    def log_model(self, predictor: nn.Module) -> None:
        """The trained model (uint8 images -> logits) as the run's MLflow model `model`, traced
        on two val images (never test; train images without val); a CPU copy, so it loads on any machine."""
        # train images when there is no val split (data.val_fraction 0)
        examples = (self.data.val if len(self.data.val) else self.data.train).images[:2]
        if dist.is_main_process():
            self.run.log_model(copy.deepcopy(predictor).cpu().eval(), "model", example=examples.numpy())

    def finish(self, metrics: dict, history: list[dict[str, float]], test: dict[str, float] | None = None) -> None:
        """metrics/<output>.json (`metrics`, the summary of `history`, `test`) and plots/<output>.csv, logged to MLflow."""
        summary = {**metrics, "train_images": len(self.train_split.labels), **summarize(history), **(test or {})}
        finish(self.run, self.output, summary, history, self.env)


@contextmanager
def training_stage(
    params: Params,
    *,
    stage: str,
    trains: str,
    method: str,
    model_dir: str,
    sections: tuple[str, ...],
    epochs: int,
    seed: int,
    inputs: dict[str, str] | None = None,
    cell: MatrixCell | None = None,
    key: dict | None = None,
    data: PreparedDataset | None = None,
) -> Iterator[StageJob]:
    """Set a stage that trains section `trains` with training seed `seed` up: device, prepared
    data, the run's key (params `sections`, seed, code, the prepared data and `inputs` digests,
    and `key`), resume from models/seeds/<seed>/<model_dir>/last.pt, the MLflow run. `method`
    names the run (supcon, simclr, ce). Writes metrics/seeds/<seed>/<stage>.json.

    A matrix `cell` (whose seed is `seed`) trains on its own split (a reduced-data cell on its
    labelled fraction, a long-tailed one at its factor), under <cell.folder>/<model_dir>, and writes
    metrics/<cell.output>.json. `data`: the prepared store when the caller loaded it already (a
    cell sizes its budget on it).
    """
    methods.method(trains)  # imported before the key is taken: its code is part of the key
    device = runtime(params)
    data = data if data is not None else load_data(params)
    split = cell.train_split(data, params) if cell else train_split(data, params)
    checkpoint_path = _checkpoint_path(model_dir, seed, cell)
    cell_key = cell.key if cell else {}
    config = run_config(params, *sections, inputs={"prepared": prepared_digest(params), **(inputs or {})}, seed=seed, extra={**cell_key, **(key or {})})
    resume = resume_state(checkpoint_path, config, epochs=epochs)
    env = environment.run_environment(device)
    tags = cell.tags if cell else {}
    with tracked_run(params, env, stage=stage, method=method, seed=seed, resume=resume, extra_tags=tags) as run:
        if resume is None:  # a reopened run has it already
            run.log_dataset(paths.prepared(params.data.dataset), name=params.data.dataset, digest=config["inputs"]["prepared"], context="training")
        context = RunContext(
            seed=seed, device=device, checkpoint_path=checkpoint_path, config=config, resume=resume,
            log_epochs=epoch_logger(run), run_id=run.run_id, machine=environment.machine_key(env), wrap=placer(params, device),
            checkpoint_every_steps=params.run.checkpoint_every_steps, checkpoint_every_minutes=params.run.checkpoint_every_minutes,
        )  # fmt: skip
        output = cell.output if cell else paths.seeded(stage, seed)
        yield StageJob(stage, trains, params, device, data, split, context, run, env, output, cell)


def load_data(params: Params) -> PreparedDataset:
    """The prepared store of params' dataset (a file store reads its images under data.root)."""
    return load_prepared(paths.prepared(params.data.dataset), files_root=params.data.root, workers=params.data.loader_workers)


def _checkpoint_path(model_dir: str, seed: int, cell: MatrixCell | None) -> Path:
    folder = cell.folder / model_dir if cell else paths.model_dir(model_dir, seed)
    return folder / checkpoint.LAST


def runtime(params: Params) -> torch.device:
    """Threads, process group (under torchrun) and device for this process."""
    if params.run.threads:
        torch.set_num_threads(params.run.threads)
    device = resolve_device(params.run.device, dist.local_rank())
    dist.init_from_env(device)
    return device


def placer(params: Params, device: torch.device) -> Callable[[nn.Module], nn.Module]:
    """Puts a model on the device, wrapped in DDP when several processes train together (with
    BatchNorm over the global batch if model.sync_batchnorm)."""

    def place(model: nn.Module) -> nn.Module:
        if params.model.sync_batchnorm:
            model = sync_batchnorm(model, device)  # before compile and DDP see the layers
        placed = place_model(model, device, compile_model=params.run.compile)
        return dist.wrap_ddp(placed, device)

    return place


def run_config(params: Params, *sections: str, inputs: dict[str, str], seed: int, extra: dict | None = None) -> dict:
    """The key of a stage's result (its checkpoint fingerprint): the params that can change it,
    its training seed, the digest of every project module this process imported, and the digests
    of its inputs (the data seed run.seed is in the prepared data's); `extra` adds what else
    decides the result."""
    config = {name: _result_params(as_dict(getattr(params, name)), name) for name in sections}
    config["seed"] = seed
    config.update(extra or {})
    config["world_size"] = dist.world_size()
    config["code"] = provenance.code_digests()
    config["inputs"] = inputs
    return config


def _result_params(section: dict, at: str) -> dict:
    return {
        key: _result_params(value, f"{at}.{key}") if isinstance(value, dict) else value
        for key, value in section.items()
        if f"{at}.{key}" not in RESULT_NEUTRAL_KEYS
    }


def prepared_digest(params: Params) -> str:
    """Content digest of the prepared store the stage reads (every file, not its location)."""
    return provenance.directory_digest(paths.prepared(params.data.dataset))


@contextmanager
def tracked_run(
    params: Params, env: dict[str, str], *, stage: str, method: str, seed: int | None, resume: dict | None, extra_tags: dict[str, str] | None = None
) -> Iterator[tracking.Run | tracking.NullRun]:
    """The stage's MLflow run (reopened after an interruption), tagged and with params logged.

    A new run is tagged with the commit and the machine it runs on. A resumed run keeps them and
    adds the commit it was resumed at (its code is the same: the key holds the code digests) and,
    if it moved to another kind of machine, says so (bit-exact resume holds on one machine only).
    """
    tags = {
        "stage": stage,
        "method": method,
        "dataset": params.data.dataset,
        "encoder": params.model.encoder,
        **({"seed": str(seed)} if seed is not None else {}),
        **_machine_tags(env, resume),
        **experiment_tags(),
        **(extra_tags or {}),
    }
    with tracking.start_run(
        uri=tracking.tracking_uri(params.tracking.uri, paths.mlflow_db()),
        experiment=params.tracking.experiment,
        run_name=f"{stage}-{method}",
        tags=tags,
        params=as_dict(params),
        resume_run_id=(resume or {}).get("mlflow_run_id"),
    ) as run:
        yield run


def _machine_tags(env: dict[str, str], resume: dict | None) -> dict[str, str]:
    commit = tracking.git_commit()
    if resume is None:
        return {"git_commit": commit, **env, "machine": environment.machine_key(env)}
    tags = {"resumed_at_commit": commit}
    here = environment.machine_key(env)
    if resume.get("machine") and resume["machine"] != here:
        if dist.is_main_process():
            print(f"resuming on another kind of machine ({here}, was {resume['machine']}): the result may differ slightly from an uninterrupted run")
        tags.update({"resumed_on_other_machine": here, **{f"resumed_{k}": v for k, v in env.items()}})
    return tags


def resume_state(path: Path, config: dict, *, epochs: int) -> dict | None:
    """The checkpoint to continue from, or None (none, unreadable, or another run's: a notice says which).

    A finished checkpoint of this very run (same params, code and inputs) is reported again
    without training, and the notice says so: it is the same result, never a new run's.
    """
    state, notice = checkpoint.resumable(path, config)
    if dist.is_main_process():
        if notice:
            print(notice)
        if state is not None and state["epoch"] >= epochs:
            print(
                f"{path}: already finished by MLflow run {state.get('mlflow_run_id') or '(none)'} with the same params, "
                "code and inputs; reporting that run again without training (delete the file to train anew)"
            )
    return state


def epoch_logger(run: tracking.Run | tracking.NullRun, prefix: str = "") -> Callable[[list[dict[str, float]]], None]:
    """RunContext.log_epochs for a stage: the rows since the last checkpoint to MLflow in one batch, each at its epoch."""
    return lambda rows: run.log_epochs(rows, prefix=prefix)


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Final-epoch values, the last value of each monitored metric, and median throughput."""
    summary = {k: v for k, v in history[-1].items() if k != "epoch" and not k.endswith("epoch_time_s")}
    for row in history:
        summary.update({k: v for k, v in row.items() if k.startswith("val/")})
    summary["epochs"] = history[-1]["epoch"]
    summary["train/images_per_s"] = statistics.median(row["train/images_per_s"] for row in history)
    summary["train/time_s"] = sum(row["train/epoch_time_s"] for row in history)
    return summary


def finish(run: tracking.Run | tracking.NullRun, stage: str, metrics: dict, history: list[dict[str, float]], env: dict[str, str]) -> None:
    """Write metrics/<stage>.json and plots/<stage>.csv, log them and the curves to MLflow."""
    if not dist.is_main_process():
        return
    metrics = {"mlflow_run_id": run.run_id, "mlflow_experiment_id": run.experiment_id, **metrics, "environment": {**env, "machine": environment.machine_key(env)}}
    atomic.write_json(paths.metrics_file(stage), metrics)
    atomic.write_text(paths.plot_file(stage), _history_csv(history))
    # Curves already have one point per epoch; a summary value logged again (at step 0) would
    # put the final value in front of the curve, so only the run-level numbers are logged here.
    curves = {key for row in history for key in row}
    run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float) and k not in curves})
    run.log_artifact(paths.metrics_file(stage), "metrics")
    figure = figures.training_curves(history, stage)
    run.log_figure(figure, f"curves/{stage}.png")
    figures.close(figure)
    # Per-class lists stay in the file: 100 numbers would drown the line.
    shown = {k: v for k, v in metrics.items() if k not in ("mlflow_run_id", "mlflow_experiment_id", "environment") and not isinstance(v, list)}
    print(f"{stage}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))


def log_confusion(run: tracking.Run | tracking.NullRun, matrix: torch.Tensor, class_names: list[str], stage: str) -> None:
    figure = figures.confusion_figure(matrix, class_names, f"{stage}: test confusion matrix")
    run.log_figure(figure, f"confusion/{stage}.png")
    figures.close(figure)


def _history_csv(history: list[dict[str, float]]) -> str:
    columns = sorted({k for row in history for k in row} - {"epoch"})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *(c.replace("/", "_") for c in columns)])
    for row in history:
        writer.writerow([row["epoch"], *(row.get(c, "") for c in columns)])
    return buffer.getvalue()


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
