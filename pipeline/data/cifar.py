"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from the "python version" pickles.

Same folder names as torchvision uses, but the pickles are read here: torchvision's classes check
md5 sums of the official archives, which also rules out any re-packed or test copy.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.raw import RawDataset, file_sources
from pipeline.data.registry import DATASETS
from pipeline.data.resize import resize_batch
from pipeline.errors import UserError


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches and which dict keys hold labels and names."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    labels_key: bytes
    names_key: bytes
    torchvision_class: str


CIFAR10 = CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    labels_key=b"labels",
    names_key=b"label_names",
    torchvision_class="CIFAR10",
)
CIFAR100 = CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    labels_key=b"fine_labels",  # the 100 classes; b"coarse_labels" holds the 20 superclasses
    names_key=b"fine_label_names",
    torchvision_class="CIFAR100",
)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: not a readable CIFAR pickle ({err!r})") from err
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return content


def _read_batch(path: Path, labels_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle -> uint8 images [N, 3, 32, 32], int64 labels [N]."""
    batch = _unpickle(path)
    if b"data" not in batch or labels_key not in batch:
        raise UserError(f"{path}: missing key b'data' or {labels_key!r}; found {sorted(batch)}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[labels_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: expected uint8 data [N, 3072], got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or (labels.size and not 0 <= labels.min() <= labels.max() < num_classes):
        raise UserError(f"{path}: expected {len(data)} labels in [0, {num_classes}), got shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _read_split(folder: Path, names: tuple[str, ...], layout: CifarLayout, num_classes: int):
    parts = [_read_batch(folder / name, layout.labels_key, num_classes) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _all_files(folder: Path, layout: CifarLayout) -> list[Path]:
    return [folder / n for n in (*layout.train_files, *layout.test_files, layout.meta_file)]


def _download(root: Path, layout: CifarLayout) -> None:
    import torchvision  # deferred: only the download path needs it

    try:
        getattr(torchvision.datasets, layout.torchvision_class)(str(root), train=True, download=True)
    except Exception as err:  # network and HTTP errors come in many types; all mean the same here
        raise UserError(f"data.download: downloading {layout.name} into {root} failed: {err}") from err


def _locate(root: str | None, download: bool, layout: CifarLayout) -> list[Path]:
    """The batch and meta files under root/<folder>, downloading them first if asked and missing."""
    if root is None:
        raise UserError(f"data.root must be set for {layout.name}: a folder containing {layout.folder}/")
    files = _all_files(Path(root) / layout.folder, layout)
    if download and not all(p.is_file() for p in files):
        _download(Path(root), layout)
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        what = "does not exist" if not Path(root).is_dir() else f"lacks {', '.join(missing)}"
        raise UserError(f"data.root: {root} {what}; set data.download: true to fetch {layout.name} there, or point data.root at a folder holding {layout.folder}/")
    return files


def load_cifar(layout: CifarLayout, root: str | None, download: bool, image_size: int | None) -> RawDataset:
    files = _locate(root, download, layout)
    folder = files[0].parent
    meta = _unpickle(folder / layout.meta_file)
    if layout.names_key not in meta:
        raise UserError(f"{folder / layout.meta_file}: missing key {layout.names_key!r}")
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout.names_key])
    train_x, train_y = _read_split(folder, layout.train_files, layout, len(class_names))
    test_x, test_y = _read_split(folder, layout.test_files, layout, len(class_names))
    if image_size is not None:
        train_x, test_x = resize_batch(train_x, image_size), resize_batch(test_x, image_size)
    return RawDataset(train_x, train_y, test_x, test_y, class_names, file_sources(files))


@DATASETS.register("cifar10")
def load_cifar10(*, root: str | None, download: bool, image_size: int | None, workdir: Path) -> RawDataset:
    """CIFAR-10 from root/cifar-10-batches-py; `workdir` is unused (fits in RAM)."""
    return load_cifar(CIFAR10, root, download, image_size)


@DATASETS.register("cifar100")
def load_cifar100(*, root: str | None, download: bool, image_size: int | None, workdir: Path) -> RawDataset:
    """CIFAR-100 (fine labels) from root/cifar-100-python; `workdir` is unused (fits in RAM)."""
    return load_cifar(CIFAR100, root, download, image_size)
