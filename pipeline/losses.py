"""Supervised contrastive loss (Khosla et al., 2020), SimCLR's NT-Xent as its label-free case.

Notation: the B images with V views each are flattened image-major into N = B*V rows
z_0..z_{N-1} (row b*V + v is view v of image b). Every row is an anchor i; its positives P(i)
are the other rows with the same label (SimCLR: the other views of the same image), and
s_ia = z_i . z_a / T. With LSE_i = log sum_{a != i} exp(s_ia):

    L_out_i = LSE_i - mean_{p in P(i)} s_ip                              (Eq. 2)
    L_in_i  = LSE_i - log mean_{p in P(i)} exp(s_ip)                      (Eq. 3)

The loss is (T / base_T) * mean over anchors with |P(i)| > 0.

How it is computed, and why:
  * For L_out the positive term is linear in the similarities, so sum_p s_ip comes from per-class
    feature sums in O(N*D): z_i . (S_{y_i} - z_i) / T. Only LSE_i needs the N x N similarities.
    (SimCLR is the case "label = image index".)
  * LSE_i (and, for L_in, the log-sum-exp over positives) is one custom autograd Function,
    `_AnchorLogSumExp`. Its backward is softmax(row) @ Z, so autograd never stores the pile of
    N x N temporaries a dense formulation leaves behind (masks, logits, exp, log_prob, ...).
  * Dense path (A*N <= DENSE_MAX_ELEMENTS): one [A, N] matrix, exponentiated in place and kept
    for backward (L_out), so backward is two matmuls.
  * Blockwise path (larger, or block_size given): anchors in row blocks; backward recomputes each
    block's similarities, so peak memory is O(N * block_size) in forward and backward.

`distributed_supcon_loss` contrasts this rank's anchors against the features of all ranks.
"""

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from pipeline import dist

# Largest anchors x contrast similarity matrix the dense path holds (256 MiB of float32):
# N = B*V up to 8192 in one process. Above it the blockwise path is chosen automatically.
DENSE_MAX_ELEMENTS = 8192 * 8192
# Anchor rows per block on the blockwise path when block_size is not given.
DEFAULT_BLOCK_SIZE = 1024
VARIANTS = ("out", "in")


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    variant: str = "out",
    block_size: int | None = None,
    across_ranks: bool = False,
) -> torch.Tensor:
    """SupCon loss of one batch; SimCLR (NT-Xent) when labels is None. The one loss entry.

    features: [B, V, D], V >= 1 views per image, ALREADY L2-normalised along D (not
        renormalised here). Half/bfloat16 inputs are computed in float32, float64 stays float64.
    labels: [B] integer class ids, or None: then only the other views of an image are positives.
    temperature: T > 0 dividing the similarities.
    base_temperature: the loss is scaled by T / base_temperature (default T, so by 1).
    variant: "out" (Eq. 2, the paper's default) or "in" (Eq. 3).
    block_size: process anchors in blocks of this many rows (peak memory O(B*V * block_size));
        None picks the dense path up to DENSE_MAX_ELEMENTS similarities, blockwise above.
    across_ranks: under data-parallel training, contrast this rank's anchors against the
        features of every rank (every rank the same B, the same labels choice). Features are
        gathered with gradient, so each rank's features get the gradient of every rank's
        anchors. Returned then: world_size * (sum of local anchor losses) / (anchors with a
        positive on all ranks); its mean over ranks is the single-process loss of the
        concatenated batch, and after DDP averages gradients they equal the single-process
        ones. With one process (or torch.distributed not initialised) it changes nothing.
    Returns a scalar: the mean over anchors that have at least one positive; anchors without one
    are left out. Raises ValueError for bad arguments or when no anchor has a positive.
    """
    _check_options(temperature, base_temperature, variant, block_size)
    _check_inputs(features, labels)
    rows = features.shape[0] * features.shape[1]
    first, world = 0, 1
    if across_ranks and dist.world_size() > 1:
        first, world = dist.rank() * rows, dist.world_size()
        features = dist.gather_with_grad(features)
        labels = None if labels is None else dist.gather_no_grad(labels)
    return _reduced_loss(features, labels, first, rows, world, temperature, base_temperature, variant, block_size)


