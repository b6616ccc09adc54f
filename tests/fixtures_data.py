"""Writers for tiny datasets in their real on-disk formats, created in tmp_path at test time.

Pixel values are random but seeded, labels are balanced, so tests can compare what a loader
returns with what was written.
"""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def balanced(num_classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled labels [num_classes * per_class] and a seeded generator for pixels."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(num_classes), per_class)), rng


def idx_bytes(array: np.ndarray) -> bytes:
    """uint8 array -> IDX bytes: 0, 0, type 0x08, ndim, big-endian dims, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_fashion_mnist(folder: Path, train_per_class: int = 6, test_per_class: int = 2, gz: bool = True) -> dict:
    """The four Fashion-MNIST IDX files in folder; returns the arrays written ([N, 28, 28], [N])."""
    folder.mkdir(parents=True, exist_ok=True)
    train_y, rng = balanced(10, train_per_class, seed=1)
    test_y, _ = balanced(10, test_per_class, seed=2)
    arrays = {
        "train_images": rng.integers(0, 256, (len(train_y), 28, 28), dtype=np.uint8),
        "train_labels": train_y.astype(np.uint8),
        "test_images": rng.integers(0, 256, (len(test_y), 28, 28), dtype=np.uint8),
        "test_labels": test_y.astype(np.uint8),
    }
    for key, name in FASHION_FILES.items():
        write_idx(folder / (f"{name}.gz" if gz else name), arrays[key], gz)
    return arrays


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def write_cifar10(root: Path, per_class_per_batch: int = 1, test_per_class: int = 2) -> dict:
    """root/cifar-10-batches-py with 5 train batches, test_batch and batches.meta (bytes keys)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train_data": [], "train_labels": []}
    for i in range(1, 6):
        labels, rng = balanced(10, per_class_per_batch, seed=10 + i)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        _pickle(folder / f"data_batch_{i}", {b"batch_label": b"fixture", b"labels": labels.tolist(), b"data": data})
        written["train_data"].append(data)
        written["train_labels"].append(labels)
    labels, rng = balanced(10, test_per_class, seed=20)
    written["test_data"] = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    written["test_labels"] = labels
    _pickle(folder / "test_batch", {b"labels": labels.tolist(), b"data": written["test_data"]})
    names = [f"class{i}".encode() for i in range(10)]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return {k: np.concatenate(v) if isinstance(v, list) else v for k, v in written.items()}


def write_cifar100(root: Path, train_per_class: int = 3, test_per_class: int = 1) -> dict:
    """root/cifar-100-python with train, test and meta pickles (fine and coarse labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for split, per_class, seed in (("train", train_per_class, 30), ("test", test_per_class, 31)):
        labels, rng = balanced(100, per_class, seed)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        batch = {b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(), b"data": data}
        _pickle(folder / split, batch)
        written[f"{split}_data"], written[f"{split}_labels"] = data, labels
    names = {b"fine_label_names": [f"fine{i}" for i in range(100)], b"coarse_label_names": [f"c{i}" for i in range(20)]}
    _pickle(folder / "meta", names)
    return written


def write_image_tree(root: Path, splits: dict[str, dict[str, int]], sizes=((40, 30), (24, 52)), mode="RGB", fmt="PNG") -> None:
    """root/<split>/<class>/img<i>.png (or .jpg with fmt "JPEG"), alternating between the (width,
    height) `sizes`. JPEGs get smooth content (noise would not survive the compression)."""
    rng = np.random.default_rng(5)
    for split, classes in splits.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                width, height = sizes[i % len(sizes)]
                shape = (height, width) if mode == "L" else (height, width, 3)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8) if fmt == "PNG" else _smooth(rng, shape)
                Image.fromarray(pixels, mode).save(folder / f"img{i}.{'png' if fmt == 'PNG' else 'jpg'}", fmt)


def _smooth(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 gradients with a random direction and offset per channel."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    channels = [((np.cos(a) * x + np.sin(a) * y) * 3 + o) % 256 for a, o in rng.uniform(0, 6.3, (shape[2] if len(shape) == 3 else 1, 2))]
    return np.stack(channels, -1).squeeze().astype(np.uint8)


class Poisoned:
    """Stands in for the test split's tensors: touching it is a test failure."""

    def __getattr__(self, name):
        raise AssertionError("the test split was read during training or model selection")

    def __getitem__(self, index):
        raise AssertionError("the test split was read during training or model selection")

    def __len__(self):
        raise AssertionError("the test split was read during training or model selection")


def write_cifar100_classes(root: Path, classes: int, train_per_class: int, test_per_class: int) -> dict:
    """root/cifar-100-python as released (train, test, meta with all 100 fine names) whose images
    fill only the first `classes` classes: a CIFAR-100 model still has 100 outputs, at a tenth
    of the images (a miniature run keeps 50 per class so that 1% keeps every class)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for split, per_class, seed in (("train", train_per_class, 30), ("test", test_per_class, 31)):
        labels, rng = balanced(classes, per_class, seed)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        _pickle(folder / split, {b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(), b"data": data})
        written[f"{split}_data"], written[f"{split}_labels"] = data, labels
    _pickle(folder / "meta", {b"fine_label_names": [f"fine{i}" for i in range(100)], b"coarse_label_names": [f"c{i}" for i in range(20)]})
    return written


def write_imagenet_tree(root: Path, wnids: list[str], train_per_class: int, val_per_class: int, size=(40, 30)) -> None:
    """root/train/<wnid>/<wnid>_<i>.JPEG and root/val/<wnid>/ILSVRC2012_val_<i>.JPEG: ILSVRC-2012's
    layout once val/ is sorted into wnid folders, with smooth JPEG content."""
    rng = np.random.default_rng(7)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{c * per_class + i:08d}.JPEG"
                Image.fromarray(_smooth(rng, (size[1], size[0], 3))).save(folder / name, "JPEG")


def write_released_imagenet_c(root: Path, wnids: list[str], corruptions, per_class: int, size: int = 24) -> None:
    """ImageNet-C as released: root/<corruption>/<severity>/<wnid>/<image>.JPEG, square images."""
    rng = np.random.default_rng(8)
    for corruption in corruptions:
        for severity in range(1, 6):
            for wnid in wnids:
                folder = root / corruption / str(severity) / wnid
                folder.mkdir(parents=True)
                for i in range(per_class):
                    Image.fromarray(_smooth(rng, (size, size, 3))).save(folder / f"ILSVRC2012_val_{i:08d}.JPEG", "JPEG")


def write_released_cifar_c(root: Path, corruptions, test_labels: np.ndarray) -> None:
    """CIFAR-10-C / CIFAR-100-C as released: root/<corruption>.npy, uint8 [5 * N, 32, 32, 3]
    (severity s in rows (s - 1) * N : s * N), and root/labels.npy, the test labels 5 times."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(9)
    count = len(test_labels)
    for corruption in corruptions:
        np.save(root / f"{corruption}.npy", rng.integers(0, 256, (5 * count, 32, 32, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(np.asarray(test_labels, dtype=np.int64), 5))
