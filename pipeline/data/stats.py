"""Per-channel mean and std of uint8 images, exact and in bounded memory."""

from collections.abc import Iterable

import numpy as np

_CHUNK_ELEMENTS = 1 << 24  # int64 temporaries of at most 128 MiB, whatever the image size


def channel_mean_std(images: np.ndarray) -> tuple[list[float], list[float]]:
    """uint8 [N, C, H, W] (ndarray or memmap) -> (mean [C], std [C]) on the [0, 1] scale.

    Sums of x and x^2 are accumulated as integers and combined with Python's unbounded ints, so
    the result is exact up to the final division (no float drift over ImageNet's 6e10 pixels).
    The std is the population std, as normalisation constants usually are.
    """
    n, channels, height, width = images.shape
    if n == 0:
        raise ValueError("cannot compute channel statistics of an empty split")
    step = max(1, _CHUNK_ELEMENTS // (channels * height * width))
    return batches_mean_std(images[start : start + step] for start in range(0, n, step))


def batches_mean_std(batches: Iterable[np.ndarray]) -> tuple[list[float], list[float]]:
    """The same statistics over uint8 batches [b, C, H, W] of one size (e.g. decoded from files)."""
    total = squares = None
    count = 0
    for batch in batches:
        x = np.asarray(batch, dtype=np.int64)
        sums, sums_sq = x.sum(axis=(0, 2, 3)), (x * x).sum(axis=(0, 2, 3))
        total, squares = (sums, sums_sq) if total is None else (total + sums, squares + sums_sq)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if total is None:
        raise ValueError("cannot compute channel statistics of an empty split")
    mean = [int(t) / count / 255 for t in total]
    var = [(count * int(q) - int(t) ** 2) / count**2 / 255**2 for t, q in zip(total, squares)]
    return mean, [v**0.5 for v in var]
