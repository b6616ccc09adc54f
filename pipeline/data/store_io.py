"""Read the prepared store's files, turning any damage into one UserError line.

A store can be left broken by a full disk, an interrupted copy or sync, or a hand edit; without
these checks training would die deep inside numpy or zipfile with a traceback. Every error names
the damaged file and the fix: delete the store and rerun the prepare stage.
"""

import json
import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tokenize import TokenError

import numpy as np

from pipeline.errors import UserError

PREPARE = "the prepare stage (`dvc repro prepare`)"
_NOT_NPY = "truncated or not a .npy file"
_NOT_NPZ = "truncated or not a .npz archive"
# np.save writes version 1.0, or 2.0 for headers over 64 KiB; 3.0 only for non-ASCII field names
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(err: BaseException) -> str:
    """An exception's message on one line and cut short: numpy quotes whole (garbage) headers."""
    return _shorten(" ".join(str(err).split()) or type(err).__name__, 160)


def short_repr(value: object) -> str:
    """repr() cut short: a damaged manifest may hold megabytes in one field."""
    return _shorten(repr(value), 80)


def broken(path: Path, store: Path, problem: str, rerun: str = PREPARE) -> UserError:
    """The error for a damaged store file; newlines escaped so stages print exactly one line."""
    message = f"{path}: {problem}; delete {store} and rerun {rerun}"
    return UserError(message.replace("\n", "\\n").replace("\r", "\\r"))


@contextmanager
def _reading(path: Path, store: Path, damaged: str, rerun: str = PREPARE) -> Iterator[None]:
    """Turn what numpy, json and zipfile raise on bad bytes into `broken(path, ...)`."""
    try:
        yield
    except OSError as err:  # permissions, I/O errors: not the bytes' fault, so say so
        raise broken(path, store, f"cannot be read ({one_line(err)})", rerun) from err
    # SyntaxError, TokenError: numpy tokenizes a header it cannot parse (for Python 2 files) and
    # lets those escape; RuntimeError: zipfile's answer to a flipped compression or encryption flag
    except (ValueError, EOFError, SyntaxError, TokenError, RuntimeError, zipfile.BadZipFile, zlib.error) as err:
        raise broken(path, store, f"{damaged} ({one_line(err)})", rerun) from err


def _require_file(path: Path, store: Path, rerun: str = PREPARE) -> None:
    if not path.is_file():
        raise broken(path, store, "missing", rerun)


def read_json_object(path: Path, store: Path, rerun: str = PREPARE) -> dict:
    """A JSON file whose top level must be an object."""
    _require_file(path, store, rerun)
    with _reading(path, store, "not valid JSON", rerun):
        content = json.loads(path.read_bytes())  # bytes: undecodable garbage is a ValueError too
    if not isinstance(content, dict):
        raise broken(path, store, f"holds a JSON {type(content).__name__}, expected an object", rerun)
    return content


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) from a .npy header; the data itself is not read."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in _HEADER_READERS:
            raise ValueError(f".npy format version {version} is not one the prepare stage writes")
        shape, _, dtype = _HEADER_READERS[version](f)
        return tuple(shape), dtype, f.tell()


def load_npy(path: Path, store: Path, shape: tuple[int, ...], dtype: np.dtype, mmap: bool, rerun: str = PREPARE) -> np.ndarray:
    """The array in `path`, checked against the expected shape and dtype and the file's size.

    The header is checked first, so a wrong or short file is reported before any data is read.
    With mmap, a copy-on-write memmap: writable, so torch.from_numpy neither warns nor can crash
    on an in-place write, and pages are read from disk only when touched.
    """
    _require_file(path, store, rerun)
    with _reading(path, store, _NOT_NPY, rerun):
        found_shape, found_dtype, offset = _npy_header(path)
    if (found_shape, found_dtype) != (tuple(shape), np.dtype(dtype)):
        found, expected = f"{found_dtype} {list(found_shape)}", f"{np.dtype(dtype)} {list(shape)}"
        raise broken(path, store, f"holds {found}, expected {expected} from manifest.json", rerun)
    size, needed = path.stat().st_size, offset + math.prod(shape) * found_dtype.itemsize
    if size != needed:
        what = "truncated" if size < needed else "has extra bytes after the array"
        raise broken(path, store, f"{what} ({size} bytes, its header needs {needed})", rerun)
    with _reading(path, store, _NOT_NPY, rerun):
        return np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)


def load_npz(path: Path, store: Path) -> dict[str, object]:
    """Every member of a .npz archive, read into memory (ndarray, or bytes for a non-.npy member)."""
    _require_file(path, store)
    with _reading(path, store, _NOT_NPZ):
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # np.load also reads a lone .npy
            raise ValueError("a single .npy array, not an archive")
        with archive:
            return {key: archive[key] for key in archive.files}
