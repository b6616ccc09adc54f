"""How long `dvc repro` will take with given params, computed before it starts.

`estimate(params, counts)` times a few real steps of each kind of work on this machine's device
and extrapolates to the whole run (`python -m stages.preset [preset] --estimate` prints it):
- counts.py: images per split and labelled subset (a prepared store's manifest, or published sizes)
- plan.py: the steps and images of every stage, and their predicted seconds (pure arithmetic)
- timing.py: real training steps, forward passes and corruptions timed on synthetic images
- measure.py: which device and batch each is timed at
- table.py: the printed table
"""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import Params
from pipeline.estimate.counts import Counts, counts_for
from pipeline.estimate.measure import Measurement, measure, small_batch, timing_device
from pipeline.estimate.plan import CORRUPTION, GENERATION_MAX_SIZE, INFERENCE, TRAINING_KINDS, Work, generation_refused, plan, predict
from pipeline.estimate.table import duration, format_table, hours
from pipeline.estimate.timing import WARMUP_STEPS, synthetic, time_corruption, time_inference, time_training

__all__ = ["Counts", "Estimate", "counts_for", "estimate"]

EVAL_BATCH = 512
"""Images per forward pass of val passes, kNN embeddings and test scoring (preprocess.predict's)."""


@dataclass(frozen=True)
class Estimate:
    work: list[Work]
    seconds: list[float]
    """Predicted seconds per row of `work`."""
    measurements: dict[str, Measurement]
    per_image: dict[str, float]
    notes: list[str]

    def table(self) -> str:
        return format_table(self.work, self.seconds, self.measurements, self.per_image, self.notes)


def estimate(params: Params, counts: Counts, *, corruption_processes: int | None = None) -> Estimate:
    """Time each kind of work `dvc repro` does with `params` here, and predict the whole run.

    corruption_processes: the corrupt stage's pool (default: run.threads, or this machine's cores).
    """
    started, load = time.perf_counter(), os.getloadavg()[0]
    processes = corruption_processes or params.run.threads or len(os.sched_getaffinity(0))
    work = plan(params, counts, corruption_processes=processes)
    device, stand_in = timing_device(params.run.device)
    kinds = [kind for kind in (*TRAINING_KINDS, INFERENCE) if any(row.kind == kind for row in work)]
    with _threads(params.run.threads):
        measurements = {kind: _measure(kind, params, counts, device, stand_in) for kind in kinds}
        per_image = {kind: m.per_image for kind, m in measurements.items()}
        once = {}
        if any(row.kind == CORRUPTION for row in work):
            per_image[CORRUPTION], once[CORRUPTION] = _corruption_cost(params, counts)
    seconds = predict(work, per_image, once)
    notes = _notes(params, counts, device, stand_in, measurements, load, sum(seconds), time.perf_counter() - started)
    return Estimate(work, seconds, measurements, per_image, notes)


def _measure(kind: str, params: Params, counts: Counts, device: torch.device, stand_in: bool) -> Measurement:
    shape = (counts.channels, counts.image_size, counts.classes)
    if kind == INFERENCE:
        time_at = lambda batch, timed: time_inference(synthetic(*shape, batch), model_config=params.model, device=device, timed=timed)  # noqa: E731
        return measure(kind, EVAL_BATCH, time_at, device=device, small=small_batch(counts.image_size, EVAL_BATCH, scale=8), stand_in=stand_in)
    config = getattr(params, kind)
    time_at = lambda batch, timed: time_training(  # noqa: E731
        kind, config, synthetic(*shape, batch), model_config=params.model, device=device, compile_model=params.run.compile, timed=timed
    )
    return measure(kind, config.batch_size, time_at, device=device, small=small_batch(counts.image_size, config.batch_size), stand_in=stand_in)


def _corruption_cost(params: Params, counts: Counts) -> tuple[float, float]:
    """(CPU seconds per corrupted image, worker start-up seconds) at the test images' shape."""
    images = np.random.default_rng(0).integers(0, 256, (2, counts.channels, counts.image_size, counts.image_size), dtype=np.uint8)
    return time_corruption(images, params.robustness.corruptions, params.robustness.severities)


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """run.threads for the timing, as the stages set it (0: torch's default)."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _notes(params: Params, counts: Counts, device: torch.device, stand_in: bool, measurements: dict[str, Measurement], load: float, total: float, took: float) -> list[str]:
    train = counts.labelled(params.data.train_fraction)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    batches = ", ".join(f"{kind} {m.batch}" for kind, m in measurements.items())
    timed = ", ".join(f"{kind} {len(m.seconds)}" for kind, m in measurements.items())
    notes = [
        f"Counts: {counts.source}: {train:,} train images per main run, {counts.val:,} val, {sum(counts.test):,} test.",
        f"Measured on {where}, 1-min load average {load:.1f} on {len(os.sched_getaffinity(0))} cores before timing, with synthetic uint8 images "
        f"[{counts.channels}, {counts.image_size}, {counts.image_size}] and the params' {params.model.encoder}, losses, augmentations and optimizers; "
        f"images per step: {batches}; each figure is the median of the timed steps ({timed}) after {WARMUP_STEPS} warm-up step (discarded), "
        f"extrapolated linearly per image.",
    ]
    if stand_in:
        asked = ", ".join(f"{kind} {m.asked}" for kind, m in measurements.items())
        notes.append(
            f"run.device is cuda but this machine has no CUDA device: measured on the CPU at small batches ({batches}); the params ask for cuda "
            f"at batch {asked}: the figures are a CPU upper bound, not a GPU prediction."
        )
    notes += [f"{kind}: timed at batch {m.batch}: {m.smaller_because}." for kind, m in measurements.items() if m.smaller_because]
    if generation_refused(params, counts):
        notes.append(
            f"corrupt would stop: {counts.image_size} px images are above the {GENERATION_MAX_SIZE} px it generates corrupted sets for, "
            "and robustness.released is null; corrupt and robustness are not in the total."
        )
    notes += [
        f"{hours(total)} device-hours in one process on one device, as `dvc repro` runs the stages; under torchrun with W processes "
        "the wall time is about 1/W of that, the device-hours about the same.",
        "Not included: prepare, reading and decoding image files (data.storage files; `make bench` times decoding), process start-up, MLflow logging, the kNN search.",
        f"This estimate took {duration(took)}.",
    ]
    return notes
