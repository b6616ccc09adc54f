"""SupCon loss against plain float64 references, the dense formulation and pml's SupConLoss."""

import math

import pytest
import torch
import torch.nn.functional as F

from bench.bench_loss import dense_supcon_loss
from pipeline import losses
from pipeline.losses import SupConLoss, supcon_loss


def reference_loop(features, labels, temperature, base_temperature=None, variant="out"):
    """Eq. 2 / Eq. 3 literally, one anchor at a time, in float64; anchors without positives skip."""
    z = features.double().reshape(-1, features.shape[-1])  # image-major [B*V, D]
    views = features.shape[1]
    y = (torch.arange(features.shape[0]) if labels is None else labels).repeat_interleave(views)
    per_anchor = []
    for i in range(len(z)):
        sims = z @ z[i] / temperature
        others = torch.arange(len(z)) != i
        positives = others & (y == y[i])
        if not positives.any():
            continue
        log_prob = sims[positives] - torch.logsumexp(sims[others], 0)  # log p(p | i)
        if variant == "out":
            per_anchor.append(-log_prob.mean())
        else:
            per_anchor.append(-torch.log(log_prob.exp().mean()))
    return temperature / (base_temperature or temperature) * torch.stack(per_anchor).mean()


def reference_masked(features, labels, temperature, variant="out", chunk=1024):
    """The same in float64 with boolean masks, row chunk by row chunk (fast enough for N = 8192)."""
    z = features.double().reshape(-1, features.shape[-1])
    views, n = features.shape[1], len(features.reshape(-1, features.shape[-1]))
    y = (torch.arange(features.shape[0]) if labels is None else labels).repeat_interleave(views)
    total, count = torch.zeros((), dtype=torch.float64), 0
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        sims = z[rows] @ z.T / temperature
        is_self = rows[:, None] == torch.arange(n)[None, :]
        positives = (y[rows, None] == y[None, :]) & ~is_self
        log_prob = sims - sims.masked_fill(is_self, -math.inf).logsumexp(1, keepdim=True)
        n_pos = positives.sum(1)
        if variant == "out":
            loss = -(log_prob * positives).sum(1) / n_pos
        else:
            loss = -(log_prob.masked_fill(~positives, -math.inf).logsumexp(1) - n_pos.log())
        total, count = total + loss[n_pos > 0].sum(), count + int((n_pos > 0).sum())
    return total / count


def make_batch(batch, views, classes, dim=16, seed=0, dtype=torch.float32):
    """Normalised features [batch, views, dim] and labels [batch] (None for classes=None)."""
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, views, dim, generator=gen, dtype=dtype), dim=-1)
    labels = None if classes is None else torch.randint(0, classes, (batch,), generator=gen)
    return features, labels


