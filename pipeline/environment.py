"""Where a run ran: the CPU, GPU and library build that decided which kernels computed its numbers.

Results differ between CPU types and library builds: oneDNN and ATen pick different kernels by
instruction set (AVX2, AVX-512, AMX), and different kernels round differently (see
pipeline/device.py for a case where that turned into wrong gradients). A metric that cannot be
tied to the machine that produced it cannot be compared or reproduced, so every run records this.

`run_environment()` returns flat `env/...` string values, usable as MLflow tags and in a metrics
JSON as they are. `machine_key()` condenses the fields that select kernels into a short id, so a
stage can notice that a run was resumed on a different kind of machine. The hostname is left out
on purpose: it identifies people and places, not kernels.

Every probe degrades to "unknown" instead of raising: recording the environment must never be
the reason a training run fails.
"""

import functools
import hashlib
import json
import os
import platform
import re
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, distributions, version

import torch

UNKNOWN = "unknown"
_CPUINFO = "/proc/cpuinfo"

# The ISA extensions that change which kernels oneDNN and ATen dispatch to; other flags don't.
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

# The fields that identify a machine kind. Thread count is deliberately absent: it changes with
# the scheduler's allotment, not with the hardware or the build.
MACHINE_FIELDS = (
    "env/cpu_model",
    "env/cpu_isa",
    "env/gpu",
    "env/torch",
    "env/onednn",
    "env/aten_cpu_capability",
    "env/onednn_max_cpu_isa",
    "env/aten_cpu_capability_override",
)


def run_environment(device: torch.device | None = None) -> dict[str, str]:
    """Where this process runs, as `env/...` -> non-empty string; never raises."""
    cpuinfo = _read_cpuinfo(_CPUINFO)
    probes: dict[str, Callable[[], object]] = {
        "env/python": platform.python_version,
        "env/torch": lambda: torch.__version__,
        "env/torchvision": lambda: _dist_version("torchvision"),
        "env/onednn": onednn_version,
        "env/cuda": lambda: torch.version.cuda or "none",
        "env/cudnn": _cudnn_version,
        "env/gpu": lambda: _gpu_name(device),
        "env/cpu_model": lambda: cpu_model(cpuinfo),
        "env/cpu_isa": lambda: cpu_isa(cpuinfo),
        "env/aten_cpu_capability": torch.backends.cpu.get_cpu_capability,
        "env/onednn_max_cpu_isa": lambda: os.environ.get("ONEDNN_MAX_CPU_ISA") or "unset",
        "env/aten_cpu_capability_override": lambda: os.environ.get("ATEN_CPU_CAPABILITY") or "unset",
        "env/threads": torch.get_num_threads,
        "env/packages_sha256": lambda: packages_fingerprint()[0],
        "env/packages_count": lambda: packages_fingerprint()[1],
    }
    return {key: _safe(probe) for key, probe in probes.items()}


def machine_key(env: dict[str, str]) -> str:
    """A short id of the machine kind (hardware + kernel-selecting build), stable across runs."""
    fields = {key: env.get(key, UNKNOWN) for key in MACHINE_FIELDS}
    return _sha16(json.dumps(fields, sort_keys=True))


def _safe(probe: Callable[[], object]) -> str:
    # One failing probe must cost one field, not the run; empty values would be dropped or
    # rejected as MLflow tags, so they read as unknown too.
    try:
        value = str(probe()).strip()
    except Exception:  # noqa: BLE001 - any failure of a probe means "we could not tell"
        return UNKNOWN
    return value or UNKNOWN


def _dist_version(name: str) -> str:
    # From the installed metadata, not `import torchvision`: importing it would cost ~0.3 s and
    # pull in image codecs just to read a version string.
    try:
        return version(name)
    except PackageNotFoundError:
        return "none"


# --- libraries ----------------------------------------------------------------------------------


