"""The corrupted test set a `corrupt` stage writes, and the one interface scoring reads through.

A generated store (data/corrupted/<dataset>/):
    manifest.json          source "generated", corruptions, severities, image_shape, num_images, seed, library
    indices.npy            int64 [N]: which rows of the prepared test split were corrupted
    labels.npy, clean.npy  int64 [N] and the clean uint8 [N, C, H, W] of those rows
    <corruption>.npy       uint8 [len(severities), N, C, H, W], at the size the models evaluate at
For a released set the store holds only manifest.json (source, its folder) and the set is read in
place; its clean images are the prepared test split (CIFAR-10-C corrupts the CIFAR-10 test set,
ImageNet-C the ImageNet validation set, which the presets prepare as their test split).
"""

from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_directory, write_json
from pipeline.corruption.released import released_reader
from pipeline.data import PreparedDataset
from pipeline.data.store_io import load_npy, read_json_object

RERUN = "the corrupt stage (`dvc repro corrupt`)"


class CorruptedSet:
    """(corruption, severity) cells and the clean images they were made from, served in batches.

    `batches` and `clean_batches` yield uint8 images [B, C, H, W] and int64 labels [B].
    """

    def __init__(self, corruptions, severities, num_images: int, cell_batches, clean_batches, source: str) -> None:
        self.corruptions, self.severities, self.num_images, self.source = tuple(corruptions), tuple(severities), num_images, source
        self._cell_batches, self._clean_batches = cell_batches, clean_batches

    def cells(self) -> list[tuple[str, int]]:
        return [(name, level) for name in self.corruptions for level in self.severities]

    def batches(self, corruption: str, severity: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._cell_batches(corruption, severity, batch_size)

    def clean_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._clean_batches(batch_size)


def write_generated(target: Path, *, indices: np.ndarray, clean: np.ndarray, labels: np.ndarray, corrupted: dict[str, np.ndarray], severities, seed: int) -> None:
    """Write a generated store at `target` at once: an interrupted write leaves the old one (or none)."""
    manifest = {
        "source": "generated",
        "corruptions": list(corrupted),
        "severities": list(severities),
        "image_shape": list(clean.shape[1:]),
        "num_images": len(labels),
        "seed": seed,
        "library": f"imagecorruptions-imaug {version('imagecorruptions-imaug')} (ImageNet-C parameters)",
    }
    with atomic_directory(target) as temp:
        np.save(temp / "indices.npy", indices.astype(np.int64))
        np.save(temp / "labels.npy", labels.astype(np.int64))
        np.save(temp / "clean.npy", clean)
        for name, array in corrupted.items():
            np.save(temp / f"{name}.npy", array)
        write_json(temp / "manifest.json", manifest)


def write_released(target: Path, *, kind: str, root: str, corruptions, severities) -> None:
    """A store that points at a released set (checked by the caller's reader first)."""
    with atomic_directory(target) as temp:
        write_json(temp / "manifest.json", {"source": kind, "root": root, "corruptions": list(corruptions), "severities": list(severities)})


def open_corrupted(path: Path, data: PreparedDataset) -> CorruptedSet:
    """The store at `path` (generated, or pointing at a released set) as a CorruptedSet."""
    manifest = read_json_object(path / "manifest.json", path, RERUN)
    if manifest.get("source") != "generated":
        return _open_released(manifest, data)
    names, levels, count = manifest["corruptions"], manifest["severities"], manifest["num_images"]
    shape = tuple(manifest["image_shape"])
    labels = torch.from_numpy(np.asarray(load_npy(path / "labels.npy", path, (count,), np.int64, mmap=False, rerun=RERUN)))
    clean = load_npy(path / "clean.npy", path, (count, *shape), np.uint8, mmap=True, rerun=RERUN)
    arrays = {name: load_npy(path / f"{name}.npy", path, (len(levels), count, *shape), np.uint8, mmap=True, rerun=RERUN) for name in names}

    def cell(name: str, level: int, batch_size: int):
        return _in_batches(arrays[name][levels.index(level)], labels, batch_size)

    return CorruptedSet(names, levels, count, cell, lambda batch_size: _in_batches(clean, labels, batch_size), "generated")


def _open_released(manifest: dict, data: PreparedDataset) -> CorruptedSet:
    kind, names, levels = manifest["source"], manifest["corruptions"], manifest["severities"]
    extra = {"class_to_index": {name: i for i, name in enumerate(data.class_names)}} if kind == "imagenet-c" else {}
    reader = released_reader(kind, manifest["root"], names, levels, **extra)
    test = data.test
    return CorruptedSet(names, levels, reader.num_images, reader.batches, lambda batch_size: _in_batches(test.images, test.labels, batch_size), kind)


def _in_batches(images, labels: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(labels), batch_size):
        yield torch.as_tensor(np.asarray(images[start : start + batch_size])), labels[start : start + batch_size]
