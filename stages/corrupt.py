"""Stage `corrupt`: the corrupted test set robustness is scored on, written once to data/corrupted/<dataset>.

Generated from the prepared test split (or a stratified subset of robustness.max_images) with
the ImageNet-C corruptions, in parallel over processes; or, with robustness.released, a checked
pointer to a released set (CIFAR-10-C, CIFAR-100-C, ImageNet-C) that is read in place.
"""

import os
from pathlib import Path

import numpy as np
import torch

from pipeline.config import Params, RobustnessConfig
from pipeline.corruption.released import released_reader
from pipeline.corruption.store import reader_options, write_generated, write_released
from pipeline.data import PreparedDataset, load_prepared
from pipeline.data.image_files import rows_of
from pipeline.data.splits import stratified_split
from pipeline.errors import UserError
from stages import paths
from stages.cli import run_stage

STAGE = "corrupt"
# Generating ImageNet-C is 3.75M corrupted 224 px images: days on a CPU, so the presets read the release.
GENERATION_MAX_SIZE = 64


def corrupt(params: Params) -> None:
    config, dataset = params.robustness, params.data.dataset
    if config.released is not None and config.released_root is None:
        raise UserError(
            f"robustness.released_root = null: robustness.released = {config.released} reads the released set in place; "
            "download it (Hendrycks & Dietterich: github.com/hendrycks/robustness) and set robustness.released_root to its folder"
        )
    data = load_prepared(paths.prepared(dataset), files_root=params.data.root)
    if config.released is not None:
        _point_at_release(config, data, paths.corrupted(dataset))
    else:
        _generate(params, data, paths.corrupted(dataset))


def _point_at_release(config: RobustnessConfig, data: PreparedDataset, target: Path) -> None:
    """Check the release can be read (every file, layout and shape, labels of the models' classes),
    then store what it is, not where: robustness reads it from robustness.released_root."""
    reader = released_reader(config.released, config.released_root, config.corruptions, config.severities, **reader_options(config.released, data))
    write_released(
        target, kind=config.released, corruptions=config.corruptions, severities=config.severities, num_images=reader.num_images, content=reader.content()
    )
    print(f"{STAGE}: {config.released} at {config.released_root}: {len(reader.cells())} cells of {reader.num_images} images, read in place")


def _generate(params: Params, data: PreparedDataset, target: Path) -> None:
    """Corrupt (a stratified subset of) the prepared test split and write the store at once, streamed."""
    config, dataset = params.robustness, params.data.dataset
    if data.image_size > GENERATION_MAX_SIZE:
        raise UserError(
            f"robustness.released = null but {dataset} images are {data.image_size} px: generating ImageNet-C-sized sets "
            "takes days on a CPU; download the released ImageNet-C and set robustness.released: imagenet-c and robustness.released_root"
        )
    indices = _subset(data.test.labels.numpy(), config.max_images, params.run.seed)
    # the stored arrays, or the eval views of test images read from their files
    picked = rows_of(data.test.images, torch.from_numpy(indices))
    images, labels = (picked if isinstance(picked, torch.Tensor) else picked[:]).numpy(), data.test.labels.numpy()[indices]
    workers = params.run.threads or len(os.sched_getaffinity(0))
    print(f"{STAGE}: {len(config.corruptions)} corruptions x {len(config.severities)} severities of {len(labels)} test images, {workers} processes")
    write_generated(
        target, indices=indices, clean=images, labels=labels, corruptions=config.corruptions, severities=config.severities, seed=params.run.seed, workers=workers
    )
    print(f"{STAGE}: wrote {target}")


def _subset(labels: np.ndarray, max_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a stratified subset of about max_images test images (all when null or larger)."""
    if max_images is None or max_images >= len(labels):
        return np.arange(len(labels))
    _, held = stratified_split(labels, max_images / len(labels), seed)
    return held


def main() -> None:
    run_stage(corrupt)


if __name__ == "__main__":
    main()
