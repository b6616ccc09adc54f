"""The only place that talks to torch.distributed; everything falls back to one process.

Without an initialised process group: rank 0, world size 1, gathers return their input.
"""

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as torch_dist

R = TypeVar("R")


def is_distributed() -> bool:
    """True when a process group is initialised (and torch was built with distributed)."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return torch_dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes, 1 when not distributed."""
    return torch_dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank zero: the one process that logs and writes checkpoints."""
    return rank() == 0


def rank_zero_only(fn: Callable[..., R]) -> Callable[..., R | None]:
    """Decorator: run fn on rank zero only; other ranks skip it and get None."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """[B, ...] from every rank (same shape on all) -> [world_size * B, ...], rank order.

    Autograd-aware: backward sums, over ranks, the gradients that reach this rank's slice, so
    the features a rank produced get the gradient of every rank's loss (SupCon negatives).
    """
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather  # import only when distributed

    return torch.cat(all_gather(tensor), dim=0)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """[B, ...] from every rank (same shape on all) -> [world_size * B, ...]; no gradient.

    For labels and other values that nothing differentiates through.
    """
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    torch_dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def local_rank() -> int:
    """This process's GPU index on its machine (LOCAL_RANK under torchrun), 0 otherwise."""
    import os

    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); nothing for one process.

    NCCL on CUDA, gloo on CPU (so a 2-process CPU run works for tests and laptops).
    """
    import os

    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel when distributed, the model itself otherwise."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier() -> None:
    """Wait for every rank (e.g. until rank zero finished writing a checkpoint)."""
    if is_distributed():
        torch_dist.barrier()


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over ranks (itself when not distributed)."""
    if not is_distributed():
        return value
    total = value.detach().clone()
    torch_dist.all_reduce(total)
    return total / world_size()
