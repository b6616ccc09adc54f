"""The prepared store: the one on-disk form of a dataset that training and evaluation read.

Layout of `out_dir` (written atomically, see atomic.py):
    {train,val,test}_images.npy  uint8 [N, C, H, W]
    {train,val,test}_labels.npy  int64 [N]
    subsets.npz                  one sorted int64 index array into train per fraction, key repr(fraction)
    manifest.json                provenance, shapes, class names and counts, normalisation stats
val is carved from the published train split (stratified, seeded); test is the published test split.
"""

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_directory
from pipeline.data.raw import RawDataset
from pipeline.data.registry import DATASETS
from pipeline.data.splits import nested_subsets, stratified_split
from pipeline.data.stats import channel_mean_std
from pipeline.errors import ConfigError, UserError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_GATHER_ROWS = 4096  # images copied per step when writing a split, to bound RAM for memmapped sources


@dataclass(frozen=True)
class Split:
    """images: uint8 [N, C, H, W]; labels: int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _check_arguments(dataset: str, image_size: int | None, val_fraction: float, fractions: Sequence[float]) -> None:
    if dataset not in DATASETS:
        raise ConfigError("data.dataset", dataset, f"one of {', '.join(DATASETS.names())}")
    if image_size is not None and image_size < 1:
        raise ConfigError("data.image_size", image_size, "a positive integer or null")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError("data.val_fraction", val_fraction, "a number in [0, 1)")
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ConfigError("data.fractions", list(fractions), "a non-empty list of numbers in (0, 1]")


def _write_split(out_dir: Path, name: str, images: np.ndarray, labels: np.ndarray, indices: np.ndarray | None) -> None:
    """Save images[indices] and labels[indices] (all rows when indices is None) as .npy files."""
    rows = np.arange(len(labels)) if indices is None else indices
    shape = (len(rows), *images.shape[1:])
    out = np.lib.format.open_memmap(out_dir / f"{name}_images.npy", mode="w+", dtype=np.uint8, shape=shape)
    for start in range(0, len(rows), _GATHER_ROWS):
        out[start : start + _GATHER_ROWS] = images[rows[start : start + _GATHER_ROWS]]
    out.flush()
    del out
    np.save(out_dir / f"{name}_labels.npy", labels[rows].astype(np.int64))


def _class_counts(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names))
    return {name: int(n) for name, n in zip(class_names, counts)}


def _manifest(
    dataset: str,
    raw: RawDataset,
    labels: dict[str, np.ndarray],
    subsets: dict[float, np.ndarray],
    mean_std: tuple[list[float], list[float]],
    settings: dict,
) -> dict:
    """Everything a reader needs to trust and use the store without opening the arrays."""
    return {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "sources": [vars(source) for source in raw.sources],
        "image_shape": list(raw.train_images.shape[1:]),
        "class_names": list(raw.class_names),
        "split_sizes": {name: len(y) for name, y in labels.items()},
        "counts": {name: _class_counts(y, raw.class_names) for name, y in labels.items()},
        "mean": mean_std[0],
        "std": mean_std[1],
        "subset_sizes": {repr(f): len(idx) for f, idx in subsets.items()},
        **settings,
    }


def prepare_dataset(
    dataset: str,
    *,
    root: str | None,
    download: bool,
    image_size: int | None,
    val_fraction: float,
    fractions: Sequence[float],
    seed: int,
    out_dir: Path,
) -> dict:
    """Read `dataset` with its registered loader and write the prepared store to out_dir.

    Returns the manifest. out_dir is replaced only once the new store is complete.
    """
    _check_arguments(dataset, image_size, val_fraction, fractions)
    fractions = sorted({float(f) for f in fractions})
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as temp:
        workdir = temp / "work"
        workdir.mkdir()
        raw = DATASETS.get(dataset)(root=root, download=download, image_size=image_size, workdir=workdir)
        train_idx, val_idx = stratified_split(raw.train_labels, val_fraction, seed)
        _write_split(temp, "train", raw.train_images, raw.train_labels, train_idx)
        _write_split(temp, "val", raw.train_images, raw.train_labels, val_idx)
        _write_split(temp, "test", raw.test_images, raw.test_labels, None)
        labels = {name: np.load(temp / f"{name}_labels.npy") for name in SPLITS}
        subsets = nested_subsets(labels["train"], fractions, seed)
        np.savez(temp / "subsets.npz", **{repr(f): idx for f, idx in subsets.items()})
        mean_std = channel_mean_std(np.load(temp / "train_images.npy", mmap_mode="r"))
        settings = dict(root=root, image_size=image_size, val_fraction=val_fraction, seed=seed, fractions=fractions)
        manifest = _manifest(dataset, raw, labels, subsets, mean_std, settings)
        del raw  # drop memmaps into workdir before deleting it
        shutil.rmtree(workdir)
        (temp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class PreparedDataset:
    """A loaded store: the three splits, the label-fraction subsets of train, and the manifest."""

    path: Path
    train: Split
    val: Split
    test: Split
    manifest: dict
    subsets: dict[float, np.ndarray]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    @property
    def channels(self) -> int:
        return self.manifest["image_shape"][0]

    @property
    def image_size(self) -> int:
        return self.manifest["image_shape"][1]

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.manifest["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.manifest["std"])

    def subset(self, fraction: float) -> Split:
        """The stratified `fraction` of train (1.0 is all of it); images are copied into RAM."""
        if math.isclose(fraction, 1.0):
            return self.train
        for prepared, indices in self.subsets.items():
            if math.isclose(prepared, fraction):
                rows = torch.from_numpy(indices)
                return Split(self.train.images[rows], self.train.labels[rows])
        listed = ", ".join(repr(f) for f in sorted(self.subsets))
        raise UserError(
            f"{self.path}: label fraction {fraction} was not prepared (prepared: {listed}); "
            "add it to data.fractions and rerun the prepare stage"
        )


def _incomplete(out_dir: Path, what: str) -> UserError:
    return UserError(f"{out_dir}: prepared dataset store is missing or incomplete ({what}); run the prepare stage")


def _read_manifest(out_dir: Path) -> dict:
    path = out_dir / "manifest.json"
    if not path.is_file():
        raise _incomplete(out_dir, "no manifest.json")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise _incomplete(out_dir, f"manifest.json is not valid JSON: {err}") from err
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _incomplete(out_dir, f"format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    return manifest


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """Copy-on-write memmap when asked: writable, so torch.from_numpy neither warns nor can
    crash on an in-place write, and pages are read from disk only when touched."""
    if not path.is_file():
        raise _incomplete(path.parent, f"no {path.name}")
    return np.load(path, mmap_mode="c" if mmap else None)


def _load_split(out_dir: Path, name: str, manifest: dict, mmap: bool) -> Split:
    images = _load_array(out_dir / f"{name}_images.npy", mmap)
    labels = _load_array(out_dir / f"{name}_labels.npy", mmap=False)
    n = manifest["split_sizes"][name]
    expected = (n, *manifest["image_shape"])
    if images.shape != expected or images.dtype != np.uint8 or labels.shape != (n,) or labels.dtype != np.int64:
        found = f"images {images.dtype} {images.shape}, labels {labels.dtype} {labels.shape}"
        raise _incomplete(out_dir, f"{name} split has {found}, manifest says {n} images of {expected[1:]}")
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def _load_subsets(out_dir: Path, train_size: int) -> dict[float, np.ndarray]:
    path = out_dir / "subsets.npz"
    if not path.is_file():
        raise _incomplete(out_dir, "no subsets.npz")
    with np.load(path) as archive:
        subsets = {float(key): archive[key] for key in archive.files}
    if any(len(idx) and idx.max() >= train_size for idx in subsets.values()):
        raise _incomplete(out_dir, "subsets.npz indexes beyond the train split")
    return subsets


def load_prepared(out_dir: Path, *, mmap: bool = True) -> PreparedDataset:
    """Open a store written by prepare_dataset; with mmap, image arrays stay on disk until read."""
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir)
    splits = {name: _load_split(out_dir, name, manifest, mmap) for name in SPLITS}
    subsets = _load_subsets(out_dir, len(splits["train"]))
    return PreparedDataset(out_dir, splits["train"], splits["val"], splits["test"], manifest, subsets)
