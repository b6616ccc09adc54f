"""Per-sample random parameters, and ops applied to groups of samples that drew the same choice.

Draws come from torch's global CPU generator, so `torch.manual_seed` fixes them and CPU and CUDA
runs draw the same ones.
"""

from collections.abc import Callable

import torch
from torch import Tensor


def uniform(n: int, low: float, high: float) -> Tensor:
    """[n] floats uniform in [low, high), from the global CPU generator (reproducible on any device)."""
    return torch.rand(n) * (high - low) + low


def coin(n: int, p: float) -> Tensor:
    """[n] bools, each True with probability p."""
    return torch.rand(n) < p


def apply_by_code(
    images: Tensor, codes: Tensor, fn: Callable[[int, Tensor, Tensor], Tensor], *, inplace: bool = False
) -> Tensor:
    """Run `fn(code, images[rows], rows)` on each group of samples sharing a code; -1 means untouched.

    images: [N, ...]; codes: [N] int64 on CPU; `rows` passed to fn are CPU indices, for picking the
    group's per-sample parameters. Grouping keeps per-sample choices while each op runs once per
    group on a batch, which torchvision's functional ops (scalar parameters) need. `inplace` skips
    the copy of `images` for callers that own it (each copy costs as much as a cheap op).
    """
    out = images if inplace else images.clone()
    for code in codes.unique().tolist():
        if code < 0:
            continue
        rows_cpu = (codes == code).nonzero().squeeze(1)
        rows = rows_cpu.to(images.device)
        out[rows] = fn(code, images[rows], rows_cpu)
    return out

