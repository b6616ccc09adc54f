"""Deterministic mini-batches over in-memory tensors, sharded across ranks.

The order of epoch e depends only on (seed, e), never on how many epochs ran before in this
process: that is what makes a resumed run identical to an uninterrupted one.
"""

from collections.abc import Iterator
from typing import Protocol

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


class BatchSource(Protocol):
    """Where the training loop takes its (inputs, labels) batches from, on the CPU.

    Every rank must get the same number of steps per epoch, and epoch e's batches must depend only
    on (seed, e, rank), so a resumed run sees what an uninterrupted one would. A streaming loader
    (JPEG decoding in worker processes) implements this too; the loop does not change.
    """

    batch_size: int
    """Items per step on each rank."""

    def __len__(self) -> int: ...

    def steps_per_epoch(self, world_size: int) -> int: ...

    def epoch(self, epoch: int, *, rank: int, world_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors (uint8 images or features [N, ...], labels [N])."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int, seed: int) -> None:
        self.inputs, self.labels, self.batch_size, self.seed = inputs, labels, batch_size, seed

    def __len__(self) -> int:
        return len(self.labels)

    def steps_per_epoch(self, world_size: int) -> int:
        return steps_per_epoch(len(self), self.batch_size, world_size)

    def epoch(self, epoch: int, *, rank: int, world_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in batch_indices(len(self), self.batch_size, seed=self.seed, epoch=epoch, rank=rank, world_size=world_size):
            yield self.inputs[index], self.labels[index]
