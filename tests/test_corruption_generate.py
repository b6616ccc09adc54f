"""Corrupted test sets: ImageNet-C corruptions at any image size, reproducible across processes."""

import numpy as np
import pytest

from pipeline.config import COMMON_CORRUPTIONS, EXTRA_CORRUPTIONS
from pipeline.corruption.generate import CHUNK, corrupt_image, corrupted_chunks, task_seed


def _images(n: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth uint8 images [n, C, size, size] (gradients + a little noise), like real photos more than noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 60 + 120 * (x + y) / 2
    return np.clip(base + rng.normal(0, 8, (n, channels, size, size)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (3, 20), (1, 40)])
def test_a_corrupted_image_keeps_its_shape_and_type(channels, size):
    image = _images(1, channels, size)[0]
    np.random.seed(0)
    out = corrupt_image(image, "gaussian_noise", 3)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() > 5  # it changed


def test_severity_orders_the_strength_of_a_corruption():
    image = _images(1, 1, 28)[0]
    means = [corrupt_image(image, "brightness", level).mean() for level in range(1, 6)]
    assert means == sorted(means) and means[0] > image.mean() + 5, means
    contrast = [corrupt_image(image, "contrast", level).astype(float).std() for level in range(1, 6)]
    assert contrast == sorted(contrast, reverse=True), contrast


def generate(source, names, severities, *, seed: int, workers: int) -> dict[str, np.ndarray]:
    """Every chunk of corrupted_chunks put in place: {corruption: uint8 [len(severities), N, C, H, W]}."""
    count = len(np.load(source))
    out = {}
    for name, level, start, chunk in corrupted_chunks(source, names, severities, seed=seed, workers=workers):
        out.setdefault(name, {})[level, start] = chunk
    return {name: np.stack([np.concatenate([out[name][level, s] for s in range(0, count, CHUNK)]) for level in severities]) for name in out}


def test_generation_is_identical_with_one_or_two_processes_and_for_every_corruption(tmp_path):
    source = tmp_path / "clean.npy"
    np.save(source, _images(3, 1, 28))
    names = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS
    one = generate(source, names, [2, 5], seed=7, workers=1)
    two = generate(source, names, [2, 5], seed=7, workers=2)
    assert sorted(one) == sorted(names)
    for name in names:
        assert one[name].shape == (2, 3, 1, 28, 28)
        assert np.array_equal(one[name], two[name]), name
    other_seed = generate(source, ["gaussian_noise", "impulse_noise", "glass_blur"], [2], seed=8, workers=1)
    for name in other_seed:
        assert not np.array_equal(other_seed[name][0], one[name][0]), name


def test_task_seeds_are_stable_and_distinct():
    assert task_seed(0, "fog", 1, 0) == task_seed(0, "fog", 1, 0)
    seeds = {task_seed(s, c, level, start) for s in (0, 1) for c in ("fog", "snow") for level in (1, 2) for start in (0, 250)}
    assert len(seeds) == 16
