"""Reduced labelled data: the subset a cell sees, and the budget rule shared by both methods."""

from pathlib import Path

import pytest
import torch

from fixtures_data import write_image_tree
from pipeline.config import CrossEntropyConfig, SupConConfig, parse_params
from pipeline.data import load_prepared, prepare_dataset
from pipeline.data.image_files import ImageFiles
from pipeline.data.prepared import PreparedDataset, Split
from pipeline.errors import ConfigError
from pipeline.reduced import budgeted, labelled_subset, spent
from pipeline.sweep.trial import train_images


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
    two = budgeted(ce, num_items=100, steps=10, min_epochs=1, world_size=2)
    assert (two.batch_size, two.epochs) == (50, 10)  # each of 2 processes holds 50: one step per epoch


def test_the_recorded_budget_is_what_the_optimizer_did():
    history = [{"epoch": 1, "train/steps": 3}, {"epoch": 2, "train/steps": 6}]
    assert spent(history, batch_size=16, world_size=2, views=2) == {"steps": 6, "processes": 2, "epochs": 2, "batch_size": 16, "images_seen": 6 * 16 * 2 * 2}


@pytest.fixture(scope="module")
def file_store(tmp_path_factory) -> PreparedDataset:
    """A prepared store of a JPEG tree read from its files (data.storage files), as ImageNet's is."""
    root = tmp_path_factory.mktemp("jpeg_tree")
    write_image_tree(root / "tree", {"train": {"cat": 10, "dog": 10}, "test": {"cat": 2, "dog": 2}}, sizes=((40, 30),), fmt="JPEG")
    prepare_dataset("imagefolder", root=str(root / "tree"), download=False, image_size=16, val_fraction=0.0, fractions=[1.0], seed=0, out_dir=root / "store", storage="files")
    return load_prepared(root / "store", files_root=root / "tree")


def test_a_file_store_subset_stays_a_lazy_file_list_of_the_same_rows(file_store):
    pixels = PreparedDataset(file_store.path, Split(torch.arange(20), file_store.train.labels), *[file_store.val] * 2, file_store.manifest, {})
    subset = labelled_subset(file_store, 0.3, seed=0)

    assert isinstance(subset.images, ImageFiles) and len(subset.images) == len(subset.labels) == 6
    rows = labelled_subset(pixels, 0.3, seed=0).images  # the same rule on a tensor of row numbers
    assert subset.images.paths == tuple(file_store.train.images.paths[i] for i in rows.tolist())
    assert torch.equal(subset.labels, file_store.train.labels[rows])


def test_a_sweep_on_a_file_store_takes_its_train_fraction(file_store):
    params = parse_params({"sweep": {"train_fraction": 0.5}})
    split = train_images(file_store, params, params.sweep.train_fraction)
    assert isinstance(split.images, ImageFiles) and torch.bincount(split.labels).tolist() == [5, 5]


def test_a_batch_larger_than_a_process_share_names_the_share(monkeypatch):
    from torch import nn

    from pipeline import dist
    from pipeline.batches import TensorBatches
    from pipeline.engine import Loop, fit
    from pipeline.errors import UserError
    from pipeline.run_context import RunContext

    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = Loop(
        name="ce", model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        loss_fn=lambda x, y: model(x).sum(), batches=TensorBatches(torch.zeros(10, 2), torch.zeros(10), batch_size=8, seed=0), epochs=1,
    )  # fmt: skip
    monkeypatch.setattr(dist, "world_size", lambda: 2)  # it fails before any process group is needed
    with pytest.raises(UserError, match=r"^ce: batch_size 8 is larger than the 5 training items per process$"):
        fit(loop, RunContext(seed=0, device=torch.device("cpu")))


@pytest.mark.parametrize(("section", "epochs_from", "key"), [("ce", "", "ce.epochs"), ("linear", "reduced.steps", "reduced.steps")])
def test_a_warm_up_longer_than_the_run_is_one_line_naming_both_keys(section, epochs_from, key):
    from torch import nn

    from pipeline.config import OptimizerConfig
    from pipeline.recipe import check_warmup, optimizer_and_schedule

    config = OptimizerConfig(warmup_epochs=10)
    with pytest.raises(ConfigError, match=rf"^{section}\.optimizer\.warmup_epochs = 10 is not allowed: expected at most the 1 epochs .*{key}"):
        if epochs_from:
            check_warmup(config, epochs=1, section=section, epochs_from=epochs_from)
        else:
            optimizer_and_schedule(nn.Linear(2, 2), config, num_items=100, batch_size=10, epochs=1, section=section)
    optimizer_and_schedule(nn.Linear(2, 2), config, num_items=100, batch_size=10, epochs=10, section=section)  # it may end with the run
