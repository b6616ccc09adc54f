"""ImageFolder and ImageNet readers on PNG trees, and the resize + center-crop helpers."""

import hashlib

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from fixtures_data import write_image_tree
from PIL import Image

from pipeline.data import imagefolder
from pipeline.data.imagefolder import load_imagefolder, load_imagenet
from pipeline.data.resize import resize_batch, resize_center_crop
from pipeline.errors import UserError

TREE = {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}}


def _load(root, tmp_path, image_size=16, loader=load_imagefolder):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return loader(root=str(root), download=False, image_size=image_size, workdir=work)


def test_reads_tree_resized_and_labelled(tmp_path):
    write_image_tree(tmp_path / "d", TREE)
    raw = _load(tmp_path / "d", tmp_path)
    assert raw.class_names == ("cat", "dog")
    assert raw.train_images.shape == (5, 3, 16, 16) and raw.test_images.shape == (3, 3, 16, 16)
    assert raw.train_labels.tolist() == [0, 0, 0, 1, 1] and raw.test_labels.tolist() == [0, 1, 1]
    expected = TF.center_crop(TF.resize(Image.open(tmp_path / "d/train/dog/img1.png").convert("RGB"), 16), 16)
    np.testing.assert_array_equal(raw.train_images[4], np.asarray(expected).transpose(2, 0, 1))


def test_tree_digest_is_sha256sum_listing(tmp_path):
    write_image_tree(tmp_path / "d", TREE)
    raw = _load(tmp_path / "d", tmp_path)
    train = tmp_path / "d" / "train"
    files = sorted(p.relative_to(train).as_posix() for p in train.rglob("*.png"))
    listing = "".join(f"{hashlib.sha256((train / f).read_bytes()).hexdigest()}  {f}\n" for f in files)
    assert raw.sources[0].sha256 == hashlib.sha256(listing.encode()).hexdigest() and raw.sources[0].files == 5


def test_grayscale_kept_only_when_every_image_is(tmp_path):
    write_image_tree(tmp_path / "g", TREE, mode="L")
    assert _load(tmp_path / "g", tmp_path).train_images.shape[1] == 1
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / "g/test/cat/red.png")
    mixed = _load(tmp_path / "g", tmp_path)
    assert mixed.train_images.shape[1] == 3 and mixed.test_images[1, :, 0, 0].tolist() == [255, 0, 0]  # cat: img0, red


def test_val_used_when_no_test(tmp_path):
    write_image_tree(tmp_path / "d", {"train": TREE["train"], "val": {"dog": 1}})
    assert _load(tmp_path / "d", tmp_path).test_labels.tolist() == [1]


def test_pool_decoding_matches_serial(tmp_path, monkeypatch):
    write_image_tree(tmp_path / "d", TREE)
    serial = _load(tmp_path / "d", tmp_path)
    monkeypatch.setattr(imagefolder, "_POOL_MIN_IMAGES", 1)
    (tmp_path / "work").rename(tmp_path / "work_serial")  # keep the serial memmaps alive and separate
    pooled = _load(tmp_path / "d", tmp_path)
    np.testing.assert_array_equal(pooled.train_images, serial.train_images)
    assert pooled.sources == serial.sources


@pytest.mark.parametrize(
    "tree, image_size, message",
    [
        (TREE, None, "data.image_size must be set"),
        ({"train": {"cat": 1}}, 16, "neither test/ nor val/"),
        ({"test": {"cat": 1}}, 16, "no train/ folder"),
        ({"train": {"cat": 1, "dog": 0}, "test": {"cat": 1}}, 16, "without images: dog"),
        ({"train": {"cat": 1}, "test": {"cow": 1}}, 16, "classes not in .*train: cow"),
    ],
)
def test_bad_trees_raise_user_error(tmp_path, tree, image_size, message):
    write_image_tree(tmp_path / "d", tree)
    with pytest.raises(UserError, match=message):
        _load(tmp_path / "d", tmp_path, image_size=image_size)


def test_undecodable_image_is_named(tmp_path):
    write_image_tree(tmp_path / "d", TREE)
    (tmp_path / "d/train/cat/broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="broken.png"):
        _load(tmp_path / "d", tmp_path)


def test_imagenet_needs_val_sorted_into_wnid_folders(tmp_path):
    write_image_tree(tmp_path / "in", {"train": {"n01440764": 2, "n01443537": 2}, "val": {"n01440764": 1}})
    with pytest.raises(UserError, match="no folder for 1 train classes"):
        _load(tmp_path / "in", tmp_path, loader=load_imagenet)
    Image.new("RGB", (8, 8)).save(tmp_path / "in/val/ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(UserError, match="valprep"):
        _load(tmp_path / "in", tmp_path, loader=load_imagenet)
    (tmp_path / "in/val/ILSVRC2012_val_00000001.JPEG").rename(tmp_path / "in/val/n01443537.JPEG")
    (tmp_path / "in/val/n01443537").mkdir()
    (tmp_path / "in/val/n01443537.JPEG").rename(tmp_path / "in/val/n01443537/a.JPEG")
    raw = _load(tmp_path / "in", tmp_path, loader=load_imagenet)
    assert raw.class_names == ("n01440764", "n01443537") and raw.test_labels.tolist() == [0, 1]


@pytest.mark.parametrize("width, height", [(40, 20), (20, 40), (16, 16), (33, 17)])
def test_resize_center_crop_matches_torchvision(width, height):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    expected = TF.center_crop(TF.resize(image, 16), 16)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(image, 16)), np.asarray(expected))


def test_resize_batch_matches_torchvision_on_tensors():
    images = np.random.default_rng(1).integers(0, 256, (5, 3, 28, 28), dtype=np.uint8)
    for size in (14, 40):
        expected = TF.center_crop(TF.resize(torch.from_numpy(images), size, antialias=True), size).numpy()
        assert np.abs(resize_batch(images, size).astype(int) - expected.astype(int)).max() <= 1
    assert resize_batch(images, 28) is images
