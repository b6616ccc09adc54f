"""Readers for the released CIFAR-10/100-C and ImageNet-C sets, on tiny trees in their real layouts.

Pixels encode (corruption, severity, row), so each test can tell exactly which rows came back.
"""

import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.corruption import released
from pipeline.corruption.released import CifarC, ImageNetC, released_reader
from pipeline.errors import UserError

N = 4  # images per severity in the CIFAR-C fixtures (10,000 as released)
CIFAR_CORRUPTIONS = ("fog", "gaussian_noise", "jpeg_compression")


def write_cifar_c(root, corruptions=CIFAR_CORRUPTIONS, n=N, labels=None):
    """root/<corruption>.npy uint8 [5n, 32, 32, 3] and root/labels.npy uint8 [5n], as released.

    Pixel (0, 0) of row r is (severity, row within the severity, corruption number); the rest is
    seeded noise. Labels repeat one set of n test labels per severity unless given.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for k, corruption in enumerate(corruptions):
        array = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        rows = np.arange(5 * n)
        array[:, 0, 0] = np.stack([rows // n + 1, rows % n, np.full(5 * n, k)], axis=1)
        np.save(root / f"{corruption}.npy", array)
        arrays[corruption] = array
    if labels is None:
        labels = np.tile(rng.integers(0, 10, n, dtype=np.uint8), 5)
    np.save(root / "labels.npy", labels)
    arrays["labels"] = labels
    return arrays


def _one_line_error(match, fn, *args, **kw) -> str:
    with pytest.raises(UserError, match=match) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


def _collect(reader, corruption, severity, batch_size):
    batches = list(reader.batches(corruption, severity, batch_size))
    return batches, torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# ---- CIFAR-10-C / CIFAR-100-C ----


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar_c_returns_the_severity_rows_in_order(tmp_path, severity, batch_size):
    written = write_cifar_c(tmp_path / "c10c")
    reader = CifarC(tmp_path / "c10c", ["gaussian_noise", "fog"], [severity], images_per_severity=N)
    batches, images, labels = _collect(reader, "gaussian_noise", severity, batch_size)
    assert [len(x) for x, _ in batches] == [min(batch_size, N - i) for i in range(0, N, batch_size)]
    assert all(x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) for x, _ in batches)
    assert all(y.dtype == torch.int64 for _, y in batches)
    rows = slice((severity - 1) * N, severity * N)
    reference = torch.from_numpy(written["gaussian_noise"][rows]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    assert torch.equal(images, reference)
    assert images[:, :, 0, 0].tolist() == [[severity, i, 1] for i in range(N)]  # gaussian_noise is corruption 1
    assert labels.tolist() == written["labels"][rows].tolist()
    assert reader.num_images == N


def test_cifar_c_labels_come_from_the_severity_rows(tmp_path):
    labels = (np.arange(5 * N) * 3 % 10).astype(np.int64)  # differs per severity, unlike the release
    write_cifar_c(tmp_path / "c", labels=labels)
    reader = CifarC(tmp_path / "c", ["fog"], [1, 2, 3, 4, 5], images_per_severity=N)
    for severity in reader.severities:
        _, _, got = _collect(reader, "fog", severity, 3)
        assert got.tolist() == labels[(severity - 1) * N : severity * N].tolist()


def test_cifar_c_cells_and_attributes(tmp_path):
    write_cifar_c(tmp_path / "c")
    reader = CifarC(tmp_path / "c", ("jpeg_compression", "fog"), (5, 2), images_per_severity=N)
    assert reader.corruptions == ("jpeg_compression", "fog") and reader.severities == (5, 2)
    assert reader.cells() == [("jpeg_compression", 5), ("jpeg_compression", 2), ("fog", 5), ("fog", 2)]


def test_cifar_c_reads_through_memory_maps(tmp_path, monkeypatch):
    write_cifar_c(tmp_path / "c")
    modes = []
    real_load = np.load

    def spy(*args, **kw):
        modes.append(kw.get("mmap_mode"))
        return real_load(*args, **kw)

    monkeypatch.setattr(np, "load", spy)
    reader = CifarC(tmp_path / "c", ["fog"], [2], images_per_severity=N)
    list(reader.batches("fog", 2, 2))
    assert len(modes) >= 4 and set(modes) == {"r"}  # constructor and batches alike
    assert isinstance(real_load(tmp_path / "c" / "fog.npy", mmap_mode="r"), np.memmap)


def test_cifar_c_reader_pickles_small(tmp_path):
    write_cifar_c(tmp_path / "c", n=64)
    reader = CifarC(tmp_path / "c", list(CIFAR_CORRUPTIONS), [1], images_per_severity=64)
    assert len(pickle.dumps(reader)) < 2000  # holds paths, not arrays (DataLoader workers pickle it)


def test_cifar_c_missing_root_and_files(tmp_path):
    message = _one_line_error("no such folder", CifarC, tmp_path / "nope", ["fog"], [1], images_per_severity=N)
    assert str(tmp_path / "nope") in message
    write_cifar_c(tmp_path / "c")
    message = _one_line_error("no such file", CifarC, tmp_path / "c", ["snow"], [1], images_per_severity=N)
    assert str(tmp_path / "c" / "snow.npy") in message and "fog, gaussian_noise, jpeg_compression" in message
    (tmp_path / "c" / "labels.npy").unlink()
    message = _one_line_error("no such file", CifarC, tmp_path / "c", ["fog"], [1], images_per_severity=N)
    assert str(tmp_path / "c" / "labels.npy") in message


def test_cifar_c_wrong_shapes_and_dtypes(tmp_path):
    root = tmp_path / "c"
    write_cifar_c(root)
    message = _one_line_error("shape", CifarC, root, ["fog"], [1])  # default: 10,000 per severity
    assert str(root / "labels.npy") in message and "(50000,)" in message and "CIFAR-10-C" in message
    np.save(root / "labels.npy", np.zeros(50_000, dtype=np.uint8))
    message = _one_line_error("shape", CifarC, root, ["fog"], [1], name="CIFAR-100-C")
    assert f"{root / 'fog.npy'}: uint8 shape (20, 32, 32, 3), expected uint8 (50000, 32, 32, 3)" in message
    assert "CIFAR-100-C" in message
    write_cifar_c(root)
    np.save(root / "fog.npy", np.zeros((5 * N, 32, 32, 3), dtype=np.float32))
    message = _one_line_error("float32", CifarC, root, ["fog"], [1], images_per_severity=N)
    assert str(root / "fog.npy") in message
    np.save(root / "fog.npy", np.zeros((5 * N, 3, 32, 32), dtype=np.uint8))  # channels first: not as released
    assert str(root / "fog.npy") in _one_line_error("shape", CifarC, root, ["fog"], [1], images_per_severity=N)


def test_cifar_c_bad_labels(tmp_path):
    root = tmp_path / "c"
    write_cifar_c(root, labels=np.zeros(5 * N, dtype=np.float32))
    message = _one_line_error("integer labels", CifarC, root, ["fog"], [1], images_per_severity=N)
    assert str(root / "labels.npy") in message
    np.save(root / "labels.npy", np.full(5 * N, 10, dtype=np.int64))
    message = _one_line_error(r"\[0, 10\)", released_reader, "cifar10-c", root, ["fog"], [1], images_per_severity=N)
    assert str(root / "labels.npy") in message
    assert released_reader("cifar100-c", root, ["fog"], [1], images_per_severity=N).num_images == N
    np.save(root / "labels.npy", np.full(5 * N, -1, dtype=np.int64))
    assert "non-negative" in _one_line_error("labels range", CifarC, root, ["fog"], [1], images_per_severity=N)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a numpy file at all\nsecond line\n", "object"],
    ids=["empty", "garbage", "pickled-objects"],
)
def test_cifar_c_unreadable_npy(tmp_path, content):
    root = tmp_path / "c"
    write_cifar_c(root)
    if content == "object":
        np.save(root / "fog.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    else:
        (root / "fog.npy").write_bytes(content)
    message = _one_line_error("not a readable .npy", CifarC, root, ["fog"], [1], images_per_severity=N)
    assert message.startswith(f"{root / 'fog.npy'}: ")


def test_cifar_c_npz_under_npy_name(tmp_path):
    root = tmp_path / "c"
    write_cifar_c(root)
    with open(root / "fog.npy", "wb") as f:
        np.savez(f, x=np.zeros(3))
    assert str(root / "fog.npy") in _one_line_error("NpzFile", CifarC, root, ["fog"], [1], images_per_severity=N)


@pytest.mark.parametrize(
    ("corruptions", "severities", "match"),
    [([], [1], "corruptions"), (["fog"], [0], "severities"), (["fog"], [6], "severities"),
     (["fog"], ["1"], "severities"), (["fog"], [], "severities"), (["fog"], [2.0], "severities")],
)
def test_cifar_c_bad_request(tmp_path, corruptions, severities, match):
    write_cifar_c(tmp_path / "c")
    _one_line_error(match, CifarC, tmp_path / "c", corruptions, severities, images_per_severity=N)


def test_batches_rejects_unrequested_cells_and_bad_batch_size(tmp_path):
    write_cifar_c(tmp_path / "c")
    reader = CifarC(tmp_path / "c", ["fog"], [1, 2], images_per_severity=N)
    _one_line_error("not requested", reader.batches, "gaussian_noise", 1, 2)  # raised at the call, not on next()
    _one_line_error("not requested", reader.batches, "fog", 3, 2)
    _one_line_error("batch_size", reader.batches, "fog", 1, 0)


# ---- ImageNet-C ----

WNIDS = ("n01440764", "n01443537")
CLASS_TO_INDEX = {"n09999999": 0, "n01443537": 1, "n01440764": 2}  # not alphabetical: labels come from it


def _color(corruption_number, severity, class_number, image_number):
    """A solid colour coding the image; spaced out so JPEG rounding cannot blur two codes together."""
    return (40 * severity, 100 * class_number + 30 * image_number, 60 + 80 * corruption_number)


def write_imagenet_c(root, corruptions=("fog", "snow"), severities=(1, 2, 3, 4, 5), per_class=2, size=(24, 20)):
    """root/<corruption>/<severity>/<wnid>/<name>.JPEG, solid colours from `_color`, plus files to skip."""
    for k, corruption in enumerate(corruptions):
        for severity in severities:
            for c, wnid in enumerate(WNIDS):
                folder = root / corruption / str(severity) / wnid
                folder.mkdir(parents=True)
                for i in range(per_class):
                    image = Image.new("RGB", size, _color(k, severity, c, i))
                    image.save(folder / f"ILSVRC2012_val_{c:04d}{i:04d}.JPEG", quality=95)
                (folder / "notes.txt").write_text("not an image")
                Image.new("RGB", size).save(folder / ".hidden.JPEG")


def _assert_close(images, expected_colors):
    got = images[:, :, images.shape[2] // 2, images.shape[3] // 2].to(torch.int64)
    assert (got - torch.tensor(expected_colors)).abs().max() <= 3


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7])
def test_imagenet_c_returns_the_cell_in_sorted_order(tmp_path, batch_size):
    write_imagenet_c(tmp_path / "inc")
    reader = ImageNetC(tmp_path / "inc", ["snow", "fog"], [4, 2], CLASS_TO_INDEX)
    assert reader.cells() == [("snow", 4), ("snow", 2), ("fog", 4), ("fog", 2)] and reader.num_images == 4
    batches, images, labels = _collect(reader, "snow", 2, batch_size)
    assert [len(x) for x, _ in batches] == [min(batch_size, 4 - i) for i in range(0, 4, batch_size)]
    assert all(x.dtype == torch.uint8 and x.shape[1:] == (3, 20, 24) for x, _ in batches)
    assert all(y.dtype == torch.int64 for _, y in batches)
    assert labels.tolist() == [2, 2, 1, 1]  # n01440764 first (sorted folders), labels from CLASS_TO_INDEX
    _assert_close(images, [_color(1, 2, c, i) for c in range(2) for i in range(2)])  # snow is corruption 1
    files = sorted((tmp_path / "inc/snow/2").glob("*/ILSVRC*.JPEG"))
    reference = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in files])
    assert torch.equal(images, torch.from_numpy(reference))


def test_imagenet_c_grayscale_becomes_rgb(tmp_path):
    write_imagenet_c(tmp_path / "inc", corruptions=("fog",), severities=(1,))
    folder = tmp_path / "inc/fog/1" / WNIDS[0]
    Image.new("L", (24, 20), 90).save(folder / "ILSVRC2012_val_00000000.JPEG")
    _, images, _ = _collect(ImageNetC(tmp_path / "inc", ["fog"], [1], CLASS_TO_INDEX), "fog", 1, 4)
    assert images.shape == (4, 3, 20, 24)
    _assert_close(images[:1], [(90, 90, 90)])


def test_imagenet_c_via_factory(tmp_path):
    write_imagenet_c(tmp_path / "inc", corruptions=("fog",), severities=(3,))
    reader = released_reader("imagenet-c", tmp_path / "inc", ["fog"], [3], class_to_index=CLASS_TO_INDEX)
    assert isinstance(reader, ImageNetC) and reader.cells() == [("fog", 3)]


def test_imagenet_c_missing_folders(tmp_path):
    root = tmp_path / "inc"
    assert str(root) in _one_line_error("no such folder", ImageNetC, root, ["fog"], [1], CLASS_TO_INDEX)
    write_imagenet_c(root, severities=(1, 2))
    message = _one_line_error("no such folder", ImageNetC, root, ["fog"], [1, 3], CLASS_TO_INDEX)
    assert message.startswith(f"{root / 'fog' / '3'}: ")
    assert str(root / "brightness" / "1") in _one_line_error("no such", ImageNetC, root, ["brightness"], [1], {})
    (root / "fog" / "4").mkdir()
    (root / "fog" / "4" / "stray.JPEG").write_bytes(b"")
    message = _one_line_error("no class folders", ImageNetC, root, ["fog"], [4], CLASS_TO_INDEX)
    assert message.startswith(f"{root / 'fog' / '4'}: ")


def test_imagenet_c_unknown_wnid_and_empty_class(tmp_path):
    root = tmp_path / "inc"
    write_imagenet_c(root, severities=(1,))
    message = _one_line_error("not among the 2 classes", ImageNetC, root, ["fog"], [1], {"n01443537": 0, "x": 1})
    assert message.startswith(f"{root / 'fog' / '1' / 'n01440764'}: class 'n01440764'")
    (root / "snow" / "1" / "n09999999").mkdir()
    message = _one_line_error("no images", ImageNetC, root, ["fog", "snow"], [1], CLASS_TO_INDEX)
    assert message.startswith(f"{root / 'snow' / '1' / 'n09999999'}: ")


def test_imagenet_c_cells_must_hold_the_same_count(tmp_path):
    root = tmp_path / "inc"
    write_imagenet_c(root, severities=(1, 2))
    (root / "fog" / "2" / WNIDS[1] / "ILSVRC2012_val_00010001.JPEG").unlink()
    message = _one_line_error("3 images", ImageNetC, root, ["fog"], [1, 2], CLASS_TO_INDEX)
    assert message.startswith(f"{root / 'fog' / '2'}: ") and "has 4" in message
    reader = ImageNetC(root, ["fog", "snow"], [1], CLASS_TO_INDEX)
    (root / "snow" / "1" / WNIDS[0] / "ILSVRC2012_val_00000000.JPEG").unlink()  # changed after construction
    _one_line_error("3 images", reader.batches, "snow", 1, 2)


def test_imagenet_c_sizes_must_match_within_a_batch(tmp_path):
    root = tmp_path / "inc"
    write_imagenet_c(root, corruptions=("fog",), severities=(1,))
    odd = root / "fog" / "1" / WNIDS[1] / "ILSVRC2012_val_00010000.JPEG"
    for name in (odd.name, "ILSVRC2012_val_00010001.JPEG"):  # the whole second class is wider
        Image.new("RGB", (30, 20), (1, 2, 3)).save(odd.parent / name)
    reader = ImageNetC(root, ["fog"], [1], CLASS_TO_INDEX)
    message = _one_line_error("30x20 pixels", lambda: list(reader.batches("fog", 1, 4)))
    assert message.startswith(f"{odd}: ") and "24x20" in message
    assert [x.shape[3] for x, _ in reader.batches("fog", 1, 2)] == [24, 30]  # batches of their own size are fine


def test_imagenet_c_undecodable_file(tmp_path):
    root = tmp_path / "inc"
    write_imagenet_c(root, corruptions=("fog",), severities=(1,))
    bad = root / "fog" / "1" / WNIDS[0] / "ILSVRC2012_val_00000001.JPEG"
    bad.write_bytes(b"\xff\xd8 truncated\nJPEG")
    reader = ImageNetC(root, ["fog"], [1], CLASS_TO_INDEX)
    assert _one_line_error("cannot decode", lambda: list(reader.batches("fog", 1, 4))).startswith(f"{bad}: ")


# ---- factory ----


def test_factory_kinds(tmp_path):
    write_cifar_c(tmp_path / "c")
    for kind, name in (("cifar10-c", "CIFAR-10-C"), ("cifar100-c", "CIFAR-100-C")):
        reader = released_reader(kind, tmp_path / "c", ["fog"], [1], images_per_severity=N)
        assert isinstance(reader, CifarC) and reader.name == name
    assert released.RELEASED_KINDS == ("cifar10-c", "cifar100-c", "imagenet-c")
    message = _one_line_error("unknown", released_reader, "cifar10c", tmp_path / "c", ["fog"], [1])
    assert "'cifar10c'" in message and "cifar10-c, cifar100-c, imagenet-c" in message


# ---- content: what a store records of a release, wherever it lives ----


def test_content_is_the_same_for_copies_in_other_folders_and_changes_with_the_files(tmp_path):
    write_cifar_c(tmp_path / "a" / "c10c")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    here, there = (CifarC(tmp_path / where / "c10c", ["fog"], [1, 2], images_per_severity=N).content() for where in ("a", "b"))
    assert here == there and str(tmp_path) not in str(here)
    np.save(tmp_path / "b" / "c10c" / "labels.npy", np.tile(np.arange(N, dtype=np.uint8), 5))  # other labels, same size
    assert CifarC(tmp_path / "b" / "c10c", ["fog"], [1, 2], images_per_severity=N).content() != here

    write_imagenet_c(tmp_path / "a" / "inc")
    shutil.copytree(tmp_path / "a" / "inc", tmp_path / "b" / "inc")
    here, there = (ImageNetC(tmp_path / where / "inc", ["fog"], [1, 3], CLASS_TO_INDEX).content() for where in ("a", "b"))
    assert here == there and here["images_per_cell"] == 4
    moved = tmp_path / "b" / "inc" / "fog" / "3" / WNIDS[0]
    first = sorted(moved.glob("ILSVRC2012_val_*.JPEG"))[0]
    first.rename(moved / "ILSVRC2012_val_renamed.JPEG")
    assert ImageNetC(tmp_path / "b" / "inc", ["fog"], [1, 3], CLASS_TO_INDEX).content() != here


def test_cifar_c_labels_outside_the_models_classes_are_one_line(tmp_path):
    write_cifar_c(tmp_path / "c100c", labels=np.tile(np.array([3, 99, 50, 7], dtype=np.uint8), 5))
    message = _one_line_error(r"labels range over \[3, 99\], but the models scored have 10 classes", released_reader, "cifar100-c", tmp_path / "c100c", ["fog"], [1], images_per_severity=N, model_classes=10)
    assert "CIFAR-100-C corrupts another dataset than data.dataset" in message
    assert released_reader("cifar100-c", tmp_path / "c100c", ["fog"], [1], images_per_severity=N, model_classes=100).num_images == N