def distributed_supcon_loss(features: torch.Tensor, labels: torch.Tensor | None = None, **options) -> torch.Tensor:
    """`supcon_loss(..., across_ranks=True)`: local anchors against the features of all ranks."""
    return supcon_loss(features, labels, across_ranks=True, **options)


def _reduced_loss(features, labels, first, count, world, temperature, base_temperature,
                  variant, block_size) -> torch.Tensor:
    """Scalar loss of anchor rows [first, first+count) of the flattened features [B, V, D].

    Sums the anchors' losses and divides by the number of anchors with a positive among ALL
    rows, times `world`: the mean over all anchors when count covers every row (world = 1).
    """
    z, codes = _flatten(features, labels)
    counts = torch.bincount(codes)  # [C] rows per class, over all ranks' rows
    n_valid_all = (counts[codes] > 1).sum()  # anchors with a positive: no extra communication
    _require_positives(n_valid_all)
    loss_sum = _anchor_loss_sum(z, codes, counts, first, count, temperature, variant, block_size)
    scale = temperature / (base_temperature or temperature)
    return scale * world * loss_sum / n_valid_all


class SupConLoss(nn.Module):
    """Module form of supcon_loss; distributed=True contrasts against every rank's features."""

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float | None = None,
        variant: str = "out",
        block_size: int | None = None,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        _check_options(temperature, base_temperature, variant, block_size)  # fail at build time
        self.temperature, self.base_temperature = temperature, base_temperature
        self.variant, self.block_size, self.distributed = variant, block_size, distributed

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """features: [B, V, D] L2-normalised, labels: [B] or None -> scalar loss."""
        return supcon_loss(
            features, labels, temperature=self.temperature,
            base_temperature=self.base_temperature, variant=self.variant,
            block_size=self.block_size, across_ranks=self.distributed,
        )

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
                f"variant={self.variant!r}, block_size={self.block_size}, "
                f"distributed={self.distributed}")


