"""Reduced labelled data: the subset a cell sees, and the budget rule shared by both methods."""

from pathlib import Path

import pytest
import torch

from pipeline.config import CrossEntropyConfig, SupConConfig
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.errors import ConfigError
from pipeline.reduced import budgeted, images_seen, labelled_subset


def _dataset(per_class: tuple[int, ...]) -> PreparedDataset:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    empty = Split(images[:0], labels[:0])
    manifest = {"class_names": [f"c{i}" for i in range(len(per_class))], "image_shape": [1, 2, 2], "mean": [0.5], "std": [0.25]}
    return PreparedDataset(Path("synthetic"), Split(images, labels), empty, empty, manifest, {})


def test_each_class_keeps_its_rounded_share_and_smaller_fractions_nest_inside_larger_ones():
    data = _dataset((100, 40, 15))
    small, large = labelled_subset(data, 0.1, seed=0), labelled_subset(data, 0.5, seed=0)
    assert torch.bincount(small.labels).tolist() == [10, 4, 2]  # 1.5 rounds half up
    assert torch.bincount(large.labels).tolist() == [50, 20, 8]
    assert set(small.images[:, 0, 0, 0].tolist()) <= set(large.images[:, 0, 0, 0].tolist())
    assert torch.equal(labelled_subset(data, 1.0, seed=0).labels, data.train.labels)


def test_a_fraction_that_empties_a_class_names_the_key_and_the_smallest_allowed():
    with pytest.raises(ConfigError, match=r"reduced.fractions = 0.02 is not allowed: expected at least 0.03333.*'c2'"):
        labelled_subset(_dataset((100, 40, 15)), 0.02, seed=0)


def test_budget_rule_gives_small_subsets_more_epochs_and_the_same_rule_to_every_method():
    supcon, ce = SupConConfig(batch_size=256), CrossEntropyConfig(batch_size=256)
    assert budgeted(supcon, num_items=540, steps=100, min_epochs=2).epochs == 50  # 2 steps per epoch
    assert budgeted(ce, num_items=540, steps=100, min_epochs=2).epochs == 50
    assert budgeted(ce, num_items=5400, steps=100, min_epochs=2).epochs == 5  # 21 steps per epoch
    assert budgeted(ce, num_items=54000, steps=100, min_epochs=2).epochs == 2  # the minimum
    tiny = budgeted(ce, num_items=100, steps=10, min_epochs=1)
    assert (tiny.batch_size, tiny.epochs) == (100, 10)  # the batch shrinks to the subset
    assert images_seen(budgeted(supcon, num_items=540, steps=100, min_epochs=2), num_items=540, views=2) == 540 * 2 * 50
