"""Where training runs: CUDA when present (bf16 autocast, channels_last, optional compile), else CPU.

The memory layout is chosen per device type, because it decides which convolution kernels run:
- CUDA: channels_last, which feeds the tensor cores.
- CPU: contiguous (NCHW). oneDNN's channels_last kernels were about 1.5x faster on the default
  model but are not trustworthy on every CPU: on AVX2-only machines (and on AVX-512 machines
  with ONEDNN_MAX_CPU_ISA=AVX2) the 1x1 strided convolutions of the ResNet shortcuts crash
  (double free) or return gradients off by up to 150% for 1-channel inputs, and on AVX-512 they
  are 5-10x less accurate than plain float32. Contiguous oneDNN kernels are within 3x of plain
  float32 against a float64 reference on both ISAs (tests/test_encoder_gradients.py).
"""

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


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last where it is verified fast and accurate (CUDA); contiguous on the CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed); full float32 on CPU, where bf16 is slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place_model(model: nn.Module, device: torch.device, *, compile_model: bool = False) -> nn.Module:
    """Move to the device in its memory format; on CUDA, torch.compile if asked."""
    model = model.to(device, memory_format=memory_format(device))
    return torch.compile(model) if compile_model and device.type == "cuda" else model


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to the device without blocking; image batches take the device's memory format."""
    images = images.to(device, non_blocking=True)
    if images.ndim == 4:
        return images.contiguous(memory_format=memory_format(device))
    return images
