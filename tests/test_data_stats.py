"""Channel statistics against a float64 numpy reference, across chunk boundaries."""

import numpy as np
import pytest

from pipeline.data import stats
from pipeline.data.stats import channel_mean_std


@pytest.mark.parametrize("chunk_elements", [1 << 24, 100, 1])
def test_matches_numpy_reference(monkeypatch, chunk_elements):
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", chunk_elements)
    images = np.random.default_rng(0).integers(0, 256, (13, 3, 5, 7), dtype=np.uint8)
    mean, std = channel_mean_std(images)
    reference = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, reference.std(axis=(0, 2, 3)), rtol=1e-12)


def test_constant_images_have_zero_std():
    mean, std = channel_mean_std(np.full((4, 1, 3, 3), 51, np.uint8))
    assert mean == [0.2] and std == [0.0]
