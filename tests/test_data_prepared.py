"""The prepared store: round trip, manifest, subsets, atomic replacement and error messages."""

import hashlib
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
import torchvision
from fixtures_data import FASHION_FILES, write_cifar10, write_cifar100, write_fashion_mnist, write_image_tree

from pipeline.data import prepared
from pipeline.data.prepared import load_prepared, prepare_dataset
from pipeline.errors import ConfigError, UserError


def _prepare(root, out_dir, dataset="fashion_mnist", **overrides):
    args = dict(root=str(root), download=False, image_size=None, val_fraction=0.2, fractions=[0.1, 0.5], seed=0)
    return prepare_dataset(dataset, out_dir=out_dir, **{**args, **overrides})


def _store_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def test_round_trip_keeps_every_image_once(tmp_path):
    written = write_fashion_mnist(tmp_path / "raw", train_per_class=10)
    manifest = _prepare(tmp_path / "raw", tmp_path / "store")
    data = load_prepared(tmp_path / "store")
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    # train + val is the published train split, each image with its own label
    merged = torch.cat([data.train.images, data.val.images]).flatten(1).numpy()
    merged_labels = torch.cat([data.train.labels, data.val.labels]).numpy()
    original = written["train_images"].reshape(100, -1)
    order = [np.flatnonzero((original == row).all(axis=1))[0] for row in merged]
    assert sorted(order) == list(range(100))
    np.testing.assert_array_equal(merged_labels, written["train_labels"][order])
    np.testing.assert_array_equal(data.test.images[:, 0].numpy(), written["test_images"])
    assert data.manifest == manifest == json.loads((tmp_path / "store" / "manifest.json").read_text())


def test_manifest_records_provenance_counts_and_stats(tmp_path):
    write_fashion_mnist(tmp_path / "raw", train_per_class=10)
    m = _prepare(tmp_path / "raw", tmp_path / "store", seed=3)
    for source in m["sources"]:
        data = (tmp_path / "raw" / source["name"]).read_bytes()
        assert source["sha256"] == hashlib.sha256(data).hexdigest() and source["files"] == 1
    assert m["dataset"] == "fashion_mnist" and m["image_shape"] == [1, 28, 28] and len(m["class_names"]) == 10
    assert {split: list(per_class.values()) for split, per_class in m["counts"].items()} == {
        "train": [8] * 10, "val": [2] * 10, "test": [2] * 10
    }
    assert list(m["counts"]["train"]) == m["class_names"]
    assert (m["val_fraction"], m["seed"], m["fractions"]) == (0.2, 3, [0.1, 0.5])
    data = load_prepared(tmp_path / "store")
    train = data.train.images.double() / 255
    assert data.mean == pytest.approx((train.mean().item(),))
    assert data.std == pytest.approx((train.std(correction=0).item(),))
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 28)


def test_subsets_are_stratified_views_of_train(tmp_path):
    write_fashion_mnist(tmp_path / "raw", train_per_class=10)
    _prepare(tmp_path / "raw", tmp_path / "store")
    data = load_prepared(tmp_path / "store")
    tenth, half = data.subset(0.1), data.subset(0.5)
    assert torch.bincount(tenth.labels).tolist() == [1] * 10 and torch.bincount(half.labels).tolist() == [4] * 10
    index = data.subsets[0.5][3]
    assert torch.equal(half.images[3], data.train.images[index])
    assert data.subset(1.0) is data.train
    with pytest.raises(UserError, match=r"0.25 was not prepared \(prepared: 0.1, 0.5\)"):
        data.subset(0.25)


def test_mmap_and_in_memory_loads_agree_without_warnings(tmp_path):
    write_fashion_mnist(tmp_path / "raw")
    _prepare(tmp_path / "raw", tmp_path / "store", val_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on read-only arrays
        mapped, loaded = load_prepared(tmp_path / "store"), load_prepared(tmp_path / "store", mmap=False)
    assert torch.equal(mapped.train.images, loaded.train.images) and len(mapped.val) == len(loaded.val) > 0
    before = _store_bytes(tmp_path / "store")
    mapped.train.images[0] += 1  # copy-on-write: the tensor changes, the file does not
    assert _store_bytes(tmp_path / "store") == before


def _every_file(out_dir):
    """Relative path -> bytes of every file under out_dir: what DVC hashes."""
    return {p.relative_to(out_dir).as_posix(): p.read_bytes() for p in sorted(out_dir.rglob("*")) if p.is_file()}


def _assert_portable(first, second, tmp_path):
    """Byte-identical stores whose manifest says nothing about where the data or store lived."""
    a, b = _every_file(first), _every_file(second)
    arrays = [f"{split}_{kind}.npy" for split in prepared.SPLITS for kind in ("images", "labels")]
    assert sorted(a) == sorted([*arrays, "manifest.json", "subsets.npz"])
    assert a == b
    manifest = json.loads(a["manifest.json"])
    assert str(tmp_path) not in a["manifest.json"].decode() and not {"root", "download"} & set(manifest)


def test_fashion_mnist_store_does_not_depend_on_root_or_download(tmp_path, monkeypatch):
    write_fashion_mnist(tmp_path / "fixture")
    shutil.copytree(tmp_path / "fixture", tmp_path / "machine_a" / "datasets")
    shutil.copytree(tmp_path / "fixture", tmp_path / "machine_b" / "FashionMNIST" / "raw")  # torchvision's layout

    def no_network(*args, **kwargs):
        raise AssertionError("the files are present: nothing should be downloaded")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_network)
    _prepare(tmp_path / "machine_a" / "datasets", tmp_path / "out_a" / "store")
    monkeypatch.chdir(tmp_path)  # and a relative root, which resolve() used to make absolute
    _prepare("machine_b", tmp_path / "out_b" / "fashion_mnist", download=True)
    _assert_portable(tmp_path / "out_a" / "store", tmp_path / "out_b" / "fashion_mnist", tmp_path)
    names = [s["name"] for s in json.loads((tmp_path / "out_a" / "store" / "manifest.json").read_text())["sources"]]
    assert names == [f"{name}.gz" for name in FASHION_FILES.values()]


