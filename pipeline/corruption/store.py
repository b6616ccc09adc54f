"""The corrupted test set a `corrupt` stage writes, and the one interface scoring reads through.

A generated store (data/corrupted/<dataset>/):
    manifest.json          source "generated", corruptions, severities, image_shape, num_images, seed, library
    indices.npy            int64 [N]: which rows of the prepared test split were corrupted
    labels.npy, clean.npy  int64 [N] and the clean uint8 [N, C, H, W] of those rows
    <corruption>.npy       uint8 [len(severities), N, C, H, W], at the size the models evaluate at
For a released set the store holds only manifest.json (source, corruptions, severities,
num_images and a summary of the release's content, never its folder: the store is a DVC output,
hashed alike on every machine) and the set is read in place from robustness.released_root; its
clean images are the prepared test split (CIFAR-10-C corrupts the CIFAR-10 test set, ImageNet-C
the ImageNet validation set, which the presets prepare as their test split).
"""

import math
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap

from pipeline.atomic import atomic_directory, write_json
from pipeline.config import RELEASED_CORRUPTED
from pipeline.corruption.generate import CHUNK, corrupted_chunks
from pipeline.corruption.released import released_reader
from pipeline.data import PreparedDataset
from pipeline.data.store_io import load_npy, read_json_object
from pipeline.errors import UserError

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


def write_generated(
    target: Path, *, indices: np.ndarray, clean: np.ndarray, labels: np.ndarray, corruptions: Sequence[str], severities: Sequence[int], seed: int, workers: int
) -> None:
    """Corrupt `clean` (uint8 [N, C, H, W]) and write the store at `target` at once: an
    interrupted write leaves the old one (or none).

    Streamed: each <corruption>.npy is a memory map in the temp folder, filled chunk by chunk as
    tasks finish and closed when complete, so no [S, N, C, H, W] array is ever held in memory
    (15 x 5 of them for 50k 64 px images would be 46 GB).
    """
    manifest = {
        "source": "generated",
        "corruptions": list(corruptions),
        "severities": list(severities),
        "image_shape": list(clean.shape[1:]),
        "num_images": len(labels),
        "seed": seed,
        "library": f"imagecorruptions-imaug {version('imagecorruptions-imaug')} (ImageNet-C parameters)",
    }
    with atomic_directory(target) as temp:
        np.save(temp / "indices.npy", indices.astype(np.int64))
        np.save(temp / "labels.npy", labels.astype(np.int64))
        np.save(temp / "clean.npy", clean)  # also the workers' source, read by memory map
        _write_corrupted(temp, clean.shape, corruptions, severities, seed=seed, workers=workers)
        write_json(temp / "manifest.json", manifest)


def _write_corrupted(folder: Path, shape: tuple[int, ...], corruptions: Sequence[str], severities: Sequence[int], *, seed: int, workers: int) -> None:
    """folder/<corruption>.npy, uint8 [len(severities), *shape], from corrupting folder/clean.npy."""
    levels = list(severities)
    outputs = {name: open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(len(levels), *shape)) for name in corruptions}
    remaining = dict.fromkeys(corruptions, len(levels) * math.ceil(shape[0] / CHUNK))
    for name, level, start, chunk in corrupted_chunks(folder / "clean.npy", corruptions, levels, seed=seed, workers=workers):
        outputs[name][levels.index(level), start : start + len(chunk)] = chunk
        remaining[name] -= 1
        if remaining[name] == 0:  # complete: flush and unmap it, so written pages leave memory
            outputs.pop(name).flush()
    for array in outputs.values():  # none left unless there were no images
        array.flush()


def write_released(target: Path, *, kind: str, corruptions: Sequence[str], severities: Sequence[int], num_images: int, content: dict) -> None:
    """A store that stands for a released set (checked by the caller's reader first).

    It names the release and summarises its content (ReleasedReader.content), never its folder:
    the store is a DVC output, and the same release must hash the same on every machine. The
    folder comes from params (robustness.released_root) when the set is scored.
    """
    manifest = {"source": kind, "corruptions": list(corruptions), "severities": list(severities), "num_images": num_images, "content": content}
    with atomic_directory(target) as temp:
        write_json(temp / "manifest.json", manifest)


def open_corrupted(path: Path, data: PreparedDataset, released_root: str | Path | None = None) -> CorruptedSet:
    """The store at `path` as a CorruptedSet: generated, or standing for a released set, which is
    read in place from `released_root` (robustness.released_root)."""
    manifest = read_json_object(path / "manifest.json", path, RERUN)
    if manifest.get("source") != "generated":
        return _open_released(path, manifest, data, released_root)
    names, levels, count = manifest["corruptions"], manifest["severities"], manifest["num_images"]
    shape = tuple(manifest["image_shape"])
    labels = torch.from_numpy(np.asarray(load_npy(path / "labels.npy", path, (count,), np.int64, mmap=False, rerun=RERUN)))
    clean = load_npy(path / "clean.npy", path, (count, *shape), np.uint8, mmap=True, rerun=RERUN)
    arrays = {name: load_npy(path / f"{name}.npy", path, (len(levels), count, *shape), np.uint8, mmap=True, rerun=RERUN) for name in names}

    def cell(name: str, level: int, batch_size: int):
        return _in_batches(arrays[name][levels.index(level)], labels, batch_size)

    return CorruptedSet(names, levels, count, cell, lambda batch_size: _in_batches(clean, labels, batch_size), "generated")


def _open_released(path: Path, manifest: dict, data: PreparedDataset, root: str | Path | None) -> CorruptedSet:
    kind, names, levels = manifest["source"], manifest["corruptions"], manifest["severities"]
    if "content" not in manifest:  # written before stores summarised their release
        raise UserError(f"{path / 'manifest.json'}: written by an older version of the pipeline; rerun {RERUN}")
    dataset = data.manifest.get("dataset")
    if RELEASED_CORRUPTED.get(dataset) != kind:
        raise UserError(f"{path}: stands for {kind}, which does not corrupt the test split of {dataset}; rerun {RERUN}")
    if root is None:
        raise UserError(f"robustness.released_root = null: {path} stands for {kind}, which is read in place; set robustness.released_root to its folder")
    reader = released_reader(kind, root, names, levels, **reader_options(kind, data))
    if reader.content() != manifest["content"]:
        raise UserError(f"{root}: its files differ from the {kind} the corrupt stage checked ({path / 'manifest.json'}); rerun {RERUN}")
    test = data.test
    return CorruptedSet(names, levels, reader.num_images, reader.batches, lambda batch_size: _in_batches(test.images, test.labels, batch_size), kind)


def reader_options(kind: str, data: PreparedDataset) -> dict:
    """What a reader needs from the prepared dataset: labels of its models' classes and, for the
    CIFAR-C arrays, how many test images each severity holds (the test split's: 10,000 as released)."""
    if kind == "imagenet-c":
        return {"class_to_index": {name: i for i, name in enumerate(data.class_names)}}
    return {"model_classes": data.num_classes, "images_per_severity": len(data.test)}


def _in_batches(images, labels: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(labels), batch_size):
        yield torch.as_tensor(np.asarray(images[start : start + batch_size])), labels[start : start + batch_size]
