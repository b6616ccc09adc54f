"""A split's images as files decoded on demand, and batches of them loaded in DataLoader workers.

ImageFiles stands in for a uint8 [N, C, S, S] tensor where decoding a split once would not fit
(ImageNet's train split is 193 GB as 224 px arrays) or would keep only the centre square that a
random resized crop should range beyond. Its eval view is the standard ImageNet protocol: shorter
side to round(S * 256 / 224), centre crop S.
"""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.batches import sequential_batches
from pipeline.data.jpeg_decode import decode_file, eval_view
from pipeline.errors import UserError

EVAL_RESIZE_RATIO = 256 / 224  # eval: shorter side to round(S * 256/224), then centre crop S


@dataclass(frozen=True)
class ImageFiles:
    """A split's images, read from their files on demand (a lazy stand-in for a uint8 [N, C, S, S] tensor)."""

    root: Path
    """Folder the paths are relative to (data.root)."""
    paths: tuple[str, ...]
    """Posix paths relative to root, e.g. "train/n01440764/x.JPEG"."""
    image_size: int
    """S: the side of every view taken of an image."""
    channels: int
    """1 (decoded as grayscale) or 3 (RGB; grayscale and CMYK JPEGs converted)."""
    workers: int = 0
    """The configured decoding worker processes for this split's loaders (0: let the caller choose).
    Carried for the training loop's loader; eval_batches takes its own `workers` argument."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, S, S) of the eval view, as the tensor this stands in for would have."""
        return len(self), self.channels, self.image_size, self.image_size

    @property
    def resize(self) -> int:
        """Shorter side before the eval view's centre crop: round(S * 256 / 224)."""
        return round(self.image_size * EVAL_RESIZE_RATIO)

    def file(self, row: int) -> Path:
        return self.root / self.paths[row]

    def take(self, rows: torch.Tensor | np.ndarray) -> "ImageFiles":
        """The subset at int64 indices `rows`, in that order."""
        return replace(self, paths=tuple(self.paths[i] for i in torch.as_tensor(rows).tolist()))

    def __getitem__(self, rows: slice) -> torch.Tensor:
        """Eval views of a few rows, decoded in this process: uint8 [n, C, S, S]."""
        if not isinstance(rows, slice):
            raise TypeError(f"ImageFiles takes slices (use take() for indices), got {type(rows).__name__}")
        return eval_batch(self, range(len(self))[rows])

    def eval_batches(self, batch_size: int, *, workers: int = 0, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """All rows in order as eval views uint8 [b, C, S, S], decoded in `workers` processes (0: here)."""
        slices = list(sequential_batches(len(self), batch_size))
        load = _EvalLoad(self, slices)
        yield from worker_batches(load, len(slices), workers=workers, prefetch=2, pin_memory=pin_memory)


def eval_batch(files: ImageFiles, rows) -> torch.Tensor:
    """Eval views of `rows` (any iterable of ints): uint8 [len(rows), C, S, S]."""
    views = [eval_view(decode_file(files.file(row), files.channels), files.image_size, files.resize) for row in rows]
    return torch.stack(views) if views else torch.empty((0, *files.shape[1:]), dtype=torch.uint8)


class _EvalLoad:
    """Step i -> eval views of the i-th slice; a module-level class so worker processes can unpickle it."""

    def __init__(self, files: ImageFiles, slices: list[slice]) -> None:
        self.files, self.slices = files, slices

    def __call__(self, step: int) -> torch.Tensor:
        return eval_batch(self.files, range(len(self.files))[self.slices[step]])


@dataclass(frozen=True)
class _Failure:
    """A UserError raised in a worker, carried back as a value so the main process re-raises its one line."""

    message: str


class _Steps(Dataset):
    """Map-style dataset whose item i is the whole batch of step i."""

    def __init__(self, load: Callable[[int], Any]) -> None:
        self.load = load

    def __getitem__(self, step: int) -> Any:
        try:
            return self.load(step)
        except UserError as err:
            # DataLoader would wrap it in a multi-line "Caught UserError in DataLoader worker" text.
            return _Failure(str(err))


def worker_batches(
    load: Callable[[int], Any], steps: int, *, workers: int, prefetch: int, pin_memory: bool
) -> Iterator[Any]:
    """load(0), ..., load(steps - 1) in order, computed in `workers` DataLoader processes (0: here).

    `load` must be picklable where workers are not forked (it is, as a module-level class). Each
    worker prefetches `prefetch` steps; a UserError in a worker is raised here as the same one line.
    """
    loader = DataLoader(
        _Steps(load),
        batch_size=None,
        sampler=range(steps),
        num_workers=workers,
        prefetch_factor=prefetch if workers > 0 else None,
        pin_memory=pin_memory,
        persistent_workers=False,
        # The loader's base seed is drawn from this generator, not from the global RNG, which the
        # training loop's augmentation draws from: an epoch leaves the global RNG as it found it.
        generator=torch.Generator().manual_seed(0),
    )
    for item in loader:
        if isinstance(item, _Failure):
            raise UserError(item.message)
        yield item


def rows_of(images, index: torch.Tensor):
    """Rows `index` of a split's images: of a uint8 tensor, or of ImageFiles, which stay lazy (a
    subset of the file list)."""
    # not hasattr(images, "take"): a tensor has a `take` too, which indexes the flattened tensor
    return images[index] if isinstance(images, torch.Tensor) else images.take(index)


def loader_workers(setting: int = 0) -> int:
    """Decoding worker processes for image files: `setting`, or one per core (at most 8) for 0;
    none on a single core, where a worker only adds a process switch."""
    if setting:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 1 else min(cores, 8)
