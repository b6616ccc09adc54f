"""Helpers shared by the benchmarks: device syncs for honest timing, and what machine ran them."""

import os
import platform
from collections.abc import Callable

import torch


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for queued device work, so the clock is read after it ran."""
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


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
