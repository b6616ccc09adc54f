"""Training checkpoints: everything needed to resume bit-for-bit, and to rebuild the model alone.

A checkpoint carries its config (nanoGPT style): `spec` rebuilds the model, `fingerprint` tells
whether the checkpoint belongs to the run being asked for (a run with other params starts over).
Saved atomically, so `kill -9` mid-write leaves the previous checkpoint intact.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline import atomic

FORMAT = 1


def fingerprint(config: dict) -> str:
    """A stable hash of the resolved config that determines training."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save(path: Path, *, model: nn.Module, optimizer, scheduler, epoch: int, history: list, spec: dict, config: dict, run_id: str) -> None:
    """Write the state after `epoch` completed epochs."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
        "spec": spec,
        "config": config,
        "fingerprint": fingerprint(config),
        "mlflow_run_id": run_id,
    }
    atomic.torch_save(path, state)


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None if there is none."""
    if not Path(path).is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def load_matching(path: Path, config: dict) -> dict[str, Any] | None:
    """The checkpoint at `path` if it was written by a run with this exact config."""
    state = load(path)
    if state is None or state.get("format") != FORMAT or state.get("fingerprint") != fingerprint(config):
        return None
    return state
