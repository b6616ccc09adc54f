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
"""

import multiprocessing
import zlib
from collections.abc import Iterator, Sequence

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


def generate(
    images: np.ndarray, corruptions: Sequence[str], severities: Sequence[int], *, seed: int, workers: int
) -> dict[str, np.ndarray]:
    """images uint8 [N, C, H, W] -> {corruption: uint8 [len(severities), N, C, H, W]}."""
    out = {name: np.empty((len(severities), *images.shape), dtype=np.uint8) for name in corruptions}
    tasks = [(name, level, start) for name in corruptions for level in severities for start in range(0, len(images), CHUNK)]
    with tqdm(total=len(tasks) * CHUNK, desc="corrupting", unit="img", disable=None) as bar:
        for (name, level, start), chunk in _run(tasks, images, seed, workers, warm="glass_blur" in corruptions):
            out[name][list(severities).index(level), start : start + len(chunk)] = chunk
            bar.update(len(chunk))
    return out


def _run(tasks: list, images: np.ndarray, seed: int, workers: int, warm: bool) -> Iterator[tuple[tuple, np.ndarray]]:
    if workers <= 1:
        _init_worker(images, seed, warm)
        yield from map(_do_task, tasks)
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads, which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(images, seed, warm)) as pool:
        yield from pool.imap_unordered(_do_task, tasks)


_WORKER: dict = {}


def _init_worker(images: np.ndarray, seed: int, warm: bool) -> None:
    _WORKER.update(images=images, seed=seed)
    if warm:  # numba compiles glass_blur's pixel loop on first use (seconds): once per process
        corrupt_image(np.zeros((3, MIN_SIZE, MIN_SIZE), dtype=np.uint8), "glass_blur", 1)


def _do_task(task: tuple[str, int, int]) -> tuple[tuple[str, int, int], np.ndarray]:
    name, level, start = task
    return task, corrupt_chunk(_WORKER["images"], name, level, _WORKER["seed"], start)
