"""load_prepared on damaged stores: every failure is one UserError line naming the file and the fix.

One valid store is prepared from the Fashion-MNIST fixtures per module; each test damages its own
copy on disk (delete, truncate, overwrite bytes, rewrite with wrong content) and loads it.
"""

import json
import re
import shutil

import numpy as np
import pytest
from fixtures_data import write_fashion_mnist

from pipeline.data.prepared import SPLITS, load_prepared, prepare_dataset
from pipeline.data.store_io import load_npy
from pipeline.errors import UserError

ARRAYS = [f"{split}_{kind}.npy" for split in SPLITS for kind in ("images", "labels")]
FILES = ["manifest.json", *ARRAYS, "subsets.npz"]
STAGE = "the prepare stage (`dvc repro prepare`)"
FIX = f"rerun {STAGE}"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """50 train, 10 val and 20 test images of 1x28x28; subsets for fractions 0.1 and 0.5."""
    root = tmp_path_factory.mktemp("prepared")
    write_fashion_mnist(root / "raw", train_per_class=6, test_per_class=2)
    prepare_dataset(
        "fashion_mnist", root=str(root / "raw"), download=False, image_size=None,
        val_fraction=0.2, fractions=[0.1, 0.5], seed=0, out_dir=root / "store",
    )  # fmt: skip
    return root / "store"


@pytest.fixture
def store(pristine, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(pristine, copy)
    return copy


def _fails(store, name, pattern, mmap=True):
    """load_prepared raises one UserError line: '<store>/<name>: <pattern ...>; delete <store> and rerun ...'."""
    with pytest.raises(UserError) as caught:
        load_prepared(store, mmap=mmap)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{store / name}: "), message
    assert re.search(pattern, message), message
    assert message.endswith(f"; delete {store} and {FIX}"), message
    return message


def _cut(path, size):
    path.write_bytes(path.read_bytes()[:size])


def _overwrite(path, offset, data):
    content = bytearray(path.read_bytes())
    content[offset : offset + len(data)] = data
    path.write_bytes(bytes(content))


def _edit_manifest(store, edit):
    manifest = json.loads((store / "manifest.json").read_text())
    edit(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))


def _save_npz(path, **arrays):
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to a str path
        np.savez(f, **arrays)


@pytest.mark.parametrize("mmap", [True, False])
def test_pristine_store_loads(pristine, mmap):
    data = load_prepared(pristine, mmap=mmap)
    assert (len(data.train), len(data.val), len(data.test)) == (50, 10, 20) and sorted(data.subsets) == [0.1, 0.5]


def test_checks_keep_images_memory_mapped(pristine):
    """The checks read headers only: images stay copy-on-write memmaps, as before they existed."""
    shape, dtype = (50, 1, 28, 28), np.dtype(np.uint8)
    mapped = load_npy(pristine / "train_images.npy", pristine, shape, dtype, mmap=True)
    loaded = load_npy(pristine / "train_images.npy", pristine, shape, dtype, mmap=False)
    assert isinstance(mapped, np.memmap) and mapped.mode == "c" and not isinstance(loaded, np.memmap)


def test_store_that_was_never_prepared(tmp_path):
    with pytest.raises(UserError) as caught:
        load_prepared(tmp_path / "nope")
    assert str(caught.value) == f"{tmp_path / 'nope'}: no prepared dataset here (no manifest.json); run {STAGE}"


@pytest.mark.parametrize("name", FILES)
def test_missing_file(store, name):
    (store / name).unlink()
    _fails(store, name, r"^\S+: missing;")


# --- manifest.json ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),
        lambda p: _cut(p, p.stat().st_size // 2),
        lambda p: p.write_bytes(b"\x89\xff\xfe garbage \x00\x01"),  # not even UTF-8
        lambda p: _overwrite(p, 0, b"#"),
    ],
    ids=["empty", "truncated", "garbage", "first byte"],
)
def test_manifest_not_json(store, damage):
    damage(store / "manifest.json")
    _fails(store, "manifest.json", r"not valid JSON \(.+\)")


def test_manifest_not_an_object(store):
    (store / "manifest.json").write_text("[1, 2, 3]")
    _fails(store, "manifest.json", "holds a JSON list, expected an object")


@pytest.mark.parametrize("version, shown", [(2, "2"), ("1", "'1'"), (None, "None"), ("absent", "missing")])
def test_manifest_wrong_format_version(store, version, shown):
    _edit_manifest(store, lambda m: m.pop("format_version") if version == "absent" else m.update(format_version=version))
    _fails(store, "manifest.json", rf"format_version is {shown}, this code reads 1")


@pytest.mark.parametrize("key", ["class_names", "image_shape", "split_sizes", "subset_sizes", "mean", "std"])
def test_manifest_missing_key(store, key):
    _edit_manifest(store, lambda m: m.pop(key))
    _fails(store, "manifest.json", f"lacks {key};")


