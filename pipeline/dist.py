"""The only place that talks to torch.distributed; everything falls back to one process.

Without an initialised process group: rank 0, world size 1, gathers return their input.
"""

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn

R = TypeVar("R")
T = TypeVar("T")


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


def gather_uneven(tensor: torch.Tensor) -> torch.Tensor:
    """[n_r, ...] from every rank, n_r may differ -> [sum of n_r, ...] in rank order; no gradient.

    all_gather needs one shape on every rank: each share is padded to the longest, then trimmed.
    The result is where collectives run (the GPU under NCCL, the CPU under gloo).
    """
    if world_size() == 1:
        return tensor
    tensor = tensor.to(_comm_device())
    sizes = gather_no_grad(torch.tensor([tensor.shape[0]], device=tensor.device)).tolist()
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = gather_no_grad(padded).split(max(sizes))
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def share(num_items: int) -> torch.Tensor:
    """Indices of this rank's contiguous share of range(num_items): ranks in order, sizes within one."""
    start, stop = num_items * rank() // world_size(), num_items * (rank() + 1) // world_size()
    return torch.arange(start, stop)


def map_shares(fn: Callable[[T], torch.Tensor], inputs: T, take: Callable[[T, torch.Tensor], T]) -> torch.Tensor:
    """fn(inputs) -> [N, ...], the work split across ranks: each runs fn on its share
    take(inputs, share(N)), and every rank gets all N rows in order. One process: fn(inputs).

    For inference over a split (features, logits) that one rank alone would take minutes for
    while the others wait on a barrier. inputs: N rows that `take` selects from (rows_of).
    """
    if world_size() == 1:
        return fn(inputs)
    rows = share(len(inputs))
    if len(rows) == 0:
        raise ValueError(f"{len(inputs)} items cannot be shared among {world_size()} processes")
    return gather_uneven(fn(take(inputs, rows)))


def local_rank() -> int:
    """This process's GPU index on its machine (LOCAL_RANK under torchrun), 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); nothing for one process.

    NCCL on CUDA, gloo on CPU (so a 2-process CPU run works for tests and laptops).
    """
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
    return _all_reduce(value, torch_dist.ReduceOp.SUM) / world_size()


def sum_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over ranks (itself when not distributed), e.g. correct predictions."""
    return _all_reduce(value, torch_dist.ReduceOp.SUM) if is_distributed() else value


def min_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The smallest value over ranks, elementwise (itself when not distributed)."""
    return _all_reduce(value, torch_dist.ReduceOp.MIN) if is_distributed() else value


def _all_reduce(value: torch.Tensor, op: torch_dist.ReduceOp) -> torch.Tensor:
    reduced = value.detach().to(_comm_device(), copy=True)
    torch_dist.all_reduce(reduced, op=op)
    return reduced


def _comm_device() -> torch.device:
    """Where collectives take their tensors: this process's GPU under NCCL, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if torch_dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_module(module: nn.Module) -> nn.Module:
    """Rank zero's parameters and buffers copied into every rank's module, in place.

    For what rank zero alone decided (the best-on-val weights it kept): every rank then predicts
    with the same model. The module must be where collectives run (the device it trained on).
    """
    if is_distributed():
        for tensor in module.state_dict().values():
            torch_dist.broadcast(tensor, src=0)
    return module
