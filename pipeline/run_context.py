"""How a training run is hosted: the same for every method, whoever calls (stage, cell, trial, test)."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import RunConfig


@dataclass
class RunContext:
    """Seed, device, checkpoint, resume state and logging of one training run."""

    seed: int
    device: torch.device
    checkpoint_path: Path | None = None
    """Where `last.pt` goes (its directory also holds `best.pt`); None: no checkpoints."""
    config: dict | None = None
    """The run's key (params, code and input digests); decides whether a checkpoint may be resumed."""
    resume: dict[str, Any] | None = None
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    """Receives each epoch's metrics as it ends (a sweep trial reports them, and may be pruned)."""
    log_epochs: Callable[[list[dict[str, float]]], None] | None = None
    """Receives the history rows (each with its `epoch`) since the previous checkpoint, in one
    call at each checkpoint and at the end: a stage logs them to MLflow in one request, not one
    per epoch (a reduced-data run may have 20,000 one-step epochs)."""
    checkpoint_every_steps: int = RunConfig.checkpoint_every_steps
    """Checkpoint after the epoch that passes this many optimizer steps since the previous one
    (or the start), or `checkpoint_every_minutes`, and after the last epoch (run.* in params)."""
    checkpoint_every_minutes: float = RunConfig.checkpoint_every_minutes
    run_id: str = ""
    machine: str = ""
    """Which kind of machine trains (environment.machine_key); stored in the checkpoint."""
    wrap: Callable[[nn.Module], nn.Module] | None = None
    """Places the model (device, DDP, compile); None: moved to the device as it is."""
