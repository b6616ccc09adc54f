"""Reader for the IDX format (LeCun's MNIST files), gzipped or not.

Layout: two zero bytes, a type code, the number of dims, then one big-endian uint32 per dim,
then the values in C order, big-endian. http://yann.lecun.com/exdb/mnist/
"""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

_GZIP_MAGIC = b"\x1f\x8b"
_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic (whatever its name)."""
    data = path.read_bytes()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path}: corrupt gzip data ({err}); re-download or reinstall the file") from err


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """IDX bytes -> array of the declared dtype (native byte order) and shape."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _TYPES:
        raise UserError(f"{name}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype, ndim = _TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise UserError(f"{name}: IDX size mismatch: header says {shape} ({expected} bytes), file has {len(data)}")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a copy: writable, native byte order


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) from disk."""
    return parse_idx(_read_bytes(path), str(path))
