"""Which device and batch a cost is timed at, and the measurement that prices a kind of work.

The params' device when this machine has it, at the params' batch (halved while it does not fit
in the GPU's memory). On the CPU the batch grows from a small one, GROWTH times at a time, while
the next step is predicted under STEP_BUDGET_S: a step's fixed cost makes a tiny batch's cost per
image too high, so the params' batch is timed whenever it is affordable, and a stated smaller one
otherwise. A params device this machine lacks (run.device cuda on a CPU machine) is timed on the
CPU at the small batch: an upper bound, never a GPU prediction. Costs scale per image from the
timed batch to the batch each run uses.
"""

import gc
import statistics
from dataclasses import dataclass

import torch

from pipeline.device import resolve_device
from pipeline.errors import UserError
from pipeline.estimate.timing import TIMED_STEPS, TimeAt

STEP_BUDGET_S = 5.0
"""CPU: the batch grows while a step of the next one is predicted under this many seconds."""
GROWTH = 4
SMALL_BATCH_PIXELS = 4 * 32 * 32
"""CPU: images per step of a small timing batch = this / image side^2 (4 CIFAR images, 2 at 224 px)."""


@dataclass(frozen=True)
class Measurement:
    """Timed steps of one kind of work at `batch` images per step."""

    kind: str
    batch: int
    asked: int
    """The batch the params run at (per process)."""
    seconds: tuple[float, ...]
    """Each timed step, warm-up discarded."""
    smaller_because: str = ""
    """Why batch < asked, when it is."""

    @property
    def per_step(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_image(self) -> float:
        return self.per_step / self.batch


def timing_device(setting: str) -> tuple[torch.device, bool]:
    """(the device to time on, True when params ask for CUDA and this machine has none)."""
    if setting == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu"), True
    return resolve_device(setting), False


def small_batch(image_size: int, asked: int, scale: int = 1) -> int:
    """A CPU timing batch of about SMALL_BATCH_PIXELS x scale pixels (at least 2 images, at most `asked`)."""
    return max(min(2, asked), min(asked, SMALL_BATCH_PIXELS * scale // image_size**2))


def measure(kind: str, asked: int, time_at: TimeAt, *, device: torch.device, small: int, stand_in: bool) -> Measurement:
    """Time `kind` at the params' batch `asked`, or at a stated smaller one (see the module docstring).
    stand_in: this CPU stands in for a missing GPU, so the small batch is kept."""
    if device.type == "cuda":
        return measure_on_gpu(kind, asked, time_at, torch.cuda.get_device_name(device))
    batch = min(small, asked)
    if stand_in or batch == asked:
        return Measurement(kind, batch, asked, tuple(time_at(batch, TIMED_STEPS)))
    seconds = time_at(batch, 1)  # a step at each size on the way up; the params' batch gets TIMED_STEPS
    while batch < asked:
        bigger = min(asked, batch * GROWTH)
        if statistics.median(seconds) / batch * bigger > STEP_BUDGET_S:
            step = statistics.median(seconds) / batch * asked
            return Measurement(kind, batch, asked, tuple(seconds), f"a step of {asked} would take about {step:.0f} s on this CPU")
        batch, seconds = bigger, time_at(bigger, TIMED_STEPS if bigger == asked else 1)
    return Measurement(kind, batch, asked, tuple(seconds))


def measure_on_gpu(kind: str, asked: int, time_at: TimeAt, gpu: str) -> Measurement:
    """On the GPU at `asked`, halving the batch while it does not fit in memory."""
    batch = asked
    while True:
        try:
            because = "" if batch == asked else f"batch {asked} does not fit in the memory of this {gpu}"
            return Measurement(kind, batch, asked, tuple(time_at(batch, TIMED_STEPS)), because)
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise UserError(f"{kind}: not even one image per step fits in the memory of this {gpu}") from None
            gc.collect()  # the failed attempt's model and optimizer state
            torch.cuda.empty_cache()
            batch //= 2
