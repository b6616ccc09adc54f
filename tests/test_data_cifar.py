"""CIFAR-10/100 loaders on pickle fixtures in torchvision's folder layout."""

import pickle

import numpy as np
import pytest
import torchvision
from fixtures_data import write_cifar10, write_cifar100

from pipeline.data.cifar import load_cifar10, load_cifar100
from pipeline.errors import UserError


def test_cifar10_reads_all_batches_in_order(tmp_path):
    written = write_cifar10(tmp_path)
    raw = load_cifar10(root=str(tmp_path), download=False, image_size=None, workdir=tmp_path)
    assert raw.train_images.shape == (50, 3, 32, 32) and raw.test_images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(raw.train_labels, written["train_labels"])
    # a row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    np.testing.assert_array_equal(raw.train_images[3, 1, 2, 5], written["train_data"][3, 1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(raw.test_images.reshape(20, -1), written["test_data"])
    assert raw.class_names == tuple(f"class{i}" for i in range(10)) and len(raw.sources) == 7


def test_cifar100_uses_fine_labels_and_names(tmp_path):
    written = write_cifar100(tmp_path)
    raw = load_cifar100(root=str(tmp_path), download=False, image_size=None, workdir=tmp_path)
    np.testing.assert_array_equal(raw.train_labels, written["train_labels"])
    np.testing.assert_array_equal(raw.test_images.reshape(100, -1), written["test_data"])
    assert len(raw.class_names) == 100 and raw.class_names[7] == "fine7"


def test_image_size_resizes(tmp_path):
    write_cifar10(tmp_path)
    raw = load_cifar10(root=str(tmp_path), download=False, image_size=16, workdir=tmp_path)
    assert raw.train_images.shape == (50, 3, 16, 16)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}.*cifar-10-batches-py/data_batch_1"):
        load_cifar10(root=str(tmp_path), download=False, image_size=None, workdir=tmp_path)
    with pytest.raises(UserError, match="data.root must be set"):
        load_cifar100(root=None, download=False, image_size=None, workdir=tmp_path)


def test_corrupt_batch_is_a_user_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="data_batch_3"):
        load_cifar10(root=str(tmp_path), download=False, image_size=None, workdir=tmp_path)


def test_wrong_data_shape_is_a_user_error(tmp_path):
    write_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, f)
    with pytest.raises(UserError, match=r"expected uint8 data \[N, 3072\]"):
        load_cifar100(root=str(tmp_path), download=False, image_size=None, workdir=tmp_path)


def test_download_calls_torchvision_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    def fake_cifar100(root, train, download):
        calls.append(root)
        write_cifar100(tmp_path)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", fake_cifar100)
    raw = load_cifar100(root=str(tmp_path), download=True, image_size=None, workdir=tmp_path)
    assert calls == [str(tmp_path)] and len(raw.train_labels) == 300
