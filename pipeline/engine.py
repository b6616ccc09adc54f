"""The one training loop: SupCon pretraining, the CE baseline and the linear probe all run `fit`.

`fit` owns what every method shares: deterministic batches from a source, autocast, the
optimizer and schedule steps, divergence detection, per-epoch metrics, progress bars, and
checkpoints (rank zero only) that a rerun resumes from. A checkpoint is written by steps and time,
not every epoch (`SavePoints`): the budget rule of reduced data can make 20,000 one-step epochs.
What differs between methods is the `loss_fn` that maps a batch to a scalar loss, the `evaluate`
hook run at the end of epochs and the `on_save` hook run at checkpoints; `pipeline/training.py`
builds them from a method's config section.
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
# The clock of the checkpoint time rule: monotonic, so a change of the wall clock moves no
# checkpoint (tests replace it).
clock = time.monotonic


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept. epoch, step: 1-based."""

    def __init__(self, name: str, epoch: int, step: int, steps: int, checkpoint_path: Path | None, saved_epoch: int = 0) -> None:
        kept = f"the last good checkpoint (epoch {saved_epoch}) stays at {checkpoint_path}" if checkpoint_path else "no checkpoint was written"
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
    on_save: Callable[[int], None] | None = None
    """Called at each checkpoint, after epoch e, on every rank, before last.pt is written: a
    method writes its own files there (BestOnVal: best.pt), so they never run ahead of last.pt."""
    after_step: Callable[[], None] | None = None
    """Called after each optimizer and schedule step (the key encoder's EMA update)."""
    state: nn.Module | None = None
    """Training state beside the model (the key queue): checkpointed and resumed with it."""


@dataclass
class SavePoints:
    """When `fit` checkpoints: after the epoch that passes `every_steps` optimizer steps or
    `every_seconds` since the previous checkpoint (or the start of this process), and after the
    last epoch. The epochs' metrics go to run.log_epochs and an epoch line is printed there too."""

    every_steps: int
    every_seconds: float
    steps: int
    """Optimizer steps done at the previous checkpoint (or the one resumed from)."""
    epoch: int
    """Epochs done at the previous checkpoint; 0: none written for this run yet."""
    since: float = field(default_factory=lambda: clock())

    def due(self, steps_done: int) -> bool:
        """Whether the epoch that ended after `steps_done` steps is a checkpoint (the same answer on every rank)."""
        if steps_done - self.steps >= self.every_steps:
            return True
        late = torch.tensor(float(clock() - self.since >= self.every_seconds))
        # Each rank has its own clock: when any is late, all write, or they would wait in the barrier.
        return bool(dist.sum_across_ranks(late).item() > 0)

    def mark(self, epoch: int, steps_done: int) -> None:
        self.epoch, self.steps, self.since = epoch, steps_done, clock()


def fit(loop: Loop, run: RunContext) -> list[dict[str, float]]:
    """Train for loop.epochs epochs (continuing from run.resume); returns the per-epoch history.

    Each history row holds the epoch, its metrics and train/steps (optimizer steps this run did
    up to that epoch, resumed epochs included). Checkpoints follow `SavePoints`.
    """
    history, start = _resume(loop, run)
    saves = SavePoints(run.checkpoint_every_steps, run.checkpoint_every_minutes * 60, steps=_steps_done(history), epoch=start)
    unlogged: list[dict[str, float]] = []  # rows not yet handed to run.log_epochs
    for epoch in range(start, loop.epochs):
        try:
            metrics = _train_epoch(loop, run, epoch, steps_before=_steps_done(history), saved_epoch=saves.epoch)
        except TrainingDiverged:
            _log(run, unlogged)  # the curves up to the bad epoch
            raise
        if loop.evaluate is not None:
            metrics.update(loop.evaluate(epoch + 1))
        history.append({"epoch": epoch + 1, **metrics})
        unlogged.append(history[-1])
        if run.on_epoch is not None:
            run.on_epoch(epoch + 1, metrics)
        due = epoch + 1 == loop.epochs or saves.due(metrics["train/steps"])
        if dist.is_main_process() and (due or epoch == start):
            print(_epoch_line(loop, epoch + 1, metrics), flush=True)
        if due:
            _log(run, unlogged)
            unlogged = []
            if loop.on_save is not None:
                loop.on_save(epoch + 1)
            _save(loop, run, epoch + 1, history)
            saves.mark(epoch + 1, metrics["train/steps"])
    return history


def _resume(loop: Loop, run: RunContext) -> tuple[list[dict[str, float]], int]:
    """(the history so far, epochs done): run.resume's state loaded into the loop, or a fresh start."""
    if run.resume is None:
        return [], 0
    checkpoint.unwrap(loop.model).load_state_dict(run.resume["model"])
    loop.optimizer.load_state_dict(run.resume["optimizer"])
    loop.scheduler.load_state_dict(run.resume["scheduler"])
    if loop.state is not None:
        loop.state.load_state_dict(run.resume["method_state"])
    history, start = list(run.resume["history"]), run.resume["epoch"]
    if dist.is_main_process() and start < loop.epochs:
        print(f"{loop.name}: resuming after epoch {start} from {run.checkpoint_path}")
    return history, start


