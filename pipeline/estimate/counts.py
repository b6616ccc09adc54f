"""How many images the stages train and score on, before any data is here.

From a prepared store's manifest when it matches the params (the real per-class counts), else
from the dataset's published sizes. The same rules as `prepare` and the stages
(pipeline/data/splits.py): val holds round(val_fraction x n) of each class (at most n - 1), a
labelled fraction keeps max(1, round(fraction x n)) of each class, and the corrupted test set a
stratified round(max_images / test x n) per class.
"""

import math
from dataclasses import dataclass

from pipeline.config import DataConfig
from pipeline.data.splits import round_half_up
from pipeline.errors import UserError


@dataclass(frozen=True)
class Published:
    """A dataset's published splits: image counts, native side length, channels, classes."""

    train: int
    test: int
    image_size: int | None
    """None: no native size (ImageNet's images vary; data.image_size sets the crop)."""
    channels: int
    classes: int


PUBLISHED = {
    "fashion_mnist": Published(train=60_000, test=10_000, image_size=28, channels=1, classes=10),
    "cifar10": Published(train=50_000, test=10_000, image_size=32, channels=3, classes=10),
    "cifar100": Published(train=50_000, test=10_000, image_size=32, channels=3, classes=100),
    "imagenet": Published(train=1_281_167, test=50_000, image_size=None, channels=3, classes=1000),  # test: the official val images
}


@dataclass(frozen=True)
class Counts:
    """Per-class image counts of the prepared splits, and the image shape the models see."""

    train: tuple[int, ...]
    """Per class, after val is carved out: the labelled train split."""
    val: int
    test: tuple[int, ...]
    """Per class."""
    channels: int
    image_size: int
    source: str
    """Where the counts come from, for the table's notes."""

    @property
    def classes(self) -> int:
        return len(self.train)

    def labelled(self, fraction: float) -> int:
        """Train images in a nested labelled fraction (data.train_fraction, a reduced-data cell)."""
        return sum(self.labelled_per_class(fraction))

    def labelled_per_class(self, fraction: float) -> list[int]:
        if math.isclose(fraction, 1.0):
            return list(self.train)
        return [max(1, round_half_up(fraction * n)) for n in self.train]

    def corrupted(self, max_images: int | None) -> int:
        """Test images the corrupt stage keeps (a stratified subset of about max_images)."""
        total = sum(self.test)
        if max_images is None or max_images >= total:
            return total
        return sum(min(round_half_up(max_images / total * n), n - 1) for n in self.test)


def counts_for(data: DataConfig, manifest: dict | None, *, where: str = "the prepared store's manifest") -> Counts:
    """Counts of data.dataset: the manifest's (read from `where`) when it was prepared with these
    data params, else the published ones."""
    if manifest is not None and _matches(manifest, data):
        return from_manifest(manifest, source=where)
    return from_published(data.dataset, data.image_size, data.val_fraction)


def _matches(manifest: dict, data: DataConfig) -> bool:
    return manifest.get("dataset") == data.dataset and manifest.get("val_fraction") == data.val_fraction and manifest.get("image_size") == data.image_size


def from_manifest(manifest: dict, *, source: str) -> Counts:
    names = manifest["class_names"]
    per_class = {split: tuple(manifest["counts"][split][name] for name in names) for split in ("train", "test")}
    channels, size = manifest["image_shape"][0], manifest["image_shape"][1]
    return Counts(per_class["train"], sum(manifest["counts"]["val"].values()), per_class["test"], channels, size, source)


def from_published(dataset: str, image_size: int | None, val_fraction: float) -> Counts:
    """Balanced classes of the published totals, val carved out per class as `prepare` does."""
    if dataset not in PUBLISHED:
        raise UserError(f"data.dataset = {dataset}: its image counts are only known once prepared; run `dvc repro prepare` first, the estimate reads its manifest")
    shape = PUBLISHED[dataset]
    size = image_size or shape.image_size
    if size is None:
        raise UserError(f"data.image_size = null: {dataset} needs the size it is trained at (224 in the presets)")
    train = _balanced(shape.train, shape.classes)
    held = [min(round_half_up(val_fraction * n), n - 1) for n in train]
    source = f"the published sizes of {dataset} ({shape.train:,} train, {shape.test:,} test; no prepared store with these data params here)"
    return Counts(tuple(n - v for n, v in zip(train, held)), sum(held), _balanced(shape.test, shape.classes), shape.channels, size, source)


def _balanced(total: int, classes: int) -> tuple[int, ...]:
    """total images over classes as evenly as possible (ImageNet's classes differ a little; the sums are exact)."""
    base, extra = divmod(total, classes)
    return tuple(base + (1 if c < extra else 0) for c in range(classes))