def test_imagefolder_store_does_not_depend_on_root(tmp_path, monkeypatch):
    write_image_tree(tmp_path / "fixture", {"train": {"a": 5, "b": 4}, "val": {"a": 1, "b": 2}})
    shutil.copytree(tmp_path / "fixture", tmp_path / "machine_a" / "trees" / "mine")
    shutil.copytree(tmp_path / "fixture", tmp_path / "machine_b")
    _prepare(tmp_path / "machine_a" / "trees" / "mine", tmp_path / "out_a", dataset="imagefolder", image_size=12)
    monkeypatch.chdir(tmp_path)
    _prepare("machine_b", tmp_path / "out_b", dataset="imagefolder", image_size=12)
    _assert_portable(tmp_path / "out_a", tmp_path / "out_b", tmp_path)
    sources = json.loads((tmp_path / "out_a" / "manifest.json").read_text())["sources"]
    assert [(s["name"], s["files"]) for s in sources] == [("train", 9), ("val", 3)]


def _small_tree(root):
    write_image_tree(root, {"train": {"a": 5, "b": 4}, "val": {"a": 1}})


@pytest.mark.parametrize(
    "dataset, write, image_size, shape",
    [
        ("cifar10", write_cifar10, None, [3, 32, 32]),
        ("cifar100", write_cifar100, 16, [3, 16, 16]),
        ("imagefolder", _small_tree, 12, [3, 12, 12]),
    ],
)
def test_every_loader_prepares(tmp_path, dataset, write, image_size, shape):
    write(tmp_path / "raw")
    manifest = _prepare(tmp_path / "raw", tmp_path / "store", dataset=dataset, image_size=image_size)
    data = load_prepared(tmp_path / "store")
    assert manifest["image_shape"] == shape and list(data.train.images.shape[1:]) == shape
    assert [len(data.train), len(data.val)] == [sum(manifest["counts"][s].values()) for s in ("train", "val")]
    assert not (tmp_path / "store" / "work").exists()


def test_failure_mid_prepare_keeps_the_old_store(tmp_path, monkeypatch):
    write_fashion_mnist(tmp_path / "raw")
    _prepare(tmp_path / "raw", tmp_path / "store")
    before = _store_bytes(tmp_path / "store")

    def crash(images):
        raise RuntimeError("simulated crash after the split arrays were written")

    monkeypatch.setattr(prepared, "channel_mean_std", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _prepare(tmp_path / "raw", tmp_path / "store", seed=1)
    assert _store_bytes(tmp_path / "store") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "store"]  # no temp folders left behind


def test_successful_prepare_replaces_the_store(tmp_path):
    write_fashion_mnist(tmp_path / "raw")
    _prepare(tmp_path / "raw", tmp_path / "store", fractions=[0.1])
    _prepare(tmp_path / "raw", tmp_path / "store", fractions=[0.5], seed=9)
    data = load_prepared(tmp_path / "store")
    assert list(data.subsets) == [0.5] and data.manifest["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "store"]


def test_corrupt_idx_magic_is_a_user_error_and_keeps_the_old_store(tmp_path):
    write_fashion_mnist(tmp_path / "raw", gz=False)
    _prepare(tmp_path / "raw", tmp_path / "store")
    before = _store_bytes(tmp_path / "store")
    path = tmp_path / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x99\x03" + path.read_bytes()[4:])
    with pytest.raises(UserError, match=f"{path}: not an IDX file"):
        _prepare(tmp_path / "raw", tmp_path / "store")
    assert _store_bytes(tmp_path / "store") == before


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(UserError, match=f"data.root: {tmp_path / 'absent'} does not exist"):
        _prepare(tmp_path / "absent", tmp_path / "store")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"dataset": "mnist"}, "data.dataset"),
        ({"val_fraction": 1.0}, "data.val_fraction"),
        ({"val_fraction": -0.1}, "data.val_fraction"),  # the same rule as params.yaml's: [0, 1)
        ({"fractions": [0.0]}, "reduced.fractions"),
        ({"fractions": []}, "reduced.fractions"),
        ({"image_size": 0}, "data.image_size"),
    ],
)
def test_invalid_arguments_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        _prepare(tmp_path, tmp_path / "store", **overrides)
