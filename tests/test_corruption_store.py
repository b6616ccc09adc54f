"""The corrupted-set store: written whole, read back in batches, damage reported in one line; a
released set is stored by what it is, not where it lives."""

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.corruption import generate, released
from pipeline.corruption import store as store_module
from pipeline.corruption.store import open_corrupted, write_generated, write_released
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.config import RobustnessConfig
from pipeline.errors import UserError
from stages import corrupt as corrupt_stage


def _dataset(test_images: np.ndarray, test_labels: np.ndarray, classes: int = 10, dataset: str = "cifar10") -> PreparedDataset:
    empty = Split(torch.zeros((0, *test_images.shape[1:]), dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    manifest = {
        "dataset": dataset, "class_names": [str(i) for i in range(classes)], "image_shape": list(test_images.shape[1:]), "mean": [0.5], "std": [0.25],
    }  # fmt: skip
    test = Split(torch.from_numpy(test_images), torch.from_numpy(test_labels))
    return PreparedDataset(Path("synthetic"), empty, empty, test, manifest, {})


CELL_VALUE = {("fog", 2): 0, ("fog", 4): 1, ("snow", 2): 10, ("snow", 4): 11}


def _cell_valued(images: np.ndarray, corruption: str, severity: int, seed: int, start: int) -> np.ndarray:
    """Stands in for corrupt_chunk: each cell's pixels say which cell it is, so reading the wrong one shows."""
    return np.full_like(images[start : start + generate.CHUNK], CELL_VALUE[corruption, severity])


def _write(target: Path, n: int = 7) -> dict:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
    labels = np.arange(n) % 3
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generate, "corrupt_chunk", _cell_valued)
        write_generated(target, indices=np.arange(n) * 3, clean=clean, labels=labels, corruptions=["fog", "snow"], severities=[2, 4], seed=0, workers=1)
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
    root.mkdir(parents=True)
    labels = np.tile(np.arange(n) % 10, 5)
    np.save(root / "labels.npy", labels)
    np.save(root / "fog.npy", np.repeat(np.arange(5, dtype=np.uint8), n)[:, None, None, None] * np.ones((1, 32, 32, 3), np.uint8))
    return labels[:n]


def _cifar_c_reader(n: int):
    """released_reader for fixtures of n images per severity (10 000 as released)."""
    return functools.partial(released.released_reader, images_per_severity=n)


def _point_at(root: Path, target: Path, monkeypatch, n: int = 4, kind: str = "cifar10-c", classes: int = 10) -> None:
    """What the corrupt stage does with robustness.released = kind at root."""
    monkeypatch.setattr(corrupt_stage, "released_reader", _cifar_c_reader(n))
    config = RobustnessConfig(corruptions=("fog",), severities=(1, 3), released=kind, released_root=str(root))
    corrupt_stage._point_at_release(config, _dataset(np.zeros((n, 3, 32, 32), np.uint8), np.zeros(n, np.int64), classes), target)


def test_a_released_store_reads_the_release_in_place_and_the_clean_test_split(tmp_path, monkeypatch):
    n = 4
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C", n)
    _point_at(tmp_path / "CIFAR-10-C", tmp_path / "store", monkeypatch, n)
    monkeypatch.setattr(store_module, "released_reader", _cifar_c_reader(n))
    test_images = np.full((n, 3, 32, 32), 200, np.uint8)
    store = open_corrupted(tmp_path / "store", _dataset(test_images, labels), released_root=tmp_path / "CIFAR-10-C")

    assert store.source == "cifar10-c" and store.cells() == [("fog", 1), ("fog", 3)] and store.num_images == n
    images, got = next(iter(store.batches("fog", 3, n)))
    assert images.unique().tolist() == [2] and got.tolist() == labels.tolist()
    clean, clean_labels = next(iter(store.clean_batches(n)))
    assert clean.unique().tolist() == [200] and clean_labels.tolist() == labels.tolist()


def test_a_release_of_the_wrong_size_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """A CIFAR-C release corrupts the test split: its severities hold as many images as that split."""
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C", 4)
    _point_at(tmp_path / "CIFAR-10-C", tmp_path / "store", monkeypatch, n=4)
    six = _dataset(np.zeros((6, 3, 32, 32), np.uint8), np.concatenate([labels, labels[:2]]))
    with pytest.raises(UserError, match=r"labels\.npy: .*expected integer labels of shape \(30,\)") as caught:
        open_corrupted(tmp_path / "store", six, released_root=tmp_path / "CIFAR-10-C")
    assert "\n" not in str(caught.value)


def test_copies_of_one_release_in_two_folders_write_byte_identical_stores(tmp_path, monkeypatch):
    """The store is a DVC output: where the release lives must not change its hash."""
    labels = _write_cifar_c(tmp_path / "here" / "CIFAR-10-C", 4)
    shutil.copytree(tmp_path / "here", tmp_path / "there" / "elsewhere")
    _point_at(tmp_path / "here" / "CIFAR-10-C", tmp_path / "one", monkeypatch)
    _point_at(tmp_path / "there" / "elsewhere" / "CIFAR-10-C", tmp_path / "two", monkeypatch)

    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["manifest.json"]
    written = (tmp_path / "one" / "manifest.json").read_bytes()
    assert written == (tmp_path / "two" / "manifest.json").read_bytes() and b"here" not in written
    # Scoring reads the release from robustness.released_root, wherever the copy is.
    monkeypatch.setattr(store_module, "released_reader", _cifar_c_reader(4))
    data = _dataset(np.zeros((4, 3, 32, 32), np.uint8), labels)
    cells = [open_corrupted(tmp_path / "one", data, released_root=tmp_path / where / "CIFAR-10-C") for where in ("here", "there/elsewhere")]
    first, second = (torch.cat([x for x, _ in store.batches("fog", 3, 2)]) for store in cells)
    assert torch.equal(first, second) and first.unique().tolist() == [2]


def test_scoring_a_release_needs_released_root_and_the_release_the_store_was_made_from(tmp_path, monkeypatch):
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C", 4)
    _point_at(tmp_path / "CIFAR-10-C", tmp_path / "store", monkeypatch)
    monkeypatch.setattr(store_module, "released_reader", _cifar_c_reader(4))
    data = _dataset(np.zeros((4, 3, 32, 32), np.uint8), labels)
    with pytest.raises(UserError, match=r"^robustness\.released_root = null: .*store stands for cifar10-c.*set robustness\.released_root"):
        open_corrupted(tmp_path / "store", data)
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "CIFAR-10-C", other)
    np.save(other / "labels.npy", np.tile(np.arange(4)[::-1] % 10, 5))  # same shape, other labels
    with pytest.raises(UserError, match=r"other: its files differ from the cifar10-c the corrupt stage checked .*dvc repro corrupt") as caught:
        open_corrupted(tmp_path / "store", data, released_root=other)
    assert "\n" not in str(caught.value)


