"""Val split and label-fraction subsets: stratified, disjoint, nested, deterministic."""

import numpy as np
import pytest

from pipeline.data.splits import nested_subsets, round_half_up, stratified_split

# 3 classes of unequal size, interleaved so index order says nothing about the class
LABELS = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [100, 40, 7]))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5])
def test_val_split_is_stratified_and_disjoint(fraction):
    kept, held = stratified_split(LABELS, fraction, seed=3)
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(LABELS)))
    for cls, n in zip(range(3), [100, 40, 7]):
        assert (LABELS[held] == cls).sum() == round_half_up(fraction * n)
    assert kept.dtype == held.dtype == np.int64 and np.all(np.diff(kept) > 0)


def test_val_split_is_deterministic_and_seeded():
    a, b = stratified_split(LABELS, 0.2, seed=1), stratified_split(LABELS, 0.2, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], stratified_split(LABELS, 0.2, seed=2)[1])


def test_val_split_leaves_every_class_in_train():
    labels = np.array([0, 1, 1, 2, 2, 2])
    kept, _ = stratified_split(labels, 0.9, seed=0)
    assert set(labels[kept]) == {0, 1, 2}


@pytest.mark.parametrize("seed", [0, 7])
def test_subsets_are_nested_stratified_and_cover_every_class(seed):
    fractions = [0.01, 0.05, 0.1, 0.5, 1.0]
    subsets = nested_subsets(LABELS, fractions, seed)
    for small, large in zip(fractions, fractions[1:]):
        assert np.isin(subsets[small], subsets[large]).all()
    for f in fractions:
        counts = np.bincount(LABELS[subsets[f]], minlength=3)
        assert counts.tolist() == [max(1, round_half_up(f * n)) for n in (100, 40, 7)]
    np.testing.assert_array_equal(subsets[1.0], np.arange(len(LABELS)))


def test_subsets_are_deterministic_and_independent_of_requested_fractions():
    a = nested_subsets(LABELS, [0.1, 0.5], seed=4)
    b = nested_subsets(LABELS, [0.5, 0.1, 0.2], seed=4)
    np.testing.assert_array_equal(a[0.1], b[0.1])
    assert not np.array_equal(a[0.1], nested_subsets(LABELS, [0.1], seed=5)[0.1])


@pytest.mark.parametrize("fractions", [[0.0], [1.5], [-0.1, 0.5]])
def test_bad_fractions_rejected(fractions):
    with pytest.raises(ValueError, match="fractions must be in"):
        nested_subsets(LABELS, fractions, seed=0)
