"""The one training loop: SupCon pretraining, the CE baseline and the linear probe all run `fit`.

`fit` owns what every method shares: deterministic batches from a source, autocast, the
optimizer and schedule steps, divergence detection, per-epoch metrics, progress bars, and
checkpoints after every epoch (rank zero only) that a rerun resumes from. What differs between
methods is the `loss_fn` that maps a batch to a scalar loss, and the `evaluate` hook run at the
end of epochs; `pipeline/training.py` builds both from a method's config section.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline import checkpoint, dist
from pipeline.batches import BatchSource, epoch_seed, steps_per_epoch
from pipeline.device import autocast, to_input
from pipeline.errors import UserError
from pipeline.run_context import RunContext

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
class Loop:
    """What a method trains: `fit` runs it. The model is placed (device, DDP); loss_fn maps a
    batch (inputs, labels on the device) to a scalar loss."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batches: BatchSource
    epochs: int
    spec: dict = field(default_factory=dict)
    """How to rebuild the model (stored in the checkpoint)."""
    evaluate: Callable[[int], dict[str, float]] | None = None
    """Called after epoch e (1-based); returns extra metrics (e.g. val/knn_top1) or {}."""


def fit(loop: Loop, run: RunContext) -> list[dict[str, float]]:
    """Train for loop.epochs epochs (continuing from run.resume); returns the per-epoch history."""
    history: list[dict[str, float]] = []
    start = 0
    if run.resume is not None:
        checkpoint.unwrap(loop.model).load_state_dict(run.resume["model"])
        loop.optimizer.load_state_dict(run.resume["optimizer"])
        loop.scheduler.load_state_dict(run.resume["scheduler"])
        history, start = list(run.resume["history"]), run.resume["epoch"]
        if dist.is_main_process() and start < loop.epochs:
            print(f"{loop.name}: resuming after epoch {start} from {run.checkpoint_path}")
    for epoch in range(start, loop.epochs):
        metrics = _train_epoch(loop, run, epoch)
        if loop.evaluate is not None:
            metrics.update(loop.evaluate(epoch + 1))
        history.append({"epoch": epoch + 1, **metrics})
        if dist.is_main_process():
            print(_epoch_line(loop, epoch + 1, metrics), flush=True)
        if run.on_epoch is not None:
            run.on_epoch(epoch + 1, metrics)
        _save(loop, run, epoch + 1, history)
    return history


def _epoch_line(loop: Loop, epoch: int, metrics: dict[str, float]) -> str:
    """'supcon epoch 3/6: train/loss 4.812, val/knn_top1 0.7712, 512 images/s, 41 s'."""
    shown = [f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("train/lr", "train/images_per_s", "train/epoch_time_s")]
    timing = f"{metrics['train/images_per_s']:.0f} images/s, {metrics['train/epoch_time_s']:.0f} s"
    return f"{loop.name} epoch {epoch}/{loop.epochs}: " + ", ".join([*shown, timing])


def _save(loop: Loop, run: RunContext, epochs_done: int, history: list) -> None:
    if run.checkpoint_path is not None and dist.is_main_process():
        checkpoint.save(
            run.checkpoint_path, model=loop.model, optimizer=loop.optimizer, scheduler=loop.scheduler, epoch=epochs_done,
            history=history, spec=loop.spec, config=run.config or {}, run_id=run.run_id, machine=run.machine,
        )  # fmt: skip
    dist.barrier()


def _train_epoch(loop: Loop, run: RunContext, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; returns train/loss, train/lr, images/s and epoch time."""
    loop.model.train()
    # Augmentation draws from the global RNG: seeding per epoch makes a resumed epoch identical.
    torch.manual_seed(epoch_seed(run.seed, epoch, dist.rank()))
    steps = loop.batches.steps_per_epoch(dist.world_size())
    if steps == 0:
        raise UserError(f"{loop.name}: batch_size {loop.batches.batch_size} is larger than the {len(loop.batches)} training items per process")
    loss_sum = torch.zeros((), device=run.device)
    first_bad = torch.full((), -1, device=run.device, dtype=torch.long)
    lr = loop.scheduler.get_last_lr()[0]
    started = time.perf_counter()
    batches = loop.batches.epoch(epoch, rank=dist.rank(), world_size=dist.world_size())
    # A context manager, so an error (divergence, Ctrl-C) clears the bar before its message prints.
    # disable=None: no bar when stderr is not a terminal (a `dvc repro` log); `fit` prints a line per epoch.
    disable = None if dist.is_main_process() else True
    with tqdm(total=steps, desc=f"{loop.name} {epoch + 1}/{loop.epochs}", disable=disable, leave=False, dynamic_ncols=True) as bar:
        for step, (inputs, labels) in enumerate(batches):
            loss = _train_step(loop, run.device, inputs, labels)
            loss_sum += loss
            # Remember the first bad step without a host sync; it is read every SYNC_EVERY steps.
            first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
                _check_finite(loop, run, epoch, _agreed(first_bad, steps), steps)
                seen = (step + 1) * loop.batches.batch_size * dist.world_size()
                bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
            bar.update(1)
    elapsed = time.perf_counter() - started
    return {
        "train/loss": dist.mean_across_ranks(loss_sum / steps).item(),
        "train/lr": lr,
        "train/images_per_s": steps * loop.batches.batch_size * dist.world_size() / elapsed,
        "train/epoch_time_s": elapsed,
    }


def _train_step(loop: Loop, device: torch.device, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    inputs, labels = to_input(inputs, device), labels.to(device, non_blocking=True)
    with autocast(device):
        loss = loop.loss_fn(inputs, labels)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    loop.optimizer.step()
    loop.scheduler.step()
    return loss.detach().float()


def _agreed(first_bad: torch.Tensor, steps: int) -> int:
    """The first bad step over all ranks (-1: none), so every rank stops at the same step.

    Under DDP one rank's NaN reaches the others' weights a step later through the averaged
    gradients; without agreeing, ranks would name different steps, or one would stop while the
    others wait in their next all-reduce.
    """
    if not dist.is_distributed():
        return int(first_bad.item())
    earliest = int(dist.min_across_ranks(torch.where(first_bad >= 0, first_bad, steps)).item())
    return -1 if earliest == steps else earliest


def _check_finite(loop: Loop, run: RunContext, epoch: int, first_bad: int, steps: int) -> None:
    if first_bad >= 0:
        raise TrainingDiverged(loop.name, epoch + 1, first_bad + 1, steps, run.checkpoint_path if epoch > 0 else None)


def total_steps(num_items: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps in a whole run (for the schedule), on this world size."""
    return max(1, steps_per_epoch(num_items, batch_size, dist.world_size()) * epochs)


def warmup_steps(num_items: int, batch_size: int, warmup_epochs: float) -> int:
    return math.ceil(steps_per_epoch(num_items, batch_size, dist.world_size()) * warmup_epochs)