def test_a_release_of_another_dataset_is_refused_before_any_store_is_written(tmp_path, monkeypatch):
    # CIFAR-100-C's labels (here up to 99) scored against 10-class models
    root = tmp_path / "CIFAR-100-C"
    _write_cifar_c(root, 4)
    np.save(root / "labels.npy", np.tile(np.array([3, 99, 50, 7]), 5))
    with pytest.raises(UserError, match=r"labels\.npy: labels range over \[3, 99\], but the models scored have 10 classes") as caught:
        _point_at(root, tmp_path / "store", monkeypatch, kind="cifar100-c", classes=10)
    assert "\n" not in str(caught.value) and not (tmp_path / "store").exists()


def test_a_released_store_of_another_dataset_is_not_scored(tmp_path, monkeypatch):
    labels = _write_cifar_c(tmp_path / "CIFAR-10-C", 4)
    _point_at(tmp_path / "CIFAR-10-C", tmp_path / "store", monkeypatch)
    monkeypatch.setattr(store_module, "released_reader", _cifar_c_reader(4))
    cifar100 = _dataset(np.zeros((4, 3, 32, 32), np.uint8), labels, classes=100, dataset="cifar100")
    with pytest.raises(UserError, match=r"store: stands for cifar10-c, which does not corrupt the test split of cifar100; rerun .*dvc repro corrupt"):
        open_corrupted(tmp_path / "store", cifar100, released_root=tmp_path / "CIFAR-10-C")
