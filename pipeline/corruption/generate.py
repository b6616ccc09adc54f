"""ImageNet-C corruptions of a test split, made with `imagecorruptions` (ImageNet-C parameters).

The corruption functions were tuned for 224 px ImageNet images and assume at least 32 px, so
smaller images are resized up to 32 px first; grayscale goes through RGB (the functions expect
three channels) and back to luma; the result is resized to the size the models are evaluated at.
Generated sets therefore use ImageNet-C's parameters: they are not CIFAR-10-C (which used its own).

Determinism: most corruptions draw from numpy's global random state, so each task (corruption,
severity, chunk of CHUNK images) seeds it from (seed, corruption name, severity, chunk start).
Two do not: impulse_noise (scikit-image's own generator) and glass_blur (numba's generator,
separate from numpy's) draw a fresh OS seed unless given one, so they get a per-image seed drawn
from the seeded global state. The result is the same whatever the number of worker processes
and the order tasks finish in.

Memory: workers read the clean images by memory map and hand back a few chunks at a time
(corrupted_chunks), which the store writes into its files as they come (store.write_generated).
"""

import multiprocessing
import queue
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

MIN_SIZE = 32
OWN_GENERATOR = ("impulse_noise", "glass_blur")
"""Corruptions that take a `seed` argument instead of using numpy's global state."""
CHUNK = 250
"""Images per task: small enough to spread over processes, large enough to amortise the hand-off."""


def corrupt_image(image: np.ndarray, corruption: str, severity: int) -> np.ndarray:
    """uint8 [C, H, W] (C = 1 or 3) -> the corrupted uint8 [C, H, W] at the same size."""
    from imagecorruptions import corrupt  # imported here: it loads numba, scipy and skimage (seconds)

    channels, height, width = image.shape
    rgb = Image.fromarray(np.repeat(image, 3, axis=0).transpose(1, 2, 0) if channels == 1 else image.transpose(1, 2, 0))
    if min(height, width) < MIN_SIZE:
        scale = MIN_SIZE / min(height, width)
        rgb = rgb.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    seeded = {"seed": int(np.random.randint(2**31))} if corruption in OWN_GENERATOR else {}
    corrupted = np.asarray(corrupt(np.asarray(rgb), corruption_name=corruption, severity=severity, **seeded))
    result = Image.fromarray(np.clip(np.rint(corrupted), 0, 255).astype(np.uint8))
    if result.size != (width, height):
        result = result.resize((width, height), Image.BILINEAR)
    if channels == 1:
        return np.asarray(result.convert("L"))[None]
    return np.asarray(result).transpose(2, 0, 1)


def task_seed(seed: int, corruption: str, severity: int, start: int) -> int:
    """numpy's global seed for one task; stable across processes and Python runs (crc32, not hash())."""
    return (seed * 1_000_003 + zlib.crc32(corruption.encode()) * 101 + severity * 10_007 + start) % 2**32


def corrupt_chunk(images: np.ndarray, corruption: str, severity: int, seed: int, start: int) -> np.ndarray:
    """images[start : start + CHUNK] corrupted, with numpy's global state seeded for this task."""
    np.random.seed(task_seed(seed, corruption, severity, start))
    chunk = images[start : start + CHUNK]
    return np.stack([corrupt_image(image, corruption, severity) for image in chunk])


def corrupted_chunks(
    source: Path, corruptions: Sequence[str], severities: Sequence[int], *, seed: int, workers: int
) -> Iterator[tuple[str, int, int, np.ndarray]]:
    """Every task's result as it finishes: (corruption, severity, start, uint8 [n, C, H, W]), the
    rows start : start + n of the images in `source` (a .npy of uint8 [N, C, H, W]) corrupted.

    Each process reads `source` by memory map, so the images are not copied into every worker,
    and at most IN_FLIGHT_PER_WORKER * workers results are held at once: memory grows with
    workers x CHUNK images, not with the number of images, corruptions or severities.
    """
    count = len(np.load(source, mmap_mode="r"))
    tasks = [(name, level, start) for name in corruptions for level in severities for start in range(0, count, CHUNK)]
    with tqdm(total=len(corruptions) * len(severities) * count, desc="corrupting", unit="img", disable=None) as bar:
        for (name, level, start), chunk in _run(tasks, str(source), seed, workers, warm="glass_blur" in corruptions):
            bar.update(len(chunk))
            yield name, level, start, chunk


IN_FLIGHT_PER_WORKER = 2
"""Tasks handed to each worker ahead of the consumer: enough to keep it busy while results are written."""


def _run(tasks: list, source: str, seed: int, workers: int, warm: bool) -> Iterator[tuple[tuple, np.ndarray]]:
    if workers <= 1:
        _init_worker(source, seed, warm)
        try:
            yield from map(_do_task, tasks)  # lazy: one chunk at a time
        finally:
            _WORKER.clear()  # drop the memory map of `source`
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads, which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(source, seed, warm)) as pool:
        yield from _bounded_unordered(pool, tasks, IN_FLIGHT_PER_WORKER * workers)


def _bounded_unordered(pool, tasks: list, window: int) -> Iterator[tuple[tuple, np.ndarray]]:
    """pool.imap_unordered(_do_task, tasks) with at most `window` tasks submitted and not yet
    consumed: imap_unordered submits every task at once and queues results without bound when
    the consumer is slower (results of a 50k-image set would pile up in the parent)."""
    finished: queue.SimpleQueue = queue.SimpleQueue()
    pending = iter(tasks)

    def submit() -> int:
        task = next(pending, None)
        if task is None:
            return 0
        pool.apply_async(_do_task, (task,), callback=finished.put, error_callback=finished.put)
        return 1

    in_flight = sum(submit() for _ in range(window))
    while in_flight:
        result = finished.get()
        if isinstance(result, BaseException):
            raise result
        in_flight += submit() - 1  # hand the freed worker its next task before this result is written
        yield result


_WORKER: dict = {}


def _init_worker(source: str, seed: int, warm: bool) -> None:
    _WORKER.update(images=np.load(source, mmap_mode="r"), seed=seed)
    if warm:  # numba compiles glass_blur's pixel loop on first use (seconds): once per process
        corrupt_image(np.zeros((3, MIN_SIZE, MIN_SIZE), dtype=np.uint8), "glass_blur", 1)


def _do_task(task: tuple[str, int, int]) -> tuple[tuple[str, int, int], np.ndarray]:
    name, level, start = task
    return task, corrupt_chunk(_WORKER["images"], name, level, _WORKER["seed"], start)
