"""The one training loop: SupCon pretraining, the CE baseline and the linear probe all run `fit`.

`fit` owns what every method shares: deterministic batches, autocast, the optimizer and
schedule steps, divergence detection, per-epoch metrics, progress bars, and checkpoints after
every epoch (rank zero only) that a rerun resumes from. What differs between methods is the
`loss_fn` that maps a batch to a scalar loss, and the `evaluate` hook run at the end of epochs.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline import checkpoint, dist
from pipeline.batches import batch_indices, epoch_seed, steps_per_epoch
from pipeline.device import autocast, to_input
from pipeline.errors import UserError

# How often (in steps) the loop syncs with the device to check the loss and refresh the bar.
SYNC_EVERY = 10


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept. epoch, step: 1-based."""

    def __init__(self, name: str, epoch: int, step: int, steps: int, checkpoint_path: Path | None) -> None:
        kept = f"the last good checkpoint stays at {checkpoint_path}" if checkpoint_path else "no checkpoint was written"
        super().__init__(
            f"{name}: loss became NaN/inf at epoch {epoch}, step {step} of {steps}; {kept}. "
            "Usual causes: learning rate too high, temperature too low, too short a warm-up"
        )
        self.epoch, self.step = epoch, step


@dataclass
class FitSpec:
    """Everything `fit` needs. inputs: [N, ...] on the CPU (uint8 images or features); labels: [N]."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    epochs: int
    seed: int
    device: torch.device
    checkpoint_path: Path | None = None
    spec: dict = field(default_factory=dict)
    """How to rebuild the model (stored in the checkpoint)."""
    config: dict = field(default_factory=dict)
    """The resolved config; its fingerprint decides whether a checkpoint may be resumed."""
    evaluate: Callable[[int], dict[str, float]] | None = None
    """Called after epoch e (1-based); returns extra metrics (e.g. val/knn_top1) or {}."""
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    """Receives each epoch's metrics (the stage logs them to MLflow)."""
    run_id: str = ""
    machine: str = ""
    """Which kind of machine trains (environment.machine_key); stored in the checkpoint."""


@dataclass
class RunContext:
    """How a training run is hosted, shared by every method: seed, device, checkpoint, logging."""

    seed: int
    device: torch.device
    checkpoint_path: Path | None
    config: dict
    """The resolved config; its fingerprint decides whether a checkpoint may be resumed."""
    resume: dict[str, Any] | None = None
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    run_id: str = ""
    machine: str = ""
    wrap: Callable[[nn.Module], nn.Module] = lambda model: model
    """Places the model (device, DDP, compile)."""


