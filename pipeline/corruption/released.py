"""Readers for the released corrupted test sets: CIFAR-10-C, CIFAR-100-C and ImageNet-C.

(Hendrycks & Dietterich, 2019.) A reader serves (corruption, severity) cells as uint8 images
[B, 3, H, W] and int64 labels [B], always in the same order, and reads lazily: CIFAR-C arrays are
memory-mapped and ImageNet-C JPEGs decoded one batch at a time, so neither set has to fit in RAM.
Everything a reader will read is checked in its constructor, so a wrong path or a truncated
download fails with one line before any model runs.
"""

import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pipeline.data.imagefolder import list_classes
from pipeline.errors import UserError

SEVERITIES = (1, 2, 3, 4, 5)
CIFAR_C_IMAGES_PER_SEVERITY = 10_000  # the CIFAR test split, once per severity
_IMAGENET_C_LAYOUT = "<corruption>/<severity>/<wnid>/<image>.JPEG"


class ReleasedReader(Protocol):
    """What every reader here offers; `num_images` counts the images of one cell."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    num_images: int

    def cells(self) -> list[tuple[str, int]]: ...

    def content(self) -> dict:
        """A summary of the files read, independent of the folder they are in (a store records it)."""
        ...

    def batches(self, corruption: str, severity: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _check_request(corruptions: Iterable[str], severities: Iterable[int]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    corruptions, severities = tuple(corruptions), tuple(severities)
    if not corruptions:
        raise UserError("corruptions: empty; expected at least one corruption name")
    bad = [s for s in severities if not isinstance(s, int) or isinstance(s, bool) or s not in SEVERITIES]
    if not severities or bad:
        raise UserError(f"severities = {list(severities)}: expected a non-empty list of integers in 1..5")
    return corruptions, severities


class _Cells:
    """cells() and the argument checks of batches(), shared by both readers."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]

    def cells(self) -> list[tuple[str, int]]:
        """Every requested (corruption, severity), corruption-major, in the order requested."""
        return [(c, s) for c in self.corruptions for s in self.severities]

    def _check_batch_args(self, corruption: str, severity: int, batch_size: int) -> None:
        if corruption not in self.corruptions or severity not in self.severities:
            raise UserError(
                f"cell ({corruption!r}, {severity!r}) was not requested; corruptions: "
                f"{', '.join(self.corruptions)}; severities: {', '.join(map(str, self.severities))}"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UserError(f"batch_size = {batch_size!r}: expected a positive integer")


def _open_npy(path: Path, name: str) -> np.ndarray:
    """A memory map of a .npy file: only its header is read here."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected {name} as released: <corruption>.npy files and labels.npy")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{path}: not a readable .npy array as released in {name} ({_one_line(err)})") from err
    if not isinstance(array, np.ndarray):  # e.g. an .npz archive under a .npy name
        raise UserError(f"{path}: holds a {type(array).__name__}, expected one .npy array as released in {name}")
    return array


class CifarC(_Cells):
    """CIFAR-10-C or CIFAR-100-C as released: root/<corruption>.npy and root/labels.npy.

    Each <corruption>.npy is uint8 [5 * n, 32, 32, 3] (channels last) with severity s in rows
    (s - 1) * n : s * n, n = images_per_severity (10,000 as released; tests use fewer);
    labels.npy [5 * n] repeats the test labels once per severity. `model_classes`: the classes of
    the models it will score; labels outside them mean the release is of another dataset.
    """

    def __init__(
        self,
        root: str | Path,
        corruptions: Iterable[str],
        severities: Iterable[int],
        images_per_severity: int = CIFAR_C_IMAGES_PER_SEVERITY,
        name: str = "CIFAR-10-C",
        num_classes: int | None = None,
        model_classes: int | None = None,
    ) -> None:
        self.root, self.name = Path(root), name
        self.corruptions, self.severities = _check_request(corruptions, severities)
        self.num_images = images_per_severity
        if not self.root.is_dir():
            raise UserError(f"{self.root}: no such folder; expected {name} as released: <corruption>.npy and labels.npy")
        rows = len(SEVERITIES) * images_per_severity
        self._check_labels(_open_npy(self.root / "labels.npy", name), rows, num_classes, model_classes)
        for corruption in self.corruptions:
            path = self._path(corruption)
            if not path.is_file():
                raise UserError(f"{path}: no such file; corruptions in {self.root}: {', '.join(self._available())}")
            images, expected = _open_npy(path, name), (rows, 32, 32, 3)
            if images.shape != expected or images.dtype != np.uint8:
                raise UserError(f"{path}: {images.dtype} shape {images.shape}, expected uint8 {expected} as released in {name}")

    def _path(self, corruption: str) -> Path:
        return self.root / f"{corruption}.npy"

    def _available(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.npy") if p.stem != "labels") or ["none"]

    def _check_labels(self, labels: np.ndarray, rows: int, num_classes: int | None, model_classes: int | None) -> None:
        path = self.root / "labels.npy"
        if labels.shape != (rows,) or not np.issubdtype(labels.dtype, np.integer):
            raise UserError(
                f"{path}: {labels.dtype} shape {labels.shape}, expected integer labels of shape ({rows},) "
                f"as released in {self.name}"
            )
        low, high = int(labels.min()), int(labels.max())  # 5 * 10,000 small integers: cheap to scan
        if low < 0 or (num_classes is not None and high >= num_classes):
            allowed = f"[0, {num_classes})" if num_classes is not None else "non-negative"
            raise UserError(f"{path}: labels range over [{low}, {high}], expected {allowed} for {self.name}")
        if model_classes is not None and high >= model_classes:
            raise UserError(
                f"{path}: labels range over [{low}, {high}], but the models scored have {model_classes} classes; "
                f"{self.name} corrupts another dataset than data.dataset"
            )

    def content(self) -> dict:
        """Each file's name and size and labels.npy's sha256: enough to tell releases apart, cheap to
        recompute (hashing every 150 MB corruption file would take longer than scoring it)."""
        files = ["labels.npy", *(self._path(c).name for c in self.corruptions)]
        labels = hashlib.sha256((self.root / "labels.npy").read_bytes()).hexdigest()
        return {"bytes": {name: (self.root / name).stat().st_size for name in files}, "labels_sha256": labels}

    def batches(self, corruption: str, severity: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The cell's rows in file order: uint8 images [B, 3, 32, 32], int64 labels [B]."""
        self._check_batch_args(corruption, severity, batch_size)
        return self._read(corruption, severity, batch_size)

    def _read(self, corruption: str, severity: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Opened per call, not kept: a reader holding memmaps would copy them whole when pickled.
        images = np.load(self._path(corruption), mmap_mode="r")
        labels = np.load(self.root / "labels.npy", mmap_mode="r")
        start, stop = (severity - 1) * self.num_images, severity * self.num_images
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            x = np.ascontiguousarray(images[i:j].transpose(0, 3, 1, 2))  # NHWC -> NCHW; copies this batch only
            yield torch.from_numpy(x), torch.from_numpy(labels[i:j].astype(np.int64))


def _decode_rgb(path: Path) -> np.ndarray:
    """Image file -> uint8 [3, H, W] at its stored size (grayscale JPEGs become RGB)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: cannot decode image ({_one_line(err)})") from err
    return pixels.transpose(2, 0, 1)


def _decode_batch(paths: list[Path]) -> torch.Tensor:
    """uint8 [B, 3, H, W]; every image must have the size of the batch's first one."""
    images = [_decode_rgb(p) for p in paths]
    (_, height, width) = images[0].shape
    for path, image in zip(paths, images):
        if image.shape[1:] != (height, width):
            raise UserError(
                f"{path}: {image.shape[2]}x{image.shape[1]} pixels, but {paths[0].name} in the same batch is "
                f"{width}x{height}; ImageNet-C images all share one size (224x224 as released)"
            )
    return torch.from_numpy(np.stack(images))


class ImageNetC(_Cells):
    """ImageNet-C as released: root/<corruption>/<severity>/<wnid>/<image>.JPEG.

    Labels come from `class_to_index` (wnid -> label of the prepared ImageNet dataset), so they
    match the model's head. Images are decoded as RGB at their stored size; the evaluation
    transform crops them later. Within a cell, files are read in sorted order (wnid folders, then
    file names) with the extension filter of the ImageNet loader. The constructor lists every
    requested cell once (50,000 files each as released) so that a damaged tree fails up front.
    """

    def __init__(
        self,
        root: str | Path,
        corruptions: Iterable[str],
        severities: Iterable[int],
        class_to_index: Mapping[str, int],
    ) -> None:
        self.root = Path(root)
        self.corruptions, self.severities = _check_request(corruptions, severities)
        self.class_to_index = dict(class_to_index)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: no such folder; expected ImageNet-C as released: {_IMAGENET_C_LAYOUT}")
        listing = hashlib.sha256()
        for i, cell in enumerate(self.cells()):
            paths, labels = self._listing(*cell)
            if i == 0:
                self.num_images = len(paths)
            self._check_count(cell, len(paths))
            listing.update("".join(f"{p.relative_to(self.root).as_posix()}\0{label}\n" for p, label in zip(paths, labels)).encode())
        self._listing_sha256 = listing.hexdigest()

    def content(self) -> dict:
        """The images per cell and a sha256 of every requested file's path below root and label
        (the listing the constructor made; decoding 3.75M JPEGs to hash them would take hours)."""
        return {"images_per_cell": self.num_images, "listing_sha256": self._listing_sha256}

    def _folder(self, corruption: str, severity: int) -> Path:
        return self.root / corruption / str(severity)

    def _check_count(self, cell: tuple[str, int], count: int) -> None:
        if count != self.num_images:
            first = self._folder(*self.cells()[0])
            raise UserError(
                f"{self._folder(*cell)}: {count} images, but {first} has {self.num_images}; "
                "every ImageNet-C cell holds the same test images"
            )

    def _listing(self, corruption: str, severity: int) -> tuple[list[Path], list[int]]:
        """The cell's image paths in reading order and their labels."""
        folder = self._folder(corruption, severity)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder; expected {self.root}/{_IMAGENET_C_LAYOUT} as released in ImageNet-C")
        classes = list_classes(folder)
        if not classes:
            raise UserError(f"{folder}: no class folders; expected {folder}/<wnid>/<image>.JPEG")
        unknown = [wnid for wnid in classes if wnid not in self.class_to_index]
        if unknown:
            also = f" ({len(unknown)} unknown folders in all)" if len(unknown) > 1 else ""
            raise UserError(
                f"{folder / unknown[0]}: class {unknown[0]!r} is not among the {len(self.class_to_index)} classes "
                f"of the prepared dataset{also}"
            )
        empty = [wnid for wnid, images in classes.items() if not images]
        if empty:
            raise UserError(f"{folder / empty[0]}: no images; expected <image>.JPEG files in every class folder")
        paths = [p for images in classes.values() for p in images]
        labels = [self.class_to_index[wnid] for wnid, images in classes.items() for _ in images]
        return paths, labels

    def batches(self, corruption: str, severity: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The cell's images in sorted order: uint8 [B, 3, H, W] (224x224 as released), int64 labels [B]."""
        self._check_batch_args(corruption, severity, batch_size)
        paths, labels = self._listing(corruption, severity)
        self._check_count((corruption, severity), len(paths))  # the tree changed since the constructor
        return self._read(paths, labels, batch_size)

    @staticmethod
    def _read(paths: list[Path], labels: list[int], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(paths), batch_size):
            yield _decode_batch(paths[i : i + batch_size]), torch.tensor(labels[i : i + batch_size], dtype=torch.int64)


_READERS = {
    "cifar10-c": functools.partial(CifarC, name="CIFAR-10-C", num_classes=10),
    "cifar100-c": functools.partial(CifarC, name="CIFAR-100-C", num_classes=100),
    "imagenet-c": ImageNetC,
}
RELEASED_KINDS = tuple(_READERS)


def released_reader(
    kind: str, root: str | Path, corruptions: Iterable[str], severities: Iterable[int], **kw
) -> ReleasedReader:
    """The reader for one released set; `kw` goes to it (class_to_index for imagenet-c,
    images_per_severity and model_classes for the CIFAR-C sets)."""
    if kind not in _READERS:
        raise UserError(f"corrupted test set {kind!r} is unknown; expected one of: {', '.join(RELEASED_KINDS)}")
    return _READERS[kind](root, corruptions, severities, **kw)
