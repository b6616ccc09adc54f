"""Where training runs: CUDA when present (bf16 autocast, channels_last, optional compile), else CPU."""

import contextlib

import torch
from torch import nn

from pipeline.errors import UserError


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA on a machine without it is a user error."""
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("run.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device("cuda", local_rank)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed); full float32 on CPU, where bf16 is slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place_model(model: nn.Module, device: torch.device, *, compile_model: bool = False) -> nn.Module:
    """Move to the device; on CUDA use channels_last and, if asked, torch.compile."""
    model = model.to(device)
    if device.type != "cuda":
        return model
    model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile_model else model


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to the device without blocking; image batches go channels_last on CUDA."""
    images = images.to(device, non_blocking=True)
    if device.type == "cuda" and images.ndim == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images
