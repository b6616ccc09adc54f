"""What a dataset loader returns: the original train/test splits plus provenance.

Loaders read one on-disk format each and know nothing about val splits, subsets or the prepared
store; prepared.py turns a RawDataset into the store that training reads.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input that went into the dataset, with the sha256 of its bytes.

    `name` is the file's base name (or, for a directory tree, the split folder's name), never
    where it was read from: the manifest is hashed by DVC as part of the prepared store, so an
    absolute path would make the same data hash differently per machine or `data.root`.
    For a directory tree (imagefolder), `sha256` is that of the `sha256sum`-style listing
    ("<hex>  <relative path>\\n" per file, sorted by path) and `files` counts the files.
    """

    name: str
    sha256: str
    files: int = 1


@dataclass(frozen=True)
class RawDataset:
    """The dataset as published: uint8 images [N, C, H, W] (ndarray or np.memmap), int64 labels [N].

    Every label indexes `class_names`. Large trees hand back memmaps so they never sit in RAM.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    sources: tuple[Source, ...]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large archives do not load whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sources(paths: list[Path]) -> tuple[Source, ...]:
    """One Source per file, named by its base name only (see Source)."""
    return tuple(Source(p.name, sha256_file(p)) for p in paths)
