"""The dataset registry: params.yaml's `data.dataset` names one of these loaders.

A loader is `fn(*, root, download, image_size, workdir) -> RawDataset` (see raw.py); adding a
dataset is one function plus `@DATASETS.register("name")`.
"""

from pipeline.registry import Registry

DATASETS = Registry("dataset")
