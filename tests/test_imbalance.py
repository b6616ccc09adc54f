"""Long-tailed subsets (pipeline/imbalance.py) against the published sizes of CIFAR-10-LT and
CIFAR-100-LT (Cui et al. 2019; Cao et al. 2019) and the profile's definition."""

import math

import pytest
import torch

from pipeline.imbalance import class_order, kept_per_rank, long_tailed_indices

# Train images of the long-tailed CIFAR sets as the literature reports them (n_max 5,000 / 500).
PUBLISHED = {(10, 100): 12406, (10, 50): 13996, (10, 10): 20431, (100, 100): 10847, (100, 50): 12608, (100, 10): 19573}


@pytest.mark.parametrize("classes,factor", sorted(PUBLISHED))
def test_the_exponential_profile_gives_the_published_cifar_lt_sizes(classes, factor):
    n_max = 50000 // classes
    counts = kept_per_rank(n_max, classes, factor, "exponential")
    assert sum(counts) == PUBLISHED[(classes, factor)]
    assert counts[0] == n_max and counts[-1] == n_max // factor and counts == sorted(counts, reverse=True)


def test_cifar10_lt_at_factor_100_class_by_class():
    assert kept_per_rank(5000, 10, 100, "exponential") == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_the_step_profile_halves_the_classes():
    assert kept_per_rank(500, 10, 10, "step") == [500] * 5 + [50] * 5
    assert kept_per_rank(500, 5, 10, "step") == [500] * 3 + [50] * 2


def test_factor_one_is_balanced():
    assert kept_per_rank(600, 10, 1, "exponential") == [600] * 10


def cifar_like_labels(classes=10, per_class=60, seed=0):
    return torch.arange(classes).repeat_interleave(per_class)[torch.randperm(classes * per_class, generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("order_seed", [None, 3])
def test_each_class_keeps_its_ranks_count_in_the_stated_order(order_seed):
    labels = cifar_like_labels()
    kept = long_tailed_indices(labels, 10, order_seed=order_seed, seed=1)
    sizes = torch.bincount(labels[kept], minlength=10)
    order = class_order(10, order_seed)
    assert [int(sizes[c]) for c in order] == kept_per_rank(60, 10, 10, "exponential")
    assert order == (list(range(10)) if order_seed is None else torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist())
    assert len(set(kept.tolist())) == len(kept) and torch.equal(kept, kept.sort().values)


def test_a_seed_gives_the_same_subset_and_larger_factors_keep_subsets():
    labels = cifar_like_labels()
    assert torch.equal(long_tailed_indices(labels, 10, seed=4), long_tailed_indices(labels, 10, seed=4))
    assert not torch.equal(long_tailed_indices(labels, 10, seed=4), long_tailed_indices(labels, 10, seed=5))
    tail_100, tail_10 = set(long_tailed_indices(labels, 50, seed=4).tolist()), set(long_tailed_indices(labels, 10, seed=4).tolist())
    assert tail_100 < tail_10


@pytest.mark.parametrize(
    "factor,profile,message",
    [
        (0.5, "exponential", r"data.imbalance.factor = 0.5 is not allowed: expected a number >= 1"),
        (math.inf, "exponential", "data.imbalance.factor = inf is not allowed"),
        (True, "exponential", "data.imbalance.factor = True is not allowed"),
        (61, "exponential", r"data.imbalance.factor = 61 would leave the tail class empty: the largest class has 60 images, so at most 60"),
        (10, "linear", r"data.imbalance.profile = 'linear' is not allowed: expected one of exponential, step"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(factor, profile, message):
    with pytest.raises(ValueError, match=message):
        long_tailed_indices(cifar_like_labels(), factor, profile)


def test_a_factor_equal_to_the_largest_class_leaves_the_tail_one_image():
    # 49 * 49 ** -1 is 0.999... in floating point: the tail must keep its one image, not none.
    assert kept_per_rank(49, 10, 49, "exponential")[-1] == 1