def fit(spec: FitSpec, resume: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Train for spec.epochs epochs (continuing from `resume`); returns the per-epoch history."""
    history: list[dict[str, float]] = []
    start = 0
    if resume is not None:
        checkpoint.unwrap(spec.model).load_state_dict(resume["model"])
        spec.optimizer.load_state_dict(resume["optimizer"])
        spec.scheduler.load_state_dict(resume["scheduler"])
        history, start = list(resume["history"]), resume["epoch"]
        if dist.is_main_process() and start < spec.epochs:
            print(f"{spec.name}: resuming after epoch {start} from {spec.checkpoint_path}")
    for epoch in range(start, spec.epochs):
        metrics = _train_epoch(spec, epoch)
        if spec.evaluate is not None:
            metrics.update(spec.evaluate(epoch + 1))
        history.append({"epoch": epoch + 1, **metrics})
        if dist.is_main_process():
            print(_epoch_line(spec, epoch + 1, metrics), flush=True)
        if spec.on_epoch is not None:
            spec.on_epoch(epoch + 1, metrics)
        _save(spec, epoch + 1, history)
    return history


def _epoch_line(spec: FitSpec, epoch: int, metrics: dict[str, float]) -> str:
    """'supcon epoch 3/6: train/loss 4.812, val/knn_top1 0.7712, 512 images/s, 41 s'."""
    shown = [f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("train/lr", "train/images_per_s", "train/epoch_time_s")]
    timing = f"{metrics['train/images_per_s']:.0f} images/s, {metrics['train/epoch_time_s']:.0f} s"
    return f"{spec.name} epoch {epoch}/{spec.epochs}: " + ", ".join([*shown, timing])


def _save(spec: FitSpec, epochs_done: int, history: list) -> None:
    if spec.checkpoint_path is not None and dist.is_main_process():
        checkpoint.save(
            spec.checkpoint_path, model=spec.model, optimizer=spec.optimizer, scheduler=spec.scheduler,
            epoch=epochs_done, history=history, spec=spec.spec, config=spec.config, run_id=spec.run_id, machine=spec.machine,
        )  # fmt: skip
    dist.barrier()


def _train_epoch(spec: FitSpec, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; returns train/loss, train/lr, images/s and epoch time."""
    spec.model.train()
    # Augmentation draws from the global RNG: seeding per epoch makes a resumed epoch identical.
    torch.manual_seed(epoch_seed(spec.seed, epoch, dist.rank()))
    steps = steps_per_epoch(len(spec.inputs), spec.batch_size, dist.world_size())
    if steps == 0:
        raise UserError(f"{spec.name}: batch_size {spec.batch_size} is larger than the {len(spec.inputs)} training items per process")
    loss_sum = torch.zeros((), device=spec.device)
    first_bad = torch.full((), -1, device=spec.device, dtype=torch.long)
    lr = spec.scheduler.get_last_lr()[0]
    started = time.perf_counter()
    batches = batch_indices(len(spec.inputs), spec.batch_size, seed=spec.seed, epoch=epoch, rank=dist.rank(), world_size=dist.world_size())
    # A context manager, so an error (divergence, Ctrl-C) clears the bar before its message prints.
    # disable=None: no bar when stderr is not a terminal (a `dvc repro` log); `fit` prints a line per epoch.
    disable = None if dist.is_main_process() else True
    with tqdm(total=steps, desc=f"{spec.name} {epoch + 1}/{spec.epochs}", disable=disable, leave=False, dynamic_ncols=True) as bar:
        for step, index in enumerate(batches):
            loss = _train_step(spec, index)
            loss_sum += loss
            # Remember the first bad step without a host sync; it is read every SYNC_EVERY steps.
            first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
                _check_finite(spec, epoch, int(first_bad.item()), steps)
                seen = (step + 1) * spec.batch_size * dist.world_size()
                bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
            bar.update(1)
    elapsed = time.perf_counter() - started
    return {
        "train/loss": dist.mean_across_ranks(loss_sum / steps).item(),
        "train/lr": lr,
        "train/images_per_s": steps * spec.batch_size * dist.world_size() / elapsed,
        "train/epoch_time_s": elapsed,
    }


def _train_step(spec: FitSpec, index: torch.Tensor) -> torch.Tensor:
    inputs = to_input(spec.inputs[index], spec.device)
    labels = spec.labels[index].to(spec.device, non_blocking=True)
    with autocast(spec.device):
        loss = spec.loss_fn(inputs, labels)
    spec.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    spec.optimizer.step()
    spec.scheduler.step()
    return loss.detach().float()


def _check_finite(spec: FitSpec, epoch: int, first_bad: int, steps: int) -> None:
    if first_bad >= 0:
        raise TrainingDiverged(spec.name, epoch + 1, first_bad + 1, steps, spec.checkpoint_path if epoch > 0 else None)


def total_steps(num_items: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps in a whole run (for the schedule), on this world size."""
    return max(1, steps_per_epoch(num_items, batch_size, dist.world_size()) * epochs)


def warmup_steps(num_items: int, batch_size: int, warmup_epochs: float) -> int:
    return math.ceil(steps_per_epoch(num_items, batch_size, dist.world_size()) * warmup_epochs)
