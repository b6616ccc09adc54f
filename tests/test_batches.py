"""Deterministic, sharded batches: the basis of exact resume and of DDP."""

import torch

from pipeline.batches import batch_indices, epoch_order, sequential_batches, steps_per_epoch


def test_order_depends_only_on_seed_and_epoch():
    assert torch.equal(epoch_order(100, seed=3, epoch=2), epoch_order(100, seed=3, epoch=2))
    assert not torch.equal(epoch_order(100, seed=3, epoch=2), epoch_order(100, seed=3, epoch=3))
    assert not torch.equal(epoch_order(100, seed=3, epoch=2), epoch_order(100, seed=4, epoch=2))


def test_ranks_get_disjoint_equal_shards():
    shards = [torch.cat(list(batch_indices(103, 10, seed=0, epoch=1, rank=r, world_size=2))) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_drop_last_keeps_full_batches_only():
    batches = list(batch_indices(105, 10, seed=0, epoch=0))
    assert len(batches) == steps_per_epoch(105, 10) == 10
    assert all(len(b) == 10 for b in batches)
    assert len(set(torch.cat(batches).tolist())) == 100


def test_sequential_batches_cover_everything_in_order():
    covered = [i for s in sequential_batches(23, 5) for i in range(23)[s]]
    assert covered == list(range(23))
