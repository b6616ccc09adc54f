"""Fashion-MNIST loader on IDX fixtures, the download path, and the real Debian files."""

import numpy as np
import pytest
import torchvision
from fixtures_data import write_fashion_mnist, write_idx

from pipeline.data.fashion_mnist import CLASS_NAMES, DEBIAN_ROOT, load_fashion_mnist
from pipeline.errors import UserError


def _load(root, tmp_path, download=False, image_size=None):
    return load_fashion_mnist(root=root, download=download, image_size=image_size, workdir=tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_what_was_written(tmp_path, gz):
    written = write_fashion_mnist(tmp_path / "fm", gz=gz)
    raw = _load(str(tmp_path / "fm"), tmp_path)
    np.testing.assert_array_equal(raw.train_images, written["train_images"][:, None])
    np.testing.assert_array_equal(raw.test_labels, written["test_labels"])
    assert raw.train_labels.dtype == np.int64 and raw.class_names == CLASS_NAMES
    assert raw.sources[0].name == "train-images-idx3-ubyte" + (".gz" if gz else "")  # base name only


def test_torchvision_raw_subfolder_is_found(tmp_path):
    write_fashion_mnist(tmp_path / "FashionMNIST" / "raw")
    assert len(_load(str(tmp_path), tmp_path).train_labels) == 60


def test_image_size_resizes(tmp_path):
    write_fashion_mnist(tmp_path)
    raw = _load(str(tmp_path), tmp_path, image_size=32)
    assert raw.train_images.shape == (60, 1, 32, 32) and raw.train_images.dtype == np.uint8


def test_missing_root_names_path_and_remedy(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=f"data.root: {missing} does not exist.*dataset-fashion-mnist"):
        _load(str(missing), tmp_path)


def test_incomplete_folder_is_reported(tmp_path):
    write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        _load(str(tmp_path), tmp_path)


def test_label_count_mismatch_is_reported(tmp_path):
    write_fashion_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), gz=True)
    with pytest.raises(UserError, match="expected 60 labels"):
        _load(str(tmp_path), tmp_path)


def test_download_uses_torchvision_then_reads_its_files(tmp_path, monkeypatch):
    calls = []

    def fake_fashion_mnist(root, train, download):
        calls.append((root, download))
        write_fashion_mnist(tmp_path / "dl" / "FashionMNIST" / "raw", gz=False)  # torchvision keeps both forms

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fashion_mnist)
    raw = _load(str(tmp_path / "dl"), tmp_path, download=True)
    assert calls == [(str(tmp_path / "dl"), True)] and len(raw.test_labels) == 20
    _load(str(tmp_path / "dl"), tmp_path, download=True)
    assert len(calls) == 1  # files present: no second download


def test_download_failure_is_a_user_error(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(UserError, match="downloading Fashion-MNIST.*failed"):
        _load(str(tmp_path), tmp_path, download=True)


@pytest.mark.skipif(
    not (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian package dataset-fashion-mnist is not installed ({DEBIAN_ROOT} missing)",
)
def test_real_debian_fashion_mnist(tmp_path):
    raw = _load(None, tmp_path)
    assert raw.train_images.shape == (60000, 1, 28, 28) and raw.test_images.shape == (10000, 1, 28, 28)
    assert len(raw.class_names) == 10
    assert np.bincount(raw.train_labels).tolist() == [6000] * 10
    assert np.bincount(raw.test_labels).tolist() == [1000] * 10
