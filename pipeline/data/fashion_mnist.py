"""Fashion-MNIST (Xiao et al., 2017) from its four IDX files.

Default location is where Debian's `dataset-fashion-mnist` package installs them; a `root` is
searched directly and in `FashionMNIST/raw/`, where torchvision's downloader writes.
"""

from pathlib import Path

import numpy as np

from pipeline.data.idx import read_idx
from pipeline.data.raw import RawDataset, file_sources
from pipeline.data.registry import DATASETS
from pipeline.data.resize import resize_batch
from pipeline.errors import UserError

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_files(root: Path) -> dict[str, Path] | None:
    """The four IDX files (plain or .gz) in root or root/FashionMNIST/raw, or None if incomplete."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        found = {key: _first_existing(folder, name) for key, name in FILES.items()}
        if all(found.values()):
            return found
    return None


def _first_existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_message(root: Path) -> str:
    names = ", ".join(FILES.values())
    where = "does not exist" if not root.exists() else f"lacks some of the files {names} (plain or .gz)"
    return f"data.root: {root} {where}; install the Debian package dataset-fashion-mnist or set data.download: true"


def _download(root: Path) -> None:
    import torchvision  # deferred: only the download path needs it

    try:
        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    except Exception as err:  # network and HTTP errors come in many types; all mean the same here
        raise UserError(f"data.download: downloading Fashion-MNIST into {root} failed: {err}") from err


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """IDX pair -> uint8 images [N, 1, 28, 28], int64 labels [N], checked for consistency."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UserError(f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise UserError(f"{labels_path}: expected {len(images)} labels, got shape {labels.shape}")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise UserError(f"{labels_path}: label {labels.max()} is out of range for {len(CLASS_NAMES)} classes")
    return images[:, None], labels.astype(np.int64)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(*, root: str | None, download: bool, image_size: int | None, workdir: Path) -> RawDataset:
    """Read the IDX files; `image_size` other than 28 resizes. `workdir` is unused (fits in RAM)."""
    folder = Path(root) if root else DEBIAN_ROOT
    files = find_files(folder)
    if files is None and download:
        if root is None:
            raise UserError("data.download: true needs data.root set to a writable folder to download into")
        _download(folder)
        files = find_files(folder)
    if files is None:
        raise UserError(_missing_message(folder))
    train_x, train_y = _read_pair(files["train_images"], files["train_labels"])
    test_x, test_y = _read_pair(files["test_images"], files["test_labels"])
    if image_size is not None:
        train_x, test_x = resize_batch(train_x, image_size), resize_batch(test_x, image_size)
    return RawDataset(train_x, train_y, test_x, test_y, CLASS_NAMES, file_sources(list(files.values())))