def _steps_done(history: list[dict[str, float]]) -> int:
    return int(history[-1]["train/steps"]) if history else 0


def _log(run: RunContext, rows: list[dict[str, float]]) -> None:
    if run.log_epochs is not None and rows:
        run.log_epochs(rows)


def _epoch_line(loop: Loop, epoch: int, metrics: dict[str, float]) -> str:
    """'supcon epoch 3/6: train/loss 4.812, val/knn_top1 0.7712, 512 images/s, 41 s, step 315'."""
    hidden = ("train/lr", "train/steps", "train/images_per_s", "train/epoch_time_s")
    shown = [f"{k} {v:.4g}" for k, v in metrics.items() if k not in hidden]
    progress = f"{metrics['train/images_per_s']:.0f} images/s, {metrics['train/epoch_time_s']:.0f} s, step {metrics['train/steps']}"
    return f"{loop.name} epoch {epoch}/{loop.epochs}: " + ", ".join([*shown, progress])


def _save(loop: Loop, run: RunContext, epochs_done: int, history: list) -> None:
    if run.checkpoint_path is not None and dist.is_main_process():
        checkpoint.save(
            run.checkpoint_path, model=loop.model, optimizer=loop.optimizer, scheduler=loop.scheduler, epoch=epochs_done,
            history=history, spec=loop.spec, config=run.config or {}, run_id=run.run_id, machine=run.machine,
            method_state=None if loop.state is None else loop.state.state_dict(),
        )  # fmt: skip
    dist.barrier()


def _train_epoch(loop: Loop, run: RunContext, epoch: int, *, steps_before: int, saved_epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; returns train/loss, train/lr, train/steps (steps_before
    plus this epoch's), images/s and epoch time. saved_epoch: the last checkpoint's (0: none)."""
    loop.model.train()
    # Augmentation draws from the global RNG: seeding per epoch makes a resumed epoch identical.
    torch.manual_seed(epoch_seed(run.seed, epoch, dist.rank()))
    steps = loop.batches.steps_per_epoch(dist.world_size())
    if steps == 0:
        raise UserError(f"{loop.name}: batch_size {loop.batches.batch_size} is larger than the {len(loop.batches) // dist.world_size()} training items per process")
    loss_sum = torch.zeros((), device=run.device)
    first_bad = torch.full((), -1, device=run.device, dtype=torch.long)
    lr = loop.scheduler.get_last_lr()[0]
    started = time.perf_counter()
    batches = loop.batches.epoch(epoch, rank=dist.rank(), world_size=dist.world_size())
    # A context manager, so an error (divergence, Ctrl-C) clears the bar before its message prints.
    # disable=None: no bar when stderr is not a terminal (a `dvc repro` log); `fit` prints epoch lines.
    disable = None if dist.is_main_process() else True
    with tqdm(total=steps, desc=f"{loop.name} {epoch + 1}/{loop.epochs}", disable=disable, leave=False, dynamic_ncols=True) as bar:
        for step, (inputs, labels) in enumerate(batches):
            loss = _train_step(loop, run.device, inputs, labels)
            loss_sum += loss
            # Remember the first bad step without a host sync; it is read every SYNC_EVERY steps.
            first_bad = torch.where(torch.isfinite(loss) | (first_bad >= 0), first_bad, step)
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
                _check_finite(loop, run, epoch, _agreed(first_bad, steps), steps, saved_epoch)
                seen = (step + 1) * loop.batches.batch_size * dist.world_size()
                bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
            bar.update(1)
    elapsed = time.perf_counter() - started
    return {
        "train/loss": dist.mean_across_ranks(loss_sum / steps).item(),
        "train/lr": lr,
        "train/steps": steps_before + steps,
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
    if loop.after_step is not None:
        loop.after_step()
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


def _check_finite(loop: Loop, run: RunContext, epoch: int, first_bad: int, steps: int, saved_epoch: int) -> None:
    if first_bad >= 0:
        raise TrainingDiverged(loop.name, epoch + 1, first_bad + 1, steps, run.checkpoint_path if saved_epoch else None, saved_epoch)


def total_steps(num_items: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps in a whole run (for the schedule), on this world size."""
    return max(1, steps_per_epoch(num_items, batch_size, dist.world_size()) * epochs)


def warmup_steps(num_items: int, batch_size: int, warmup_epochs: float) -> int:
    return math.ceil(steps_per_epoch(num_items, batch_size, dist.world_size()) * warmup_epochs)
