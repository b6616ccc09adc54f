"""Training checkpoints: everything needed to resume bit-for-bit, and to rebuild the model alone.

A checkpoint carries its config (nanoGPT style): `spec` rebuilds the model, and `config` is the
run's key: params, the digests of the code that ran and of the inputs it read (provenance.py).
A checkpoint is resumed only by a run with the same key; `resumable` says why not otherwise.
Loaded with `weights_only=True`: a checkpoint is data, never code to execute. Saved
atomically, so `kill -9` mid-write leaves the previous checkpoint intact.
"""

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline import atomic
from pipeline.errors import UserError
from pipeline.provenance import changed_keys

FORMAT = 2  # 2: config holds code and input digests; loaded with weights_only
# A training run's files: LAST at each checkpoint of `fit` (resume); BEST, written just before
# it, the weights that scored highest on val so far (model selection: CE, linear probe),
# {"format", "epoch", "val_top1", "model"}.
LAST, BEST = "last.pt", "best.pt"
_NAMED_CHANGES = 4  # changed keys a notice names before "and N more"


class CheckpointUnreadable(UserError):
    """A file where a checkpoint should be that torch cannot load (truncated, garbage, foreign)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: not a readable checkpoint ({reason}); delete it and rerun the stage that writes it")
        self.path = path


def fingerprint(config: dict) -> str:
    """A stable hash of the run's key (params, code and input digests)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save(
    path: Path, *, model: nn.Module, optimizer, scheduler, epoch: int, history: list, spec: dict, config: dict, run_id: str, machine: str = "", method_state: dict | None = None
) -> None:
    """Write the state after `epoch` completed epochs; `machine` names where it was trained;
    method_state: training state beside the model (the key queue), stored only when there is one."""
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
        "machine": machine,
    }
    if method_state is not None:
        state["method_state"] = method_state
    atomic.torch_save(path, state)


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, None if there is none; CheckpointUnreadable if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointUnreadable(path, " ".join(str(err).split())[:160]) from None
    if not isinstance(state, dict):
        raise CheckpointUnreadable(path, f"holds a {type(state).__name__}, not a checkpoint dict")
    return state


def save_best(path: Path, *, model: nn.Module | dict, epoch: int, val_top1: float | None) -> None:
    """Write the BEST file: the weights after `epoch` (1-based; a model, or its state dict kept
    in memory) and their val top-1 (None: no val split, the last epoch is the model)."""
    weights = model if isinstance(model, dict) else unwrap(model).state_dict()
    atomic.torch_save(path, {"format": FORMAT, "epoch": epoch, "val_top1": val_top1, "model": weights})


def best_so_far(path: Path) -> dict[str, Any] | None:
    """The BEST file, or None if absent, unreadable or of an older format (the next epoch rewrites it)."""
    try:
        state = load(path)
    except CheckpointUnreadable:
        return None
    return state if state is not None and state.get("format") == FORMAT else None


def resumable(path: Path, config: dict) -> tuple[dict[str, Any] | None, str | None]:
    """(the checkpoint at `path` if it belongs to the run keyed by `config`, else None; a notice).

    The notice (None when there is nothing to say) tells why an existing file is not resumed:
    unreadable, an older format, or a key that differs, naming what differs.
    """
    try:
        state = load(path)
    except CheckpointUnreadable as err:
        return None, f"{err.args[0].split('; delete')[0]}; starting over"
    if state is None:
        return None, None
    if state.get("format") != FORMAT:
        return None, f"{path}: written by an older version of the pipeline (checkpoint format {state.get('format')}); starting over"
    if state.get("fingerprint") != fingerprint(config):
        return None, f"{path}: written by a run with other {describe_changes(state.get('config') or {}, config)}; starting over"
    return state, None


def describe_changes(old: dict, new: dict) -> str:
    """'code (pipeline.losses), params (supcon.temperature)'-style summary of what differs."""
    groups: dict[str, list[str]] = {}
    for key in changed_keys(old, new):
        head, _, rest = key.partition(".")
        group = {"code": "code", "inputs": "inputs"}.get(head, "params")
        groups.setdefault(group, []).append(rest if group != "params" else key)
    parts = []
    for group, keys in groups.items():
        named = ", ".join(keys[:_NAMED_CHANGES]) + (f" and {len(keys) - _NAMED_CHANGES} more" if len(keys) > _NAMED_CHANGES else "")
        parts.append(f"{group} ({named})")
    return ", ".join(parts) or "settings"
