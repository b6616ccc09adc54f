"""Reduced labelled data: which train images a cell sees, and how long it trains on them.

A fraction is of the whole labelled train split (after val is carved out): 1.0 is every
labelled image. Each class keeps round(fraction * its count) images, the same nested prefix
`prepare` uses (pipeline/data/splits.py), so a smaller fraction's images are inside a larger
one's. A fraction that leaves a class with no image is refused, not silently rounded up.

Budget rule, the same for every method: at least `steps` optimizer steps and `min_epochs`
epochs, so a 1% cell trains about as many steps as a 10% one instead of being 10x cheaper and
useless: epochs = max(min_epochs, ceil(steps / steps_per_epoch)). Under torchrun the rule holds in
every process: the batch and the steps per epoch are each process's share's. A cell records what
its optimizer did (`spent`), not what the rule asked for.
"""

import math
from dataclasses import replace

import numpy as np
import torch

from pipeline.data import PreparedDataset, Split
from pipeline.data.image_files import rows_of
from pipeline.data.splits import nested_subsets, round_half_up
from pipeline.errors import ConfigError


def labelled_subset(data: PreparedDataset, fraction: float, seed: int, *, key: str = "reduced.fractions") -> Split:
    """The stratified `fraction` of data.train (data seed `seed`); every class must keep an image."""
    labels = data.train.labels.numpy()
    classes, counts = np.unique(labels, return_counts=True)
    empty = [data.class_names[int(c)] for c, n in zip(classes, counts) if round_half_up(fraction * n) < 1]
    if empty:
        smallest = int(counts.min())
        allowed = f"at least {0.5 / smallest:.4g}, so that every class keeps an image (class {empty[0]!r} would keep none)"
        raise ConfigError(key, fraction, allowed)
    rows = torch.from_numpy(nested_subsets(labels, [fraction], seed)[float(fraction)])
    return Split(rows_of(data.train.images, rows), data.train.labels[rows])  # a file store's rows stay a file list


def budgeted(config, *, num_items: int, steps: int, min_epochs: int, world_size: int = 1):
    """`config` (a training section) with the budget rule's epochs and a batch that fits the subset."""
    batch_size = max(1, min(config.batch_size, num_items // world_size))
    per_epoch = max(1, (num_items // world_size) // batch_size)
    return replace(config, batch_size=batch_size, epochs=max(min_epochs, math.ceil(steps / per_epoch)))


def spent(history: list[dict[str, float]], *, batch_size: int, world_size: int, views: int = 1) -> dict[str, int]:
    """What a run's optimizer did, from its history (what a report states beside accuracy): steps
    per process, processes, epochs, batch per process, and images seen = steps x batch x processes
    x views (every process takes its own batch at each step)."""
    steps = int(history[-1]["train/steps"])  # cumulative, resumed epochs included (pipeline/engine.py)
    return {
        "steps": steps, "processes": world_size, "epochs": int(history[-1]["epoch"]), "batch_size": batch_size,
        "images_seen": steps * batch_size * world_size * views,
    }  # fmt: skip