def every_class_twice(batch, classes, seed=0):
    """[batch] labels in which every class present occurs at least twice (all anchors positive)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch) % min(classes, batch // 2)
    return labels[torch.randperm(batch, generator=gen)]


def loss_and_grad(features, labels, **kwargs):
    """(loss, d loss / d features) of supcon_loss at features."""
    leaf = features.detach().clone().requires_grad_()
    loss = supcon_loss(leaf, labels, **kwargs)
    loss.backward()
    return loss.detach(), leaf.grad


SHAPES = [  # (B, V, classes); classes None = SimCLR
    (8, 2, 2), (8, 1, 3), (32, 4, 5), (64, 1, 10), (64, 2, 1000), (100, 2, None), (16, 4, None),
    (48, 1, 40),
]


@pytest.mark.parametrize("batch,views,classes", SHAPES)
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5])
def test_matches_float64_loop(batch, views, classes, variant, temperature):
    features, labels = make_batch(batch, views, classes, seed=batch + views)
    loss = supcon_loss(features, labels, temperature=temperature, variant=variant)
    expected = reference_loop(features, labels, temperature, variant=variant)
    assert loss.dtype == torch.float32
    assert loss.double().item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("block_size", [None, 5])
def test_float64_stays_float64(variant, block_size):
    features, labels = make_batch(30, 1, 6, dtype=torch.float64)  # with singleton classes
    loss = supcon_loss(features, labels, temperature=0.07, variant=variant, block_size=block_size)
    expected = reference_loop(features, labels, 0.07, variant=variant)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("variant", ["out", "in"])
def test_masked_reference_equals_loop(variant):
    # reference_masked stands in for the loop at N = 8192, so it must agree with it first
    features, labels = make_batch(40, 2, 7)
    expected = reference_loop(features, labels, 0.1, variant=variant)
    assert reference_masked(features, labels, 0.1, variant, chunk=16) == pytest.approx(expected)


def test_batch_4096_matches_float64_reference():
    features, labels = make_batch(4096, 2, 100, dim=128, seed=4)  # N = 8192
    expected = reference_masked(features, labels, 0.07)
    loss = supcon_loss(features, labels, temperature=0.07)
    assert loss.double().item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("block_size", [None, 4])
@pytest.mark.parametrize("views,labels", [(2, [0, 1, 0, 2, 1, 3]), (1, [0, 1, 0, 2, 1, 3]),
                                          (2, None)])
def test_gradcheck_float64(variant, block_size, views, labels):
    features, _ = make_batch(6, views, None, dim=5, dtype=torch.float64)
    labels = None if labels is None else torch.tensor(labels)  # views=1: 2 and 3 have no positive
    fn = lambda f: supcon_loss(f, labels, temperature=0.5, variant=variant, block_size=block_size)
    assert fn(features).dtype == torch.float64
    assert torch.autograd.gradcheck(fn, (features.requires_grad_(),))


@pytest.mark.parametrize("batch,views,classes", [(50, 2, 7), (33, 1, 4), (20, 4, None)])
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_blockwise_equals_dense(batch, views, classes, variant, block_size):
    features, labels = make_batch(batch, views, classes)
    dense_loss, dense_grad = loss_and_grad(features, labels, variant=variant)
    block_loss, block_grad = loss_and_grad(features, labels, variant=variant, block_size=block_size)
    torch.testing.assert_close(block_loss, dense_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(block_grad, dense_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["out", "in"])
def test_blockwise_never_builds_full_matrix(monkeypatch, variant):
    # Above DENSE_MAX_ELEMENTS the blockwise path is automatic; every similarity block it builds,
    # in forward and in backward, has at most DEFAULT_BLOCK_SIZE rows.
    features, labels = make_batch(60, 2, 6)
    expected_loss, expected_grad = loss_and_grad(features, labels, variant=variant)
    monkeypatch.setattr(losses, "DENSE_MAX_ELEMENTS", 100)
    monkeypatch.setattr(losses, "DEFAULT_BLOCK_SIZE", 16)
    shapes, similarities = [], losses._similarities

    def recording_similarities(*args):
        sims = similarities(*args)
        shapes.append(tuple(sims.shape))
        return sims

    monkeypatch.setattr(losses, "_similarities", recording_similarities)
    loss, grad = loss_and_grad(features, labels, variant=variant)
    assert max(rows for rows, _ in shapes) == 16 and len(shapes) == 2 * math.ceil(120 / 16)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch,views,classes",
                         [(16, 2, 3), (40, 1, 8), (30, 4, 30), (24, 2, None)])
@pytest.mark.parametrize("base_temperature", [None, 0.07])
def test_matches_dense_formulation(batch, views, classes, base_temperature):
    features, _ = make_batch(batch, views, None)
    labels = None if classes is None else every_class_twice(batch, classes)
    ours_loss, ours_grad = loss_and_grad(features, labels, temperature=0.1,
                                         base_temperature=base_temperature)
    leaf = features.clone().requires_grad_()
    dense_loss = dense_supcon_loss(leaf, labels, 0.1, base_temperature)
    dense_loss.backward()
    torch.testing.assert_close(ours_loss, dense_loss.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(ours_grad, leaf.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("batch,views,classes,all_positive", [
    (16, 2, 3, True), (40, 1, 8, True), (64, 4, 100, True), (64, 1, 50, False), (32, 2, None, True),
])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_matches_pytorch_metric_learning(batch, views, classes, all_positive, temperature):
    from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

    features, labels = make_batch(batch, views, classes, dim=32)
    if all_positive and classes is not None:
        labels = every_class_twice(batch, classes)
    # pml wants [N, D] embeddings and [N] labels; its row order is ours (image-major)
    pml_labels = (torch.arange(batch) if labels is None else labels).repeat_interleave(views)
    expected = PMLSupConLoss(temperature=temperature)(features.reshape(batch * views, -1),
                                                        pml_labels)
    loss = supcon_loss(features, labels, temperature=temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("block_size", [None, 3])
def test_anchor_without_positive_is_left_out(variant, block_size):
    # Label 9 appears once (V = 1): that anchor is only a negative for the others.
    features, _ = make_batch(7, 1, None)
    labels = torch.tensor([0, 0, 1, 1, 1, 9, 0])
    loss, grad = loss_and_grad(features, labels, variant=variant, block_size=block_size)
    expected = reference_loop(features, labels, 0.1, variant=variant)  # mean over the other 6
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(grad).all()
    assert grad[5].abs().sum() > 0  # still a negative for the others


@pytest.mark.parametrize("views,labels", [(1, [0, 1, 2, 3]), (1, None)])
def test_no_anchor_with_positive_raises(views, labels):
    features, _ = make_batch(4, views, None)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(features, None if labels is None else torch.tensor(labels))


def test_base_temperature_scales_loss():
    features, labels = make_batch(32, 2, 4)
    plain = supcon_loss(features, labels, temperature=0.1)
    scaled = supcon_loss(features, labels, temperature=0.1, base_temperature=0.07)
    assert scaled.item() == pytest.approx(plain.item() * 0.1 / 0.07, rel=1e-6)
    assert supcon_loss(features, labels, temperature=0.1, base_temperature=0.1) == plain


def test_bf16_autocast_computes_in_float32():
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 16)
    x, labels = torch.randn(64, 2, 32), torch.randint(0, 5, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = F.normalize(model(x), dim=-1)
        assert features.dtype == torch.bfloat16
        loss = supcon_loss(features, labels)
        assert loss.dtype == torch.float32
        exact = supcon_loss(features.float(), labels)  # the same bf16 values, in float32
        loss.backward()
    assert loss.item() == pytest.approx(exact.item(), rel=1e-6)
    fp32_loss = supcon_loss(F.normalize(model(x), dim=-1), labels)
    assert loss.item() == pytest.approx(fp32_loss.item(), rel=2e-2)
    assert model.weight.grad.dtype == torch.float32 and torch.isfinite(model.weight.grad).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"base_temperature": 0.0}, "base_temperature"), ({"variant": "both"}, "variant"),
    ({"block_size": 0}, "block_size"), ({"block_size": 2.0}, "block_size"),
    ({"block_size": True}, "block_size"),
])
def test_bad_options_raise(kwargs, match):
    features, labels = make_batch(8, 2, 2)
    with pytest.raises(ValueError, match=match):
        supcon_loss(features, labels, **kwargs)
    with pytest.raises(ValueError, match=match):
        SupConLoss(**kwargs)


@pytest.mark.parametrize("features,labels,match", [
    (torch.randn(8, 16), None, "features"),
    (torch.randn(8, 2, 4, 4), None, "features"),
    (torch.randn(0, 2, 4), None, "features"),
    (torch.ones(8, 2, 4, dtype=torch.long), None, "features"),
    (torch.randn(8, 2, 4), torch.zeros(7, dtype=torch.long), "labels"),
    (torch.randn(8, 2, 4), torch.zeros(8, 1, dtype=torch.long), "labels"),
    (torch.randn(8, 2, 4), torch.zeros(8), "labels"),
])
def test_bad_inputs_raise(features, labels, match):
    with pytest.raises(ValueError, match=match):
        supcon_loss(features, labels)


def test_module_matches_function():
    features, labels = make_batch(24, 2, 3)
    module = SupConLoss(temperature=0.2, base_temperature=0.1, variant="in", block_size=5)
    expected = supcon_loss(features, labels, temperature=0.2, base_temperature=0.1, variant="in")
    torch.testing.assert_close(module(features, labels), expected)
    assert "variant='in'" in repr(module)
    # without a process group the distributed form is the same loss
    distributed = SupConLoss(temperature=0.2, variant="in", distributed=True)
    torch.testing.assert_close(distributed(features, labels),
                               supcon_loss(features, labels, temperature=0.2, variant="in"))