def onednn_version() -> str:
    """oneDNN's version as torch was built with it; "none" in builds without it.

    torch 2.x has no Python API for it (torch.backends.mkldnn only says whether it is there),
    so it is read from the build summary, which names it "MKL-DNN" or "oneDNN" by version.
    """
    if not torch.backends.mkldnn.is_available():
        return "none"
    return parse_onednn_version(torch.__config__.show())


def parse_onednn_version(build_summary: str) -> str:
    """'3.12.0' from torch.__config__.show()'s 'Intel(R) MKL-DNN v3.12.0 (Git Hash ...)' line."""
    match = re.search(r"(?:MKL-DNN|oneDNN)\s+v?(\d+(?:\.\d+)+)", build_summary)
    return match.group(1) if match else UNKNOWN


def _cudnn_version() -> str:
    # cuDNN only computes anything when CUDA is usable; a CUDA wheel on a CPU machine still ships
    # it, and recording that would suggest it took part.
    if not torch.cuda.is_available():
        return "none"
    return str(torch.backends.cudnn.version() or "none")


def _gpu_name(device: torch.device | None) -> str:
    if device is None or torch.device(device).type != "cuda":
        return "none"
    return torch.cuda.get_device_name(device)


# --- CPU ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _read_cpuinfo(path: str) -> str:
    """The first processor's block of /proc/cpuinfo, or "" where it cannot be read (non-Linux).

    Only the first block: the kernel generates the file lazily per CPU, and on large machines
    producing all of it (frequency sampling on every core) can take far longer than the rest of
    run_environment. The CPU cannot change under a running process, hence the cache.
    """
    lines = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip() and lines:
                    break
                lines.append(line)
    except (OSError, ValueError):  # missing, unreadable, or not a text file
        return ""
    return "".join(lines)


def _cpuinfo_field(text: str, *names: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in names:
            return value.strip()
    return None


def cpu_model(cpuinfo_text: str) -> str:
    """The 'model name' of /proc/cpuinfo, else whatever the platform module can tell."""
    return _cpuinfo_field(cpuinfo_text, "model name") or platform.processor() or platform.machine() or UNKNOWN


def cpu_isa(cpuinfo_text: str) -> str:
    """The kernel-selecting ISA extensions in a /proc/cpuinfo text, comma-separated.

    "unknown" when there is no flags line to read (non-Linux, unreadable file); "none" when there
    is one but it has none of ISA_FLAGS (an old x86 CPU, or ARM, whose line is called Features).
    """
    flags_line = _cpuinfo_field(cpuinfo_text, "flags", "Features")
    if flags_line is None:
        return UNKNOWN
    flags = set(flags_line.split())
    return ",".join(flag for flag in ISA_FLAGS if flag in flags) or "none"


# --- installed packages -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def packages_fingerprint() -> tuple[str, int]:
    """(sha256 prefix, count) of every installed distribution's 'name==version'.

    Catches a changed library build that version strings of torch and friends alone would miss
    (an MKL, cuDNN or NumPy wheel underneath). Cached: installs do not change during a run, and
    walking site-packages is the slowest probe here.
    """
    lines = package_lines(distributions())
    return packages_sha256(lines), len(lines)


def package_lines(dists: Iterable) -> list[str]:
    """Sorted, de-duplicated 'name==version' lines, names normalised as pip compares them."""
    lines = set()
    for dist in dists:
        name = dist.metadata["Name"]
        if name:  # broken metadata (a half-removed install) has no name; it is not importable
            lines.add(f"{_normalise(name)}=={dist.version}")
    return sorted(lines)


def packages_sha256(lines: Iterable[str]) -> str:
    """First 16 hex chars of sha256 over the lines in sorted order, so discovery order is moot."""
    return _sha16("\n".join(sorted(lines)))


def _normalise(name: str) -> str:
    # PEP 503: "Foo_Bar", "foo-bar" and "foo.bar" are one project; sys.path order can make any
    # spelling appear first, and the hash must not depend on it.
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
