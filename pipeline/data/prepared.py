"""The prepared store: the one on-disk form of a dataset that training and evaluation read.

Layout of `out_dir` (written atomically, see atomic.py):
    {train,val,test}_images.npy  uint8 [N, C, H, W]
    {train,val,test}_labels.npy  int64 [N]
    subsets.npz                  one sorted int64 index array into train per fraction, key repr(fraction)
    manifest.json                provenance, shapes, class names and counts, normalisation stats
val is carved from the published train split (stratified, seeded; empty for val_fraction 0);
test is the published test split. Large image trees keep a file index instead of the images
(data.storage files, see file_store.py).
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
from pipeline.data import file_store
from pipeline.data.image_files import ImageFiles, rows_of
from pipeline.data.imagefolder import TREE_LAYOUTS, FileTree, count_train_images, index_image_tree
from pipeline.data.raw import RawDataset
from pipeline.data.registry import DATASETS
from pipeline.data.splits import nested_subsets, stratified_split
from pipeline.data.stats import channel_mean_std
from pipeline.data.store_io import PREPARE, broken, load_npy, load_npz, read_json_object, short_repr
from pipeline.errors import ConfigError, UserError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_GATHER_ROWS = 4096  # images copied per step when writing a split, to bound RAM for memmapped sources


@dataclass(frozen=True)
class Split:
    """images: uint8 [N, C, H, W], or ImageFiles read on demand (file stores); labels: int64 [N]."""

    images: torch.Tensor | ImageFiles
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _check_arguments(dataset: str, image_size: int | None, val_fraction: float, fractions: Sequence[float], storage: str) -> None:
    if dataset not in DATASETS:
        raise ConfigError("data.dataset", dataset, f"one of {', '.join(DATASETS.names())}")
    if image_size is not None and image_size < 1:
        raise ConfigError("data.image_size", image_size, "a positive integer or null")
    # The same rules as pipeline/config.py's for these keys (0: no val, the paper's protocol).
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError("data.val_fraction", val_fraction, "a fraction in [0, 1)")
    if storage not in ("auto", "pixels", "files"):
        raise ConfigError("data.storage", storage, "one of 'auto', 'pixels', 'files'")
    if storage == "files" and dataset not in TREE_LAYOUTS:
        raise ConfigError("data.storage", storage, f"'auto' or 'pixels' for {dataset} (only {', '.join(TREE_LAYOUTS)} can be read from files)")
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ConfigError("data.train_fraction / reduced.fractions", list(fractions), "fractions in (0, 1]")


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
    raw: RawDataset | FileTree,
    image_shape: list[int],
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
        "image_shape": image_shape,
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
    storage: str = "pixels",
    files_above: int = 200_000,
) -> dict:
    """Read `dataset` with its registered loader and write the prepared store to out_dir.

    storage (data.storage): `pixels` decodes every image into uint8 arrays; `files` keeps an
    image tree's file index (file_store.py); `auto` is files for trees above `files_above` train
    images. Returns the manifest. out_dir is replaced only once the new store is complete.
    """
    _check_arguments(dataset, image_size, val_fraction, fractions, storage)
    fractions = sorted({float(f) for f in fractions})
    # no root or download: where the data came from must not change the store's DVC hash
    settings = dict(image_size=image_size, val_fraction=val_fraction, seed=seed, fractions=fractions)
    with atomic_directory(Path(out_dir)) as temp:
        if _reads_files(dataset, root, download, storage, files_above):
            manifest = _write_file_store(temp, dataset, root, download, image_size, seed, settings)
        else:
            manifest = _write_pixel_store(temp, dataset, root, download, image_size, seed, settings)
        (temp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _reads_files(dataset: str, root: str | None, download: bool, storage: str, files_above: int) -> bool:
    if dataset not in TREE_LAYOUTS or storage == "pixels":
        return False
    if storage == "files":
        return True
    tree_root, _ = TREE_LAYOUTS[dataset](root, download)
    return count_train_images(tree_root) > files_above


def _subsets(temp: Path, labels: dict[str, np.ndarray], fractions: list[float], seed: int) -> dict[float, np.ndarray]:
    subsets = nested_subsets(labels["train"], fractions, seed)
    np.savez(temp / "subsets.npz", **{repr(f): idx for f, idx in subsets.items()})
    return subsets


def _write_pixel_store(temp: Path, dataset: str, root, download: bool, image_size, seed: int, settings: dict) -> dict:
    workdir = temp / "work"
    workdir.mkdir()
    raw = DATASETS.get(dataset)(root=root, download=download, image_size=image_size, workdir=workdir)
    train_idx, val_idx = stratified_split(raw.train_labels, settings["val_fraction"], seed)
    _write_split(temp, "train", raw.train_images, raw.train_labels, train_idx)
    _write_split(temp, "val", raw.train_images, raw.train_labels, val_idx)
    _write_split(temp, "test", raw.test_images, raw.test_labels, None)
    labels = {name: np.load(temp / f"{name}_labels.npy") for name in SPLITS}
    subsets = _subsets(temp, labels, settings["fractions"], seed)
    mean_std = channel_mean_std(np.load(temp / "train_images.npy", mmap_mode="r"))
    manifest = _manifest(dataset, raw, list(raw.train_images.shape[1:]), labels, subsets, mean_std, settings)
    del raw  # drop memmaps into workdir before deleting it
    shutil.rmtree(workdir)
    return manifest


def _write_file_store(temp: Path, dataset: str, root, download: bool, image_size, seed: int, settings: dict) -> dict:
    if image_size is None:
        raise ConfigError("data.image_size", image_size, f"the training and evaluation crop size (224 for ImageNet) when {dataset} is read from files")
    tree = index_image_tree(*TREE_LAYOUTS[dataset](root, download))
    train_idx, val_idx = stratified_split(tree.train_labels, settings["val_fraction"], seed)
    file_store.write_split(temp, "train", tree.train_paths, tree.train_labels, train_idx)
    file_store.write_split(temp, "val", tree.train_paths, tree.train_labels, val_idx)
    file_store.write_split(temp, "test", tree.test_paths, tree.test_labels, None)
    labels = {name: np.load(temp / f"{name}_labels.npy") for name in SPLITS}
    subsets = _subsets(temp, labels, settings["fractions"], seed)
    train_files = ImageFiles(tree.root, tuple(tree.train_paths[i] for i in train_idx), image_size, tree.channels)
    mean_std = file_store.sample_mean_std(train_files, seed)
    image_shape = [tree.channels, image_size, image_size]
    extra = {"storage": file_store.STORAGE, "stats_sample": min(file_store.STATS_SAMPLE, len(train_idx))}
    return _manifest(dataset, tree, image_shape, labels, subsets, mean_std, {**settings, **extra})


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
                return Split(rows_of(self.train.images, rows), self.train.labels[rows])
        listed = ", ".join(repr(f) for f in sorted(self.subsets))
        raise UserError(
            f"{self.path / 'subsets.npz'}: label fraction {fraction} was not prepared (prepared: {listed}); "
            f"rerun {PREPARE}, which prepares data.train_fraction of params.yaml"
        )


_MANIFEST = "manifest.json"
_SUBSETS = "subsets.npz"
_REQUIRED = ("class_names", "image_shape", "split_sizes", "subset_sizes", "mean", "std")  # what loading relies on


def _fraction(key: object) -> float | None:
    """A subsets key (repr of a float in (0, 1]) as a float, or None if it is not one."""
    try:
        value = float(key)
    except (TypeError, ValueError):
        return None
    return value if 0.0 < value <= 1.0 else None


def _count(value: object) -> bool:
    return type(value) is int and value >= 0  # type(), not isinstance: True is not a count


def _list_of(value: object, kinds: tuple[type, ...], length: int | None = None) -> bool:
    return isinstance(value, list) and length in (None, len(value)) and all(type(v) in kinds for v in value)


def _field_problem(manifest: dict) -> str | None:
    """The first field that load_prepared and PreparedDataset rely on and that is malformed."""
    checks = (
        ("class_names", "a non-empty list of names", lambda v: _list_of(v, (str,)) and len(v) > 0),
        ("image_shape", "[C, H, W] of positive integers", lambda v: _list_of(v, (int,), 3) and min(v) > 0),
        ("split_sizes", f"an image count per split ({', '.join(SPLITS)})",
         lambda v: isinstance(v, dict) and all(_count(v.get(s)) for s in SPLITS)),
        ("subset_sizes", "an index count per label fraction in (0, 1]",
         lambda v: isinstance(v, dict) and all(_fraction(f) and _count(n) for f, n in v.items())),
    )  # fmt: skip
    for key, expected, valid in checks:
        if not valid(manifest[key]):
            return f"{key} is {short_repr(manifest[key])}, expected {expected}"
    channels = manifest["image_shape"][0]  # valid by now
    for key in ("mean", "std"):
        if not _list_of(manifest[key], (int, float), channels):
            return f"{key} is {short_repr(manifest[key])}, expected {channels} numbers, one per channel"
    return None


def _read_manifest(out_dir: Path) -> dict:
    path = out_dir / _MANIFEST
    if not out_dir.is_dir():  # never prepared, as opposed to damaged: nothing to delete
        raise UserError(f"{out_dir}: no prepared dataset here (no {_MANIFEST}); run {PREPARE}")
    manifest = read_json_object(path, out_dir)
    # the version first: a store from other code may lack or reshape any of the other keys
    if manifest.get("format_version") != FORMAT_VERSION:
        found = short_repr(manifest["format_version"]) if "format_version" in manifest else "missing"
        raise broken(path, out_dir, f"format_version is {found}, this code reads {FORMAT_VERSION}")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise broken(path, out_dir, f"lacks {', '.join(missing)}")
    problem = _field_problem(manifest)
    if problem:
        raise broken(path, out_dir, problem)
    return manifest


def _load_split(out_dir: Path, name: str, manifest: dict, mmap: bool, files_root, workers: int) -> Split:
    """One split, its arrays checked against the manifest; labels always in RAM (they are small)."""
    n, shape = manifest["split_sizes"][name], tuple(manifest["image_shape"])
    if manifest.get("storage") == file_store.STORAGE:
        images = file_store.image_files(out_dir, name, manifest, files_root, workers)
    else:
        images = torch.from_numpy(load_npy(out_dir / f"{name}_images.npy", out_dir, (n, *shape), np.dtype(np.uint8), mmap))
    labels_path = out_dir / f"{name}_labels.npy"
    labels = load_npy(labels_path, out_dir, (n,), np.dtype(np.int64), mmap=False)
    num_classes = len(manifest["class_names"])
    if n and not 0 <= labels.min() <= labels.max() < num_classes:
        found = f"[{labels.min()}, {labels.max()}]"
        raise broken(labels_path, out_dir, f"labels span {found}, outside the {num_classes} classes of {_MANIFEST}")
    return Split(images, torch.from_numpy(labels))


def _subset_problem(indices: object, size: int, train_size: int) -> str | None:
    """Why one subsets.npz member is not `size` int64 indices into train, or None if it is."""
    if not isinstance(indices, np.ndarray) or indices.dtype != np.int64 or indices.shape != (size,):
        found = f"{indices.dtype} {list(indices.shape)}" if isinstance(indices, np.ndarray) else type(indices).__name__
        return f"holds {found}, expected int64 [{size}] from {_MANIFEST}"
    if size and not 0 <= indices.min() <= indices.max() < train_size:
        return f"indexes outside the {train_size} train images"
    return None


def _load_subsets(out_dir: Path, manifest: dict, train_size: int) -> dict[float, np.ndarray]:
    """The subsets.npz index arrays, which must be exactly the fractions the manifest lists."""
    path = out_dir / _SUBSETS
    members, sizes = load_npz(path, out_dir), manifest["subset_sizes"]
    if set(members) != set(sizes):
        found, listed = ", ".join(sorted(members)) or "none", ", ".join(sorted(sizes)) or "none"
        raise broken(path, out_dir, f"holds fractions {found}, but {_MANIFEST} lists {listed}")
    for key, indices in members.items():
        problem = _subset_problem(indices, sizes[key], train_size)
        if problem:
            raise broken(path, out_dir, f"fraction {key} {problem}")
    return {float(key): indices for key, indices in members.items()}


def load_prepared(out_dir: Path, *, mmap: bool = True, files_root: str | Path | None = None, workers: int = 0) -> PreparedDataset:
    """Open a store written by prepare_dataset; with mmap, image arrays stay on disk until read.

    A file store (data.storage files) reads its images under `files_root` (data.root), decoded
    by `workers` processes (0: one per core, see preprocess.loader_workers). A missing, truncated
    or inconsistent store is a UserError naming the damaged file.
    """
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir)
    splits = {name: _load_split(out_dir, name, manifest, mmap, files_root, workers) for name in SPLITS}
    subsets = _load_subsets(out_dir, manifest, len(splits["train"]))
    return PreparedDataset(out_dir, splits["train"], splits["val"], splits["test"], manifest, subsets)
