"""The corrupted-set store: written whole, read back in batches, damage reported in one line."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.corruption import released
from pipeline.corruption import store as store_module
from pipeline.corruption.store import open_corrupted, write_generated, write_released
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.errors import UserError


def _dataset(test_images: np.ndarray, test_labels: np.ndarray) -> PreparedDataset:
    empty = Split(torch.zeros((0, *test_images.shape[1:]), dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    manifest = {"class_names": [str(i) for i in range(10)], "image_shape": list(test_images.shape[1:]), "mean": [0.5], "std": [0.25]}
    test = Split(torch.from_numpy(test_images), torch.from_numpy(test_labels))
    return PreparedDataset(Path("synthetic"), empty, empty, test, manifest, {})


def _write(target: Path, n: int = 7) -> dict:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
    labels = np.arange(n) % 3
    # Each cell's pixels say which cell it is, so reading the wrong one shows.
    corrupted = {name: np.stack([np.full((n, 1, 8, 8), 10 * c + s, np.uint8) for s in range(2)]) for c, name in enumerate(("fog", "snow"))}
    write_generated(target, indices=np.arange(n) * 3, clean=clean, labels=labels, corrupted=corrupted, severities=[2, 4], seed=0)
    return {"clean": clean, "labels": labels}


def test_a_generated_store_serves_every_cell_and_the_clean_images_in_order(tmp_path):
    written = _write(tmp_path / "store")
    store = open_corrupted(tmp_path / "store", _dataset(written["clean"], written["labels"]))
    assert store.cells() == [("fog", 2), ("fog", 4), ("snow", 2), ("snow", 4)] and store.num_images == 7
    for c, name in enumerate(("fog", "snow")):
        for s, level in enumerate((2, 4)):
            batches = list(store.batches(name, level, batch_size=3))
            assert [len(labels) for _, labels in batches] == [3, 3, 1]
            assert torch.cat([images for images, _ in batches]).unique().tolist() == [10 * c + s]
            assert torch.cat([labels for _, labels in batches]).tolist() == written["labels"].tolist()
    clean = torch.cat([images for images, _ in store.clean_batches(4)])
    assert torch.equal(clean, torch.from_numpy(written["clean"]))


def test_a_damaged_store_names_the_file_and_the_stage_to_rerun(tmp_path):
    written = _write(tmp_path / "store")
    path = tmp_path / "store" / "snow.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match=r"snow\.npy: truncated .*dvc repro corrupt") as caught:
        open_corrupted(tmp_path / "store", _dataset(written["clean"], written["labels"]))
    assert "\n" not in str(caught.value)


def _write_cifar_c(root: Path, n: int) -> np.ndarray:
    """A CIFAR-10-C layout with n images per severity; pixel value = severity - 1."""
    root.mkdir()
    labels = np.tile(np.arange(n) % 10, 5)
    np.save(root / "labels.npy", labels)
    np.save(root / "fog.npy", np.repeat(np.arange(5, dtype=np.uint8), n)[:, None, None, None] * np.ones((1, 32, 32, 3), np.uint8))
    return labels[:n]


def test_a_released_store_reads_the_release_in_place_and_the_clean_test_split(tmp_path, monkeypatch):
    n = 4
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C", n)
    write_released(tmp_path / "store", kind="cifar10-c", root=str(tmp_path / "CIFAR-10-C"), corruptions=["fog"], severities=[1, 3])
    # The real release has 10 000 images per severity; this fixture has n.
    monkeypatch.setattr(store_module, "released_reader", functools.partial(released.released_reader, images_per_severity=n))
    test_images = np.full((n, 3, 32, 32), 200, np.uint8)
    store = open_corrupted(tmp_path / "store", _dataset(test_images, labels))

    assert store.source == "cifar10-c" and store.cells() == [("fog", 1), ("fog", 3)] and store.num_images == n
    images, got = next(iter(store.batches("fog", 3, n)))
    assert images.unique().tolist() == [2] and got.tolist() == labels.tolist()
    clean, clean_labels = next(iter(store.clean_batches(n)))
    assert clean.unique().tolist() == [200] and clean_labels.tolist() == labels.tolist()


def test_a_release_of_the_wrong_size_is_one_line_naming_the_file(tmp_path):
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C", 4)
    write_released(tmp_path / "store", kind="cifar10-c", root=str(tmp_path / "CIFAR-10-C"), corruptions=["fog"], severities=[1])
    with pytest.raises(UserError, match=r"labels\.npy: .*expected integer labels of shape \(50000,\)") as caught:
        open_corrupted(tmp_path / "store", _dataset(np.zeros((4, 3, 32, 32), np.uint8), labels))
    assert "\n" not in str(caught.value)
