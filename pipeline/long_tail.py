"""The long-tailed train split a stage trains on (issue 21): `data.imbalance` applied to a split.

pipeline/imbalance.py says which images each class keeps; this applies it to a `Split` with the
project's seeds and turns a factor that would leave a class empty into one line naming the key
the user wrote (data.imbalance.factor for the main stages, long_tail.factors for a cell). Only
the train split passes through here: val (model selection) and test stay balanced.
"""

import torch

from pipeline.config import ImbalanceConfig
from pipeline.data import Split
from pipeline.data.image_files import rows_of
from pipeline.errors import ConfigError
from pipeline.imbalance import long_tailed_indices

FACTOR_KEY = "data.imbalance.factor"


def long_tailed_split(split: Split, imbalance: ImbalanceConfig, seed: int, *, factor: float | None = None, key: str = FACTOR_KEY) -> Split:
    """`split` subsampled to `imbalance`'s profile with `factor` (default imbalance.factor; None:
    `split` itself). Data seed `seed` (run.seed) picks the images within a class and, for
    class_order "seeded", which classes form the head."""
    factor = imbalance.factor if factor is None else factor
    if factor is None:
        return split
    order_seed = seed if imbalance.class_order == "seeded" else None
    try:
        rows = long_tailed_indices(split.labels, factor, imbalance.profile, order_seed=order_seed, seed=seed)
    except ValueError:
        raise ConfigError(key, factor, _allowed(int(torch.bincount(split.labels.to(torch.long)).max()))) from None
    return Split(rows_of(split.images, rows), split.labels[rows])  # a file store's rows stay a file list


def _allowed(n_max: int) -> str:
    return f"a number >= 1 that leaves every class an image: the largest class of the train split has {n_max} images, so at most about {n_max}"

