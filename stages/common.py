"""Glue the training stages share: runtime set-up, the MLflow run, and writing metrics and plots."""

import csv
import io
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from pipeline import atomic, checkpoint, dist, figures, tracking
from pipeline.config import Params
from pipeline.config_schema import as_dict
from pipeline.device import place_model, resolve_device
from pipeline.engine import RunContext
from stages import paths


def runtime(params: Params) -> torch.device:
    """Threads, process group (under torchrun) and device for this process."""
    if params.run.threads:
        torch.set_num_threads(params.run.threads)
    device = resolve_device(params.run.device, dist.local_rank())
    dist.init_from_env(device)
    return device


def placer(params: Params, device: torch.device) -> Callable[[nn.Module], nn.Module]:
    """Puts a model on the device, wrapped in DDP when several processes train together."""

    def place(model: nn.Module) -> nn.Module:
        placed = place_model(model, device, compile_model=params.run.compile)
        return dist.wrap_ddp(placed, device)

    return place


def run_config(params: Params, *sections: str) -> dict:
    """The resolved config that determines a stage's result (its checkpoint fingerprint)."""
    config = {name: as_dict(getattr(params, name)) for name in sections}
    config["seed"] = params.run.seed
    config["world_size"] = dist.world_size()
    return config


@contextmanager
def tracked_run(params: Params, *, stage: str, method: str, resume: dict | None) -> Iterator[tracking.Run | tracking.NullRun]:
    """The stage's MLflow run (reopened after an interruption), tagged and with params logged."""
    tags = {
        "stage": stage,
        "method": method,
        "dataset": params.data.dataset,
        "encoder": params.model.encoder,
        "seed": str(params.run.seed),
        "git_commit": tracking.git_commit(),
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


def resume_state(path: Path, config: dict) -> dict | None:
    """The checkpoint to continue from, or None (no checkpoint, or one from other params)."""
    state = checkpoint.load_matching(path, config)
    if state is None and path.exists() and dist.is_main_process():
        print(f"{path}: written with other params; starting over")
    return state


def run_context(params: Params, device: torch.device, run, *, checkpoint_path: Path, config: dict, resume: dict | None) -> RunContext:
    """What the library's training functions need to know about this stage run."""
    return RunContext(
        seed=params.run.seed, device=device, checkpoint_path=checkpoint_path, config=config, resume=resume,
        on_epoch=epoch_logger(run), run_id=run.run_id, wrap=placer(params, device),
    )  # fmt: skip


def epoch_logger(run: tracking.Run | tracking.NullRun) -> Callable[[int, dict[str, float]], None]:
    return lambda epoch, metrics: run.log_metrics(metrics, step=epoch)


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Final-epoch values, the last value of each monitored metric, and median throughput."""
    summary = {k: v for k, v in history[-1].items() if k != "epoch" and not k.endswith("epoch_time_s")}
    for row in history:
        summary.update({k: v for k, v in row.items() if k.startswith("val/")})
    summary["epochs"] = history[-1]["epoch"]
    summary["train/images_per_s"] = statistics.median(row["train/images_per_s"] for row in history)
    summary["train/time_s"] = sum(row["train/epoch_time_s"] for row in history)
    return summary


def finish(run: tracking.Run | tracking.NullRun, stage: str, metrics: dict, history: list[dict[str, float]]) -> None:
    """Write metrics/<stage>.json and plots/<stage>.csv, log them and the curves to MLflow."""
    if not dist.is_main_process():
        return
    metrics = {"mlflow_run_id": run.run_id, **metrics}
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
    print(f"{stage}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if k != "mlflow_run_id"))


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
