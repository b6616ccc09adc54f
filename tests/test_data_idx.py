"""IDX parsing against arrays written with hand-built headers."""

import gzip

import numpy as np
import pytest
from fixtures_data import idx_bytes, write_idx

from pipeline.data.idx import parse_idx, read_idx
from pipeline.errors import UserError


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_images_and_labels(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "img", images, gz)), images)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "lab", labels, gz)), labels)


def test_big_endian_types_are_decoded_to_native_values():
    values = np.array([[1, -2], [300000, 7]], dtype=">i4")
    data = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") * 2 + values.tobytes()
    parsed = parse_idx(data)
    assert parsed.dtype.byteorder in "=|<" and parsed.tolist() == [[1, -2], [300000, 7]]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x01\x08\x01" + bytes(8), "bad magic"),
        (b"\x00\x00\x07\x01" + bytes(8), "bad magic"),
        (b"", "bad magic"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "size mismatch"),
        (idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00", "size mismatch"),
    ],
)
def test_corrupt_idx_raises_user_error(data, message):
    with pytest.raises(UserError, match=message):
        parse_idx(data, "x.idx")


def test_corrupt_gzip_raises_user_error_naming_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 2, 2), np.uint8)))[:-6])
    with pytest.raises(UserError, match=str(path)):
        read_idx(path)