def _check_options(temperature, base_temperature, variant, block_size) -> None:
    """The scalar arguments, validated in one place; messages name the argument."""
    if not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if base_temperature is not None and (
        not isinstance(base_temperature, (int, float)) or not 0 < base_temperature < float("inf")
    ):
        raise ValueError(f"base_temperature must be None or a finite number > 0, "
                         f"got {base_temperature!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise ValueError(f"block_size must be None or an int >= 1, got {block_size!r}")


def _check_inputs(features: torch.Tensor, labels: torch.Tensor | None) -> None:
    """features [B, V, D] floating point; labels [B] integers on the same device, or None."""
    if not isinstance(features, torch.Tensor) or features.dim() != 3 or 0 in features.shape:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"features must be a non-empty [B, V, D] tensor, got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got {features.dtype}")
    if labels is None:
        return
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels)
        raise ValueError(f"labels must be a [B] tensor or None, got {shape}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels must have length B = {features.shape[0]} (features.shape[0]), "
                         f"got {labels.shape[0]}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.device != features.device:
        raise ValueError(f"labels are on {labels.device} but features on {features.device}")


def _flatten(features: torch.Tensor, labels: torch.Tensor | None):
    """[B, V, D] features, [B] labels -> z [B*V, D] image-major, codes [B*V] in 0..C-1.

    z is float32 (float64 kept) so reduced-precision inputs still get float32 log-sum-exps.
    SimCLR uses the image index as the class, which makes the other views the positives.
    """
    batch, views, dim = features.shape
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    z = features.reshape(batch * views, dim).to(dtype)
    if labels is None:
        per_image = torch.arange(batch, device=features.device)
    else:
        per_image = torch.unique(labels, return_inverse=True)[1]
    return z, per_image.repeat_interleave(views)


def _require_positives(n_valid: torch.Tensor) -> None:
    # One host sync per step; a loss over zero anchors is a data bug the caller must hear about.
    if int(n_valid) == 0:
        raise ValueError("no anchor has a positive: every class in labels occurs once and "
                         "V == 1 (SimCLR needs V >= 2 views)")


def _anchor_loss_sum(z, codes, counts, first, count, temperature, variant, block_size):
    """Sum of the losses of anchors z[first:first+count] that have a positive; scalar.

    z: [N, D] every row is a contrast row, codes: [N] class ids 0..C-1, counts: [C] class sizes.
    """
    n_rows = z.shape[0]
    anchors = slice(first, first + count)
    n_pos = counts[codes[anchors]] - 1  # [count]
    valid = n_pos > 0
    if block_size is None and count * n_rows <= DENSE_MAX_ELEMENTS:
        block, keep = count, variant == "out"  # dense: keep exp-similarities for backward
    else:
        block, keep = block_size or DEFAULT_BLOCK_SIZE, False
    with torch.autocast(z.device.type, enabled=False):  # float32 similarities under autocast
        lse, lse_pos = _AnchorLogSumExp.apply(
            z, codes, first, count, 1.0 / temperature, variant == "in", block, keep)
        if variant == "in":  # Eq. 3: -log(mean_p exp(s_ip - LSE_i)); lse_pos = -inf if no p
            per_anchor = lse + n_pos.clamp_min(1).to(z.dtype).log() - lse_pos
            # where, not indexing: anchors without positives hold inf and get zero gradient
            return torch.where(valid, per_anchor, 0.0).sum()
        pos_sum = _positive_similarity_sum(z, codes, anchors, counts, n_pos) / temperature
        return torch.where(valid, lse, 0.0).sum() - pos_sum


def _positive_similarity_sum(z, codes, anchors, counts, n_pos) -> torch.Tensor:
    """sum over anchors i with positives of mean_{p in P(i)} z_i . z_p, in O(N * D); scalar.

    sum_{p in P(i)} z_i . z_p = z_i . S_c - |z_i|^2 with S_c the sum of class c = y_i, so per
    class: (A_c . S_c - sum_{i in c} |z_i|^2) / (n_c - 1), A_c the sum of its anchors. Class-level
    sums avoid gathering S_c per anchor, whose backward (a scatter-add) is slow on CPU.
    """
    n_classes, dim = counts.shape[0], z.shape[1]
    z_anchor, anchor_codes = z[anchors], codes[anchors]
    class_sums = z.new_zeros(n_classes, dim).index_add(0, codes, z)  # S: [C, D]
    anchor_sums = z.new_zeros(n_classes, dim).index_add(0, anchor_codes, z_anchor)  # A: [C, D]
    class_weight = torch.where(counts > 1, 1.0 / (counts - 1).clamp_min(1).to(z.dtype), 0.0)
    cross = ((anchor_sums * class_sums).sum(1) * class_weight).sum()
    self_norms = z_anchor.square().sum(1) / n_pos.clamp_min(1).to(z.dtype)
    self_term = torch.where(n_pos > 0, self_norms, 0.0).sum()
    return cross - self_term


class _AnchorLogSumExp(torch.autograd.Function):
    """Row log-sum-exps of s = z[anchors] @ z.T / T, self excluded, in blocks of anchor rows.

    forward(z [N, D], codes [N], first, count, inv_t, with_pos, block, keep) ->
        lse [count]: log sum_{a != i} exp(s_ia)
        lse_pos [count] (or [0] without with_pos): log sum over same-code a != i; -inf if none.
    keep (one block only) stores the exponentiated block for backward instead of recomputing.
    """

    @staticmethod
    def forward(ctx, z, codes, first, count, inv_t, with_pos, block, keep):
        lse = z.new_empty(count)
        lse_pos = z.new_empty(count if with_pos else 0)
        kept = ()
        for start in range(0, count, block):
            rows = slice(first + start, first + min(start + block, count))
            sims = _similarities(z, rows, inv_t)
            if with_pos:
                same = codes[rows, None] == codes[None, :]
                lse_pos[start:start + block] = _masked_logsumexp(sims, same)
            shift = sims.amax(1, keepdim=True).clamp_min(torch.finfo(z.dtype).min)
            exp_sims = sims.sub_(shift).exp_()  # in place: the block's only [b, N] buffer
            totals = exp_sims.sum(1)
            lse[start:start + block] = shift.squeeze(1) + totals.log()
            if keep:
                kept = (exp_sims, totals)
        ctx.save_for_backward(z, codes, lse, lse_pos, *kept)
        ctx.first, ctx.count, ctx.block = first, count, block
        ctx.inv_t, ctx.with_pos = inv_t, with_pos
        return lse, lse_pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lse, grad_pos):
        # d lse_i / d s_ia = softmax_a, d s / d z gives both the anchor row and the contrast row.
        z, codes, lse, lse_pos, *kept = ctx.saved_tensors
        grad_z = torch.zeros_like(z)
        with torch.autocast(z.device.type, enabled=False):  # backward under autocast too
            for start in range(0, ctx.count, ctx.block):
                stop = min(start + ctx.block, ctx.count)
                rows = slice(ctx.first + start, ctx.first + stop)
                if kept:  # exp(s - shift) and its row sums; softmax = exp / total
                    weights, row_scale = kept[0], grad_lse / kept[1]
                else:
                    weights, row_scale = _softmax_weights(
                        z, codes, rows, ctx.inv_t, lse[start:stop], grad_lse[start:stop],
                        lse_pos[start:stop] if ctx.with_pos else None,
                        grad_pos[start:stop] if ctx.with_pos else None)
                _accumulate_grad(grad_z, z, rows, weights, row_scale)
        return grad_z * ctx.inv_t, None, None, None, None, None, None, None


