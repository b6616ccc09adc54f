"""Datasets: loaders for on-disk formats (registered in DATASETS) and the prepared store.

Importing this package registers every loader, so `DATASETS.get(name)` sees them all.
"""

from pipeline.data import cifar, fashion_mnist, imagefolder  # noqa: F401  (registration side effect)
from pipeline.data.prepared import PreparedDataset, Split, load_prepared, prepare_dataset
from pipeline.data.raw import RawDataset, Source
from pipeline.data.registry import DATASETS

__all__ = ["DATASETS", "PreparedDataset", "RawDataset", "Source", "Split", "load_prepared", "prepare_dataset"]
