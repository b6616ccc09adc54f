"""Deterministic mini-batches over in-memory tensors, sharded across ranks.

The order of epoch e depends only on (seed, e), never on how many epochs ran before in this
process: that is what makes a resumed run identical to an uninterrupted one.
"""

from collections.abc import Iterator

import torch


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A distinct, reproducible seed per (seed, epoch, rank) for shuffling and augmentation."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % (2**63)


def epoch_order(num_items: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The same permutation on every rank for a given (seed, epoch)."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(num_items, generator=generator)


def steps_per_epoch(num_items: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    per_rank = num_items // world_size
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def batch_indices(
    num_items: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1, drop_last: bool = True
) -> Iterator[torch.Tensor]:
    """Index batches [batch_size] for this rank; every rank gets the same number of steps."""
    order = epoch_order(num_items, seed=seed, epoch=epoch)
    per_rank = num_items // world_size
    shard = order[rank * per_rank : (rank + 1) * per_rank]
    for step in range(steps_per_epoch(num_items, batch_size, world_size, drop_last)):
        yield shard[step * batch_size : (step + 1) * batch_size]


def sequential_batches(num_items: int, batch_size: int) -> Iterator[slice]:
    """In-order slices covering every item once (evaluation)."""
    for start in range(0, num_items, batch_size):
        yield slice(start, min(start + batch_size, num_items))
