"""The queue of past keys and the momentum encoder (pipeline/memory_queue.py) against plain
references: a deque of maxlen `size`, and the EMA formula applied by hand in float64."""

import collections
import copy

import pytest
import torch
from torch import nn

from pipeline.memory_queue import KeyQueue, MomentumEncoder
from pipeline.models import build_supcon_model


def batches(sizes, dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, dim, generator=gen), torch.randint(0, 10, (n,), generator=gen)) for n in sizes]


@pytest.mark.parametrize("size,sizes", [(5, [3, 3, 3, 1, 4]), (4, [4, 4]), (3, [7, 1]), (6, [1] * 9)])
def test_the_queue_is_a_fifo_of_the_newest_keys(size, sizes):
    queue, expected = KeyQueue(size, dim=4), collections.deque(maxlen=size)
    for keys, labels in batches(sizes):
        queue.enqueue(keys, labels)
        expected.extend(zip(keys, labels))
        got_keys, got_labels = queue.contents()
        assert torch.equal(got_keys, torch.stack([k for k, _ in expected]))
        assert got_labels.tolist() == [int(y) for _, y in expected]


def test_size_zero_holds_nothing():
    queue = KeyQueue(0, dim=4)
    for keys, labels in batches([3, 2]):
        queue.enqueue(keys, labels)
    keys, labels = queue.contents()
    assert keys.shape == (0, 4) and labels.shape == (0,)


def test_a_queue_resumes_from_its_state_dict_exactly():
    first, rest = batches([3, 4]), batches([2, 5], seed=1)
    queue = KeyQueue(6, dim=4)
    for keys, labels in first:
        queue.enqueue(keys, labels)
    resumed = KeyQueue(6, dim=4)
    resumed.load_state_dict(copy.deepcopy(queue.state_dict()))
    for keys, labels in rest:
        queue.enqueue(keys, labels)
        resumed.enqueue(keys, labels)
    assert all(torch.equal(a, b) for a, b in zip(queue.contents(), resumed.contents()))


@pytest.mark.parametrize("size", [-1, 2.5, True, "8"])
def test_a_bad_size_is_named(size):
    with pytest.raises(ValueError, match="queue size must be an int >= 0"):
        KeyQueue(size, dim=4)


def small_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return build_supcon_model("small_resnet", in_channels=1, image_size=8, width=4, depth=2, feat_dim=8)


def test_the_momentum_encoder_follows_the_ema_formula_and_copies_buffers():
    online, momentum = small_model(), 0.9
    key = MomentumEncoder(online, momentum)
    expected = [p.detach().double().clone() for p in online.parameters()]
    optimizer = torch.optim.SGD(online.parameters(), lr=0.5)
    for step in range(3):
        images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        online(images).square().sum().backward()
        optimizer.step()
        key.update(online)
        expected = [momentum * e + (1 - momentum) * p.detach().double() for e, p in zip(expected, online.parameters())]
    for got, want in zip(key.model.parameters(), expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(a, b) for a, b in zip(key.model.buffers(), online.buffers()))  # running stats copied
    assert not any(p.requires_grad for p in key.model.parameters())


def test_keys_use_batch_statistics_and_at_momentum_zero_are_the_online_embeddings():
    online = small_model()
    key = MomentumEncoder(online, 0.0)
    with torch.no_grad():  # move the online weights, and its running statistics, away from the copy
        for p in online.parameters():
            p.add_(0.01)
        online.train()(torch.randn(16, 1, 8, 8))
    key.update(online)
    images = torch.randn(10, 1, 8, 8)
    keys = key.keys(images)
    online.train()
    assert torch.equal(keys, online(images).detach()) and not keys.requires_grad
    online.eval()  # train mode, not running statistics: eval would normalise differently
    assert not torch.allclose(keys, online(images).detach())


def test_the_momentum_encoder_resumes_from_its_state_dict_exactly():
    online = small_model()
    key = MomentumEncoder(online, 0.99)
    resumed = MomentumEncoder(small_model(seed=1), 0.99)
    resumed.load_state_dict(copy.deepcopy(key.state_dict()))
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(1.1)
    key.update(online)
    resumed.update(online)
    assert all(torch.equal(a, b) for a, b in zip(key.state_dict().values(), resumed.state_dict().values()))


@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5, True, "0.9"])
def test_a_momentum_outside_0_1_is_named(momentum):
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        MomentumEncoder(small_model(), momentum)