def _similarities(z: torch.Tensor, rows: slice, inv_t: float) -> torch.Tensor:
    """[b, N] block s = z[rows] @ z.T / T with the self-similarities set to -inf."""
    sims = (z[rows] * inv_t) @ z.T  # scale the [b, D] side, not the [b, N] result
    sims.diagonal(offset=rows.start).fill_(float("-inf"))
    return sims


def _masked_logsumexp(sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[b, N] sims, [b, N] bool mask -> [b] log sum of exp over masked entries (-inf if none).

    Shifted by the masked row maximum, so it stays exact at any temperature.
    """
    masked = torch.where(mask, sims, float("-inf"))
    shift = masked.amax(1, keepdim=True).clamp_min(torch.finfo(sims.dtype).min)
    return shift.squeeze(1) + masked.sub_(shift).exp_().sum(1).log()


def _softmax_weights(z, codes, rows, inv_t, lse, grad_lse, lse_pos, grad_pos):
    """Recompute a block's d(loss)/d(s) (up to a row scale): ([b, N] weights, [b] scale or None).

    Without positives: weights = softmax = exp(s - lse), row scale = grad_lse.
    With positives (L_in): grad_lse * softmax + grad_pos * softmax over positives, scale None.
    """
    sims = _similarities(z, rows, inv_t)
    if lse_pos is None:
        return sims.sub_(lse[:, None]).exp_(), grad_lse
    same = codes[rows, None] == codes[None, :]
    # Anchors without positives have lse_pos = -inf (and grad_pos = 0): a finite stand-in keeps
    # their self entry at exp(-inf) = 0 instead of exp(-inf + inf) = nan.
    finite_pos = lse_pos.clamp_min(torch.finfo(sims.dtype).min)
    pos_scale = torch.where(same, (sims - finite_pos[:, None]).exp_(), 0.0).mul_(grad_pos[:, None])
    return sims.sub_(lse[:, None]).exp_().mul_(grad_lse[:, None]).add_(pos_scale), None


def _accumulate_grad(grad_z, z, rows, weights, row_scale) -> None:
    """grad_z += d/dz of sum_ia G_ia z_i.z_a for G = diag(row_scale) @ weights, [b, N] block.

    The row scale is applied to the [b, D] factors rather than to the [b, N] weights, which
    saves one pass over (and one copy of) the big block.
    """
    if row_scale is None:
        grad_z[rows] += weights @ z
        grad_z.addmm_(weights.T, z[rows])
    else:
        grad_z[rows] += (weights @ z).mul_(row_scale[:, None])
        grad_z.addmm_(weights.T, z[rows] * row_scale[:, None])
