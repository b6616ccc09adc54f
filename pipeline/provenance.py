"""What a trained result depends on besides its params: the code that ran and the inputs it read.

A checkpoint may be resumed only by the run it belongs to. Params alone are not enough: after an
edit to, say, the loss, a checkpoint written by the old code must train again, not be reported
as the new code's result. So a run's key also holds a digest of every module of the project
that the process has imported (correct by construction: no list to keep up to date) and of
each input (prepared data, the encoder a probe is trained on). Digests are per module and per
input, so a notice can say what changed. Nothing here depends on the machine or on paths.
"""

import hashlib
import sys
from pathlib import Path

PROJECT_PACKAGES = ("pipeline", "stages")
_CHUNK = 1 << 20
DIGEST_CHARS = 16


def loaded_sources(packages: tuple[str, ...] = PROJECT_PACKAGES) -> dict[str, Path]:
    """Source file of every imported module of `packages`, by module name (sorted)."""
    found = {}
    for name, module in list(sys.modules.items()):
        if name == "__main__":  # `python -m stages.x` runs stages/x.py as __main__: use its real name
            name = getattr(getattr(module, "__spec__", None), "name", None) or name
        file = getattr(module, "__file__", None)
        if file and name.split(".")[0] in packages and file.endswith(".py"):
            found[name] = Path(file)
    return dict(sorted(found.items()))


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (first DIGEST_CHARS hex characters)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:DIGEST_CHARS]


def directory_digest(path: Path) -> str:
    """sha256 over (relative name, content digest) of every file below `path`, in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\n".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def code_digests(packages: tuple[str, ...] = PROJECT_PACKAGES) -> dict[str, str]:
    """Module name -> digest of its source, for every imported module of `packages`."""
    return {name: file_digest(path) for name, path in loaded_sources(packages).items()}


def changed_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two nested dicts (added and removed keys too)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{sub}" for sub in changed_keys(a, b)]
        elif a != b:
            changed.append(str(key))
    return changed
