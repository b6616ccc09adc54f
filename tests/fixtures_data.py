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