def test_manifest_missing_keys_are_all_named(store):
    _edit_manifest(store, lambda m: [m.pop(k) for k in ("split_sizes", "mean")])
    _fails(store, "manifest.json", "lacks split_sizes, mean;")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("class_names", [], "a non-empty list of names"),
        ("image_shape", [1, 28], r"\[C, H, W\] of positive integers"),
        ("image_shape", [1, 0, 28], r"\[C, H, W\] of positive integers"),
        ("split_sizes", {"train": 50, "test": 20}, r"an image count per split \(train, val, test\)"),
        ("split_sizes", {"train": 50, "val": -1, "test": 20}, "an image count per split"),
        ("split_sizes", {"train": 50, "val": True, "test": 20}, "an image count per split"),
        ("subset_sizes", {"half": 25}, r"an index count per label fraction in \(0, 1\]"),
        ("subset_sizes", {"0.5": "25"}, "an index count per label fraction"),
        ("mean", [0.5, 0.5, 0.5], "1 numbers, one per channel"),
        ("std", "0.25", "1 numbers, one per channel"),
    ],
)
def test_manifest_malformed_field(store, key, value, expected):
    _edit_manifest(store, lambda m: m.update({key: value}))
    _fails(store, "manifest.json", rf"{key} is .*, expected {expected}")


def test_manifest_huge_bad_field_is_shown_cut_short(store):
    _edit_manifest(store, lambda m: m.update(class_names=["x"] * 100_000 + [7]))
    message = _fails(store, "manifest.json", r"class_names is \['x', 'x', .*\.\.\., expected a non-empty list of names")
    assert len(message) < 300 + 2 * len(str(store))


# --- the six .npy arrays ---------------------------------------------------------------------


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize(
    "keep",
    [lambda n: 0, lambda n: 5, lambda n: 60, lambda n: 128, lambda n: n // 2, lambda n: n - 1],
    ids=["empty", "in magic", "in header", "header only", "half", "last byte"],
)
def test_truncated_array(store, name, keep, mmap):
    _cut(store / name, keep((store / name).stat().st_size))
    _fails(store, name, r"truncated", mmap=mmap)


def test_truncated_data_says_how_much_is_missing(store):
    _cut(store / "test_images.npy", 128 + 1000)
    _fails(store, "test_images.npy", rf"truncated \(1128 bytes, its header needs {128 + 20 * 28 * 28}\)")


@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize("offset", [0, 8, 20], ids=["magic", "header length", "header dict"])
def test_garbage_header(store, name, offset):
    _overwrite(store / name, offset, b"\xde\xad\xbe\xef garbage")
    _fails(store, name, r"truncated or not a \.npy file \(.+\)")


@pytest.mark.parametrize("name", ARRAYS)
def test_garbage_file(store, name):
    size = (store / name).stat().st_size
    (store / name).write_bytes(np.random.default_rng(0).bytes(size))
    _fails(store, name, r"not a \.npy file")


def test_npz_where_npy_belongs(store):
    _save_npz(store / "val_labels.npy", a=np.zeros(10, np.int64))
    _fails(store, "val_labels.npy", r"not a \.npy file")


@pytest.mark.parametrize("name", ARRAYS)
def test_trailing_bytes(store, name):
    with open(store / name, "ab") as f:
        f.write(b"\x00" * 3)
    _fails(store, name, r"has extra bytes after the array \(\d+ bytes, its header needs \d+\)")


@pytest.mark.parametrize(
    "name, array, found, expected",
    [
        ("train_images.npy", np.zeros((3, 1, 28, 28), np.uint8), r"uint8 \[3, 1, 28, 28\]", r"uint8 \[50, 1, 28, 28\]"),
        ("val_images.npy", np.zeros((10, 1, 28, 27), np.uint8), r"uint8 \[10, 1, 28, 27\]", r"uint8 \[10, 1, 28, 28\]"),
        ("test_images.npy", np.zeros((20, 3, 28, 28), np.uint8), r"uint8 \[20, 3, 28, 28\]", r"uint8 \[20, 1, 28, 28\]"),
        ("test_images.npy", np.zeros((20, 1, 28, 28), np.float32), r"float32 \[20, 1, 28, 28\]", r"uint8 \[20, 1, 28, 28\]"),
        ("train_labels.npy", np.zeros(50, np.int32), r"int32 \[50\]", r"int64 \[50\]"),
        ("val_labels.npy", np.zeros(11, np.int64), r"int64 \[11\]", r"int64 \[10\]"),
        ("test_labels.npy", np.zeros(20, ">i8"), r">i8 \[20\]", r"int64 \[20\]"),
    ],
)
def test_wrong_shape_or_dtype(store, name, array, found, expected):
    np.save(store / name, array)
    _fails(store, name, rf"holds {found}, expected {expected} from manifest\.json")


def test_split_size_disagrees_with_manifest(store):
    _edit_manifest(store, lambda m: m["split_sizes"].update(val=9))
    _fails(store, "val_images.npy", r"holds uint8 \[10, 1, 28, 28\], expected uint8 \[9, 1, 28, 28\]")


@pytest.mark.parametrize("bad", [10, -1])
def test_labels_outside_the_classes(store, bad):
    labels = np.load(store / "test_labels.npy")
    labels[3] = bad
    np.save(store / "test_labels.npy", labels)
    _fails(store, "test_labels.npy", rf"labels span \[{min(bad, 0)}, {max(bad, 9)}\], outside the 10 classes")


# --- subsets.npz -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: _cut(p, 0),
        lambda p: _cut(p, 30),
        lambda p: _cut(p, p.stat().st_size // 2),
        lambda p: _cut(p, p.stat().st_size - 1),
        lambda p: _overwrite(p, 0, b"garbage!"),
        lambda p: _overwrite(p, p.read_bytes().rfind(b"\x93NUMPY") + 130, b"garbage!"),  # array data: bad CRC
        lambda p: p.write_bytes(np.random.default_rng(1).bytes(500)),
    ],
    ids=["empty", "in first header", "half", "last byte", "local header", "member data", "random"],
)
def test_corrupt_subsets(store, damage):
    damage(store / "subsets.npz")
    _fails(store, "subsets.npz", r"truncated or not a \.npz archive \(.+\)")


