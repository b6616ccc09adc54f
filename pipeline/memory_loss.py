"""SupCon with a memory of earlier keys: the batch's anchors contrasted with the batch and a queue
of keys from earlier batches (a momentum encoder's, for small batches; issue 21).

It reuses `pipeline.losses`' anchor-slice machinery as `distributed_supcon_loss` does: the
anchors are the first B*V rows of the contrast matrix and the keys are contrast rows only, so the
dense/blockwise choice, the O(N*D) positive term and the memory-light backward are the same code.
Kept in its own file so that the stages' loss (and the committed results made with it) stay as
they are until the queue is wired into training.
"""

import torch

from pipeline import dist
from pipeline.losses import _anchor_loss_sum, _check_inputs, _check_options, _flatten, _require_positives


def supcon_loss_with_memory(
    features: torch.Tensor,
    labels: torch.Tensor | None,
    keys: torch.Tensor,
    key_labels: torch.Tensor | None,
    *,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    variant: str = "out",
    block_size: int | None = None,
    across_ranks: bool = False,
) -> torch.Tensor:
    """SupCon loss of one batch whose contrast set also holds a memory of earlier keys.

    Anchors are the batch's B*V rows; each is contrasted with the other batch rows (with
    gradient, as in `supcon_loss`) and with every key (no gradient: keys are detached). Its
    positives are every other same-label row of the batch and every same-label key. The loss is
    the mean over anchors with at least one positive. With no keys (M = 0) it is `supcon_loss`.

    features: [B, V, D] L2-normalised online embeddings; labels: [B] or None (SimCLR: the other
        views of an image are its positives, and every key is a negative).
    keys: [M, D] L2-normalised keys of earlier batches (a momentum encoder's),
        on the features' device; key_labels: [M] class ids (None with labels None).
    across_ranks: under torchrun, as `supcon_loss`'s: this rank's anchors against every rank's
        batch rows (gathered with gradient) and the keys, which every rank holds the same of
        (the keys are gathered before they are enqueued). The mean over ranks is then the loss
        of one process on the concatenated batch with the same queue.
    """
    _check_options(temperature, base_temperature, variant, block_size)
    _check_inputs(features, labels)
    _check_keys(features, labels, keys, key_labels)
    first, world = 0, 1
    if across_ranks and dist.world_size() > 1:
        first, world = dist.rank() * features.shape[0] * features.shape[1], dist.world_size()
        features = dist.gather_with_grad(features)
        labels = None if labels is None else dist.gather_no_grad(labels)
    batch, views = features.shape[:2]
    local_rows = batch * views // world
    z, batch_codes = _flatten(features, labels)
    z = torch.cat([z, keys.detach().to(z.dtype)])
    if labels is None:  # SimCLR: each key is its own class, a positive of nothing
        key_codes = batch + torch.arange(keys.shape[0], device=z.device)
    else:
        codes = torch.unique(torch.cat([labels, key_labels]), return_inverse=True)[1]
        batch_codes, key_codes = codes[:batch].repeat_interleave(views), codes[batch:]
    codes = torch.cat([batch_codes, key_codes])
    counts = torch.bincount(codes)
    n_valid = (counts[batch_codes] > 1).sum()  # anchors (batch rows of every rank) with a positive
    _require_positives(n_valid)
    loss_sum = _anchor_loss_sum(z, codes, counts, first, local_rows, temperature, variant, block_size)
    return temperature / (base_temperature or temperature) * world * loss_sum / n_valid


def _check_keys(features: torch.Tensor, labels: torch.Tensor | None, keys: torch.Tensor, key_labels: torch.Tensor | None) -> None:
    """keys [M, D] floating point beside the features; key_labels [M] integers iff labels are given."""
    dim = features.shape[2]
    if not isinstance(keys, torch.Tensor) or keys.dim() != 2 or keys.shape[1] != dim or not keys.is_floating_point():
        shape = tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys)
        raise ValueError(f"keys must be a floating-point [M, D = {dim}] tensor, got {shape}")
    if keys.device != features.device:
        raise ValueError(f"keys are on {keys.device} but features on {features.device}")
    if labels is None:
        if key_labels is not None:
            raise ValueError("key_labels must be None when labels is None (SimCLR keys are negatives)")
        return
    if not isinstance(key_labels, torch.Tensor) or key_labels.shape != (keys.shape[0],):
        shape = tuple(key_labels.shape) if isinstance(key_labels, torch.Tensor) else type(key_labels)
        raise ValueError(f"key_labels must be a [M = {keys.shape[0]}] tensor, got {shape}")
    if key_labels.is_floating_point() or key_labels.is_complex() or key_labels.device != features.device:
        raise ValueError(f"key_labels must be an integer tensor on {features.device}, got {key_labels.dtype} on {key_labels.device}")
