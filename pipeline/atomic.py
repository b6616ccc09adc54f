"""Write files and directories so that a crash or `kill -9` never leaves a half-written one.

Files: write to a temporary file in the same directory, flush it to disk, then rename over the
target: rename is atomic on POSIX, so readers see either the old file or the complete new one.
Directories (the prepared dataset store): build the new tree beside the old one, fsync it, then
swap by two renames; the only window without `target` is between them, and the old copy is kept
under a hidden name until the new one is in place.
"""

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(file)` on a temp file beside `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def torch_save(path: Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))



def _sibling(target: Path, tag: str) -> Path:
    return target.with_name(f".{target.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _swap_in(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing whatever directory was there."""
    if not target.exists():
        new.rename(target)
        return
    old = _sibling(target, "old")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)  # put the good copy back before reporting the failure
        raise
    shutil.rmtree(old)


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under root, so the rename never publishes data still in cache."""
    for path in sorted(root.rglob("*"), reverse=True) + [root]:  # children before their folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temp dir next to `target`; on normal exit it becomes `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _sibling(target, "tmp")
    temp.mkdir()  # plain mkdir, unlike mkdtemp, honours the umask, so the store keeps normal permissions
    try:
        yield temp
        _sync_tree(temp)
        _swap_in(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # no-op after a successful swap
