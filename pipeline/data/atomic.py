"""Replace a directory as a whole: build the new one beside it, then swap by renames.

A crash while building leaves the old directory untouched (and only a hidden temp folder to
clean). The new tree is fsynced before the swap, so not even power loss publishes a partial one.
The swap is two renames on one filesystem, so the only window without `target` is between them;
the old copy is kept under a hidden name until the new one is in place.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
