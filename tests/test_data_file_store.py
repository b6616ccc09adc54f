"""Image trees read from their files (data.storage files): the prepared store keeps the file index,
training cuts random crops from the full images, and val_fraction 0 gives an empty val split.

Fixtures are real JPEG files written with PIL in the ImageFolder layout.
"""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from fixtures_data import write_image_tree
from pipeline.augment import MultiView, build_augmentation
from pipeline.config import AugmentConfig, CrossEntropyConfig, LinearConfig, ModelConfig, OptimizerConfig, SupConConfig
from pipeline.data import load_prepared, prepare_dataset
from pipeline.data.image_files import ImageFiles
from pipeline.data.jpeg_batches import JpegBatches
from pipeline.errors import ConfigError, UserError
from pipeline.run_context import RunContext
from pipeline.training import train

SIZE = 32
TREE = {"train": {"cat": 8, "dog": 8, "owl": 8}, "test": {"cat": 2, "dog": 2, "owl": 2}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpeg_tree")
    write_image_tree(root, TREE, sizes=((64, 48), (40, 80), (50, 50)), fmt="JPEG")
    return root


def _prepare(root, out, **overrides):
    kwargs = dict(root=str(root), download=False, image_size=SIZE, val_fraction=0.25, fractions=[1.0, 0.5], seed=0, out_dir=out, storage="files")
    return prepare_dataset("imagefolder", **{**kwargs, **overrides})


def test_file_store_keeps_the_file_index_not_the_pixels(tree, tmp_path):
    manifest = _prepare(tree, tmp_path / "store")

    store = tmp_path / "store"
    assert not list(store.glob("*_images.npy"))
    assert manifest["storage"] == "files" and manifest["image_shape"] == [3, SIZE, SIZE]
    assert manifest["split_sizes"] == {"train": 18, "val": 6, "test": 6}
    listed = (store / "train_files.txt").read_text().splitlines()
    assert all(path.startswith("train/") and (tree / path).is_file() for path in listed)  # relative to data.root
    labels = np.load(store / "train_labels.npy")
    assert [path.split("/")[1] for path in listed] == [manifest["class_names"][i] for i in labels]
    assert all(0 < m < 1 for m in manifest["mean"]) and all(0 < s < 0.5 for s in manifest["std"])


def test_file_store_loads_as_image_files_with_eval_views_and_lazy_subsets(tree, tmp_path):
    _prepare(tree, tmp_path / "store")

    data = load_prepared(tmp_path / "store", files_root=tree)

    assert isinstance(data.train.images, ImageFiles) and data.train.images.shape == (18, 3, SIZE, SIZE)
    views = data.test.images[:2]
    assert views.dtype == torch.uint8 and views.shape == (2, 3, SIZE, SIZE)
    half = data.subset(0.5)
    assert isinstance(half.images, ImageFiles) and len(half.images) == len(half.labels) == 9
    rows = data.subsets[0.5]
    assert half.images.paths == tuple(data.train.images.paths[i] for i in rows)


def test_file_store_does_not_depend_on_where_the_tree_is(tree, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tree, moved)
    _prepare(tree, tmp_path / "a")
    _prepare(moved, tmp_path / "b")

    for file in sorted((tmp_path / "a").iterdir()):
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_loading_a_file_store_needs_the_tree(tree, tmp_path):
    _prepare(tree, tmp_path / "store")

    with pytest.raises(UserError, match="set data.root to the folder it was prepared from"):
        load_prepared(tmp_path / "store")
    with pytest.raises(UserError, match=r"does not hold train/.*train_files.txt"):
        load_prepared(tmp_path / "store", files_root=tmp_path)


def test_auto_storage_reads_files_only_above_the_threshold(tree, tmp_path):
    small = _prepare(tree, tmp_path / "pixels", storage="auto", files_above=1000)
    large = _prepare(tree, tmp_path / "files", storage="auto", files_above=10)

    assert "storage" not in small and (tmp_path / "pixels" / "train_images.npy").is_file()
    assert large["storage"] == "files"


def test_storage_files_is_refused_for_array_datasets(tmp_path):
    with pytest.raises(ConfigError, match="data.storage = 'files' is not allowed"):
        prepare_dataset("fashion_mnist", root=None, download=False, image_size=None, val_fraction=0.1, fractions=[1.0], seed=0, out_dir=tmp_path / "s", storage="files")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("storage", ["files", "pixels"])
def test_val_fraction_zero_trains_on_the_whole_train_split(tree, tmp_path, storage):
    manifest = _prepare(tree, tmp_path / "store", val_fraction=0.0, storage=storage)

    data = load_prepared(tmp_path / "store", files_root=tree)
    assert manifest["split_sizes"] == {"train": 24, "val": 0, "test": 6}
    assert len(data.val) == 0 and len(data.train) == 24


def test_a_loader_cut_view_keeps_only_the_flip_of_the_crop_step():
    images = torch.randint(0, 256, (6, 2, 3, SIZE, SIZE), dtype=torch.uint8)  # [B, V, C, S, S] from the loader
    policy = build_augmentation("basic", image_size=SIZE, channels=3, crop=False)

    out = MultiView(policy, 2)(images)

    assert out.shape == (6, 2, 3, SIZE, SIZE)
    expected = images.float() / 255
    for got, original in zip(out.flatten(0, 1), expected.flatten(0, 1)):
        assert torch.equal(got, original) or torch.equal(got, original.flip(-1))


MODEL = ModelConfig(encoder="small_resnet", width=8, depth=2, blocks=1, feat_dim=16)
SGD = OptimizerConfig(name="sgd", lr=0.05, scale_lr=False, warmup_epochs=0)


def _spy_sources(monkeypatch) -> list:
    """Records the batch sources training builds."""
    import pipeline.training as training

    built, original = [], training.batch_source
    monkeypatch.setattr(training, "batch_source", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    return built


def test_training_on_a_file_store_cuts_crops_from_the_files(tree, tmp_path, monkeypatch):
    _prepare(tree, tmp_path / "store")
    data = load_prepared(tmp_path / "store", files_root=tree)
    run = RunContext(seed=0, device=torch.device("cpu"))
    sources = _spy_sources(monkeypatch)

    supcon = train("supcon", data, data.train, config=SupConConfig(epochs=1, batch_size=6, knn_every=1, knn_k=3, optimizer=SGD), model_config=MODEL, run=run)
    ce = train("ce", data, data.train, config=CrossEntropyConfig(epochs=1, batch_size=6, optimizer=SGD), model_config=MODEL, run=run)
    crop = dataclasses.replace(LinearConfig().augmentation, policy="basic")
    probe = train("linear", data, data.train, config=LinearConfig(epochs=1, batch_size=6, augmentation=crop, optimizer=SGD), encoder=supcon.model.encoder, run=run)

    assert [type(s) for s in sources] == [JpegBatches] * 3
    assert [s.views for s in sources] == [2, None, None]  # SupCon's two views are two crops of the file
    assert 0 <= supcon.history[-1]["val/knn_top1"] <= 1 and np.isfinite(supcon.history[-1]["train/loss"])
    assert 0 <= ce.history[-1]["val/top1"] <= 1 and 0 <= probe.history[-1]["val/top1"] <= 1


def test_a_file_store_needs_a_policy_with_a_random_crop(tree, tmp_path):
    _prepare(tree, tmp_path / "store")
    data = load_prepared(tmp_path / "store", files_root=tree)
    config = CrossEntropyConfig(epochs=1, batch_size=6, augmentation=AugmentConfig(policy="none"), optimizer=SGD)

    with pytest.raises(ConfigError, match="ce.augmentation.policy = 'none' is not allowed"):
        train("ce", data, data.train, config=config, model_config=MODEL, run=RunContext(seed=0, device=torch.device("cpu")))