def test_npy_where_npz_belongs(store):
    with open(store / "subsets.npz", "wb") as f:  # a file object: np.save would append .npy to the name
        np.save(f, np.arange(5))
    _fails(store, "subsets.npz", r"not a \.npz archive \(a single \.npy array, not an archive\)")


def test_subsets_missing_a_listed_fraction(store):
    with np.load(store / "subsets.npz") as archive:
        _save_npz(store / "subsets.npz", **{"0.1": archive["0.1"]})
    _fails(store, "subsets.npz", r"holds fractions 0\.1, but manifest\.json lists 0\.1, 0\.5")


def test_subsets_with_an_unlisted_fraction(store):
    with np.load(store / "subsets.npz") as archive:
        _save_npz(store / "subsets.npz", **{k: archive[k] for k in archive.files}, **{"0.25": np.arange(13)})
    _fails(store, "subsets.npz", r"holds fractions 0\.1, 0\.25, 0\.5, but manifest\.json lists 0\.1, 0\.5")


@pytest.mark.parametrize(
    "indices, problem",
    [
        (np.arange(10, dtype=np.int32), r"fraction 0\.1 holds int32 \[10\], expected int64 \[10\]"),
        (np.arange(11), r"fraction 0\.1 holds int64 \[11\], expected int64 \[10\]"),
        (np.append(np.arange(9), 50), r"fraction 0\.1 indexes outside the 50 train images"),
        (np.append(-1, np.arange(9)), r"fraction 0\.1 indexes outside the 50 train images"),
        (np.array([object()] * 10), r"truncated or not a \.npz archive \(Object arrays cannot be loaded"),
    ],
)
def test_subset_indices_do_not_fit(store, indices, problem):
    with np.load(store / "subsets.npz") as archive:
        _save_npz(store / "subsets.npz", **{"0.1": indices, "0.5": archive["0.5"]})
    _fails(store, "subsets.npz", problem)


def test_fraction_that_was_not_prepared_lists_the_prepared_ones(pristine):
    data = load_prepared(pristine)
    with pytest.raises(UserError) as caught:
        data.subset(0.25)
    message = str(caught.value)
    assert message.startswith(f"{pristine / 'subsets.npz'}: label fraction 0.25 was not prepared (prepared: 0.1, 0.5)")
    assert FIX in message and "\n" not in message


# --- whatever the damage, never a traceback ----------------------------------------------------


def _load_or_user_error(store):
    """Loading either succeeds (damage the format cannot see) or raises a one-line UserError."""
    try:
        load_prepared(store)
    except UserError as err:
        assert "\n" not in str(err) and str(err).startswith(str(store))


@pytest.mark.parametrize("name", FILES)
def test_cuts_all_through_every_file(store, name):
    original = (store / name).read_bytes()
    # up to the last byte but one: manifest.json without its final newline is still valid JSON
    for size in range(0, len(original) - 1, max(1, len(original) // 50)):
        (store / name).write_bytes(original[:size])
        with pytest.raises(UserError, match=re.escape(str(store / name))):
            load_prepared(store)


@pytest.mark.parametrize("name", FILES)
def test_byte_flips(store, name):
    """Flip each byte of subsets.npz and of the .npy headers (the data is unchecked pixels), every
    third byte of manifest.json; a flip the format cannot see must load, any other fail cleanly."""
    original = (store / name).read_bytes()
    offsets = range(0, len(original), 3) if name == "manifest.json" else range(128 if name in ARRAYS else len(original))
    for offset in offsets:
        flipped = bytearray(original)
        flipped[offset] ^= 0xFF
        (store / name).write_bytes(bytes(flipped))
        _load_or_user_error(store)


def test_manifest_in_another_encoding(store):
    text = (store / "manifest.json").read_text()
    (store / "manifest.json").write_bytes(text.replace("Trouser", "Trous\xe9r").encode("latin-1"))
    _fails(store, "manifest.json", r"not valid JSON \(.+\)")
