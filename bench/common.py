"""Helpers shared by the benchmarks: device syncs for honest timing, interleaved timing, peak
memory of one call, and what machine ran them."""

import os
import platform
import time
from collections.abc import Callable

import torch


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for queued device work, so the clock is read after it ran."""
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def round_robin(calls: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call per repeat, the calls interleaved repeat by repeat (after `warmup`
    untimed rounds) so that load from other processes hits them alike. Each call must finish its
    device work before returning (a synchronizer)."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def peak_bytes(call: Callable[[], None], device: str) -> int:
    """Peak memory one `call` needs beyond what is allocated before it.

    CUDA: torch.cuda.max_memory_allocated during the call minus the allocation before. CPU:
    torch's CPU allocator hands large blocks back to the OS, so the resident set tracks live
    tensors: the kernel's peak-RSS mark is reset (Linux: write 5 to /proc/self/clear_refs), VmRSS
    read, the call run, and VmHWM - VmRSS returned. Run it in a fresh process after a small
    warm-up: import-time and first-call peaks (ru_maxrss cannot be reset) would hide the call's own.
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current VmRSS
    before = proc_status_kib("VmRSS")
    call()
    return (proc_status_kib("VmHWM") - before) * 1024


# For a subprocess that measures peak_bytes on the CPU after warm-up steps at full size: glibc's
# malloc raises its mmap threshold (up to 32 MiB) as large blocks are freed, after which a step's
# freed tensors stay in the heap and count in VmRSS *before* the measured call, hiding part of its
# peak (a training step at B = 256 read 36-171 MiB in repeated runs). Fixed thresholds keep every
# block over 128 KiB in its own mapping, returned when freed, so VmRSS tracks live tensors (the
# same step read 283 MiB, repeatably). Timing runs do not use it.
FIXED_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def proc_status_kib(key: str) -> int:
    """A memory field of /proc/self/status, in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def cpu_model() -> str:
    """'model name' of the first CPU in /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """CPU, cores, load, torch version and threads, and the CUDA device if any: stored with results."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "cores": cores,
        # Other processes' load skews CPU timings: recorded so a reader can tell a busy machine.
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info
