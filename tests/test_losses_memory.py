"""SupCon with a memory of earlier keys (pipeline.memory_loss.supcon_loss_with_memory) against a float64
reference of the formula written here, against supcon_loss with no keys, and against
pytorch-metric-learning's CrossBatchMemory(SupConLoss) where the two coincide.

The formula: anchors are the batch's B*V rows z_i (with gradient); the contrast set A(i) is every
other batch row and every key k_m (no gradient); positives P(i) are the rows of A(i) with the
anchor's label. With s_ia = z_i . a / T and LSE_i = log sum_{a in A(i)} exp(s_ia):
    L_out_i = LSE_i - mean_{p in P(i)} s_ip,    L_in_i = LSE_i - log mean_{p in P(i)} exp(s_ip),
averaged over anchors with |P(i)| > 0.
"""

import pytest
import torch
import torch.nn.functional as F

from pipeline.losses import supcon_loss
from pipeline.memory_loss import supcon_loss_with_memory


def reference(features, labels, keys, key_labels, temperature, variant="out"):
    """The formula above, one anchor at a time, in float64."""
    batch, views, dim = features.shape
    z = features.double().reshape(batch * views, dim)
    k = keys.double().detach()
    y = (torch.arange(batch) if labels is None else labels).repeat_interleave(views)
    ky = torch.full((len(k),), -1) if labels is None else key_labels  # -1: SimCLR keys match nothing
    per_anchor = []
    for i in range(len(z)):
        others = torch.arange(len(z)) != i
        contrast = torch.cat([z[others], k])
        contrast_labels = torch.cat([y[others], ky])
        sims = contrast @ z[i] / temperature
        positives = contrast_labels == y[i]
        if not positives.any():
            continue
        lse = torch.logsumexp(sims, 0)
        if variant == "out":
            per_anchor.append(lse - sims[positives].mean())
        else:
            per_anchor.append(lse - torch.log(sims[positives].exp().mean()))
    return torch.stack(per_anchor).mean()


def batch_and_keys(batch=12, views=2, keys=20, classes=4, dim=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, views, dim, generator=gen, dtype=dtype), dim=-1)
    memory = F.normalize(torch.randn(keys, dim, generator=gen, dtype=dtype), dim=-1)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    key_labels = torch.randint(0, classes + 2, (keys,), generator=gen)  # keys may hold classes the batch lacks
    return features, labels, memory, key_labels


def loss_and_grad(loss_fn, features, *args, **kwargs):
    leaf = features.detach().clone().requires_grad_()
    loss = loss_fn(leaf, *args, **kwargs)
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("block_size", [None, 5])
@pytest.mark.parametrize("simclr", [False, True])
def test_without_keys_it_is_supcon_loss_exactly(variant, block_size, simclr):
    features, labels, memory, key_labels = batch_and_keys()
    labels = None if simclr else labels
    empty_labels = None if simclr else key_labels[:0]
    options = {"temperature": 0.1, "variant": variant, "block_size": block_size}
    ours = loss_and_grad(supcon_loss_with_memory, features, labels, memory[:0], empty_labels, **options)
    plain = loss_and_grad(supcon_loss, features, labels, **options)
    assert torch.equal(ours[0], plain[0]) and torch.equal(ours[1], plain[1])


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("block_size", [None, 7])
@pytest.mark.parametrize("shape", [(12, 2, 20, 4), (9, 1, 30, 3), (6, 4, 5, 10), (16, 2, 64, 2)])
def test_loss_and_gradient_match_the_float64_formula(variant, block_size, shape):
    batch, views, keys, classes = shape
    features, labels, memory, key_labels = batch_and_keys(batch, views, keys, classes, dtype=torch.float64)
    loss, grad = loss_and_grad(supcon_loss_with_memory, features, labels, memory, key_labels, temperature=0.1, variant=variant, block_size=block_size)
    expected, expected_grad = loss_and_grad(reference, features, labels, memory, key_labels, 0.1, variant)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # float32, as training computes it
    loss32, grad32 = loss_and_grad(supcon_loss_with_memory, features.float(), labels, memory.float(), key_labels, temperature=0.1, variant=variant, block_size=block_size)
    torch.testing.assert_close(loss32.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad32.double(), expected_grad, rtol=1e-4, atol=1e-5)


def test_simclr_keys_are_negatives_only():
    features, _, memory, _ = batch_and_keys(batch=8, views=2, keys=16)
    loss, grad = loss_and_grad(supcon_loss_with_memory, features.double(), None, memory.double(), None, temperature=0.2)
    expected, expected_grad = loss_and_grad(reference, features.double(), None, memory.double(), None, 0.2)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_an_anchor_whose_only_positive_is_a_key_counts():
    """Batch of distinct labels (no in-batch positive with V = 1): only the keys make anchors."""
    features, _, memory, _ = batch_and_keys(batch=4, views=1, keys=6)
    labels, key_labels = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 5, 5, 2, 7])
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(features, labels)
    loss = supcon_loss_with_memory(features.double(), labels, memory.double(), key_labels)
    torch.testing.assert_close(loss, reference(features.double(), labels, memory.double(), key_labels, 0.1), rtol=1e-12, atol=0)


def test_keys_get_no_gradient():
    features, labels, memory, key_labels = batch_and_keys()
    keys = memory.clone().requires_grad_()
    supcon_loss_with_memory(features.requires_grad_(), labels, keys, key_labels).backward()
    assert keys.grad is None and features.grad is not None


def test_agrees_with_pml_cross_batch_memory_where_they_coincide():
    """pml's CrossBatchMemory enqueues the batch first (detached) and contrasts each anchor with
    the memory less its own slot: with V = 1 and the previous batch as the memory that is the same
    contrast set as the batch plus keys = the previous batch (the momentum-0 case, no self-key).
    The loss values agree; gradients differ by design (pml's memory side carries none, here the
    in-batch contrast rows do, as in supcon_loss)."""
    from pytorch_metric_learning.losses import CrossBatchMemory, SupConLoss

    first, first_labels, _, _ = batch_and_keys(batch=16, views=1, seed=1)
    second, second_labels, _, _ = batch_and_keys(batch=16, views=1, seed=2)
    memory = CrossBatchMemory(SupConLoss(temperature=0.1), embedding_size=8, memory_size=64)
    memory(first[:, 0], first_labels)
    theirs = memory(second[:, 0], second_labels)
    ours = supcon_loss_with_memory(second, second_labels, first[:, 0], first_labels, temperature=0.1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda f, y, k, ky: (f, y, k[:, :3], ky), "keys must be a floating-point"),
        (lambda f, y, k, ky: (f, y, k.long(), ky), "keys must be a floating-point"),
        (lambda f, y, k, ky: (f, y, k, ky[:3]), "key_labels must be a"),
        (lambda f, y, k, ky: (f, y, k, ky.float()), "key_labels must be an integer"),
        (lambda f, y, k, ky: (f, None, k, ky), "key_labels must be None"),
    ],
)
def test_bad_keys_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        supcon_loss_with_memory(*change(*batch_and_keys()))
