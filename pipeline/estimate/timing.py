"""Time the real computations on this machine: training steps through `pipeline.training.train`,
forward passes through `preprocess.predict`, and the corruption functions of `corrupt`.

Each is timed on synthetic uint8 images of the dataset's shape (the data need not be here), with
the params' model, loss, augmentation and optimizer; the first step of each is a warm-up
(allocations, kernel selection) and is discarded. Timing stops after `timed` steps (TIMED_STEPS),
or sooner once the timed steps took TIMED_BUDGET_S (a ResNet-50 step on a CPU takes seconds).
"""

import contextlib
import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.config import ModelConfig, TrainingConfig
from pipeline.data import PreparedDataset, Split
from pipeline.device import place_model
from pipeline.models import build_ce_model, build_supcon_model
from pipeline.preprocess import eval_preprocess, predict
from pipeline.recipe import model_spec
from pipeline.run_context import RunContext
from pipeline.training import train

WARMUP_STEPS = 1
TIMED_STEPS = 5
TIMED_BUDGET_S = 4.0


class _Enough(Exception):
    """Raised from the epoch callback to stop timing once enough steps were timed."""


def synthetic(channels: int, image_size: int, classes: int, count: int) -> PreparedDataset:
    """`count` random uint8 images [C, S, S] as a train split (labels cycling over the classes); no val, no test."""
    images = torch.randint(0, 256, (count, channels, image_size, image_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(count) % classes
    empty = Split(images[:0], labels[:0])
    manifest = {"class_names": [f"class{i}" for i in range(classes)], "image_shape": [channels, image_size, image_size], "mean": [0.5] * channels, "std": [0.25] * channels}
    return PreparedDataset(Path("synthetic"), Split(images, labels), empty, empty, manifest, {})


def time_training(
    section: str, config: TrainingConfig, data: PreparedDataset, *, model_config: ModelConfig, device: torch.device,
    compile_model: bool = False, timed: int = TIMED_STEPS,
) -> list[float]:
    """Seconds of each timed optimizer step of section `section` (supcon, ce, linear) at batch
    len(data.train): `train` runs one-step epochs, and each epoch's train time is one step.
    compile_model: run.compile (CUDA only), as the stages place the model."""
    timing = {"epochs": WARMUP_STEPS + timed, "batch_size": len(data.train), "optimizer": replace(config.optimizer, warmup_epochs=0)}
    if section == "supcon":
        timing["knn_every"] = 0  # the monitor is priced as inference
    seconds: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        seconds.append(metrics["train/epoch_time_s"])
        if _enough(seconds, timed):
            raise _Enough

    encoder = _encoder(model_config, data) if section == "linear" else None  # a random one costs what a trained one does
    run = RunContext(seed=0, device=device, on_epoch=on_epoch, wrap=partial(place_model, device=device, compile_model=compile_model))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(_Enough):  # `fit` prints epoch lines
        train(section, data, data.train, config=replace(config, **timing), run=run, model_config=model_config, encoder=encoder)
    return seconds[WARMUP_STEPS:]


def time_inference(data: PreparedDataset, *, model_config: ModelConfig, device: torch.device, timed: int = TIMED_STEPS) -> list[float]:
    """Seconds of each timed forward pass over data.train in one batch: the evaluation transform,
    the encoder and a linear layer, as val passes, kNN embeddings, test and robustness scoring run."""
    spec = model_spec(model_config, channels=data.channels, image_size=data.image_size)
    model = place_model(build_ce_model(**spec, num_classes=data.num_classes), device)
    preprocess = eval_preprocess(data.image_size, data.channels, data.mean, data.std).to(device)
    seconds: list[float] = []
    while not _enough(seconds, timed):
        started = time.perf_counter()
        predict(model, data.train.images, preprocess=preprocess, device=device, batch_size=len(data.train))  # returns on the CPU: synchronised
        seconds.append(time.perf_counter() - started)
    return seconds[WARMUP_STEPS:]


def time_corruption(images: np.ndarray, corruptions: Sequence[str], severities: Sequence[int]) -> tuple[float, float]:
    """(seconds per corrupted image, the mean over every corruption x severity cell; start-up
    seconds: importing imagecorruptions and compiling glass_blur, which every worker pays).

    images: uint8 [2, C, H, W]; the first call of a cell is discarded (numba compiles per severity).
    """
    started = time.perf_counter()
    from pipeline.corruption.generate import MIN_SIZE, corrupt_image

    if "glass_blur" in corruptions:
        corrupt_image(np.zeros((3, MIN_SIZE, MIN_SIZE), dtype=np.uint8), "glass_blur", 1)
    startup = time.perf_counter() - started
    cells = []
    for name in corruptions:
        for level in severities:
            corrupt_image(images[0], name, level)
            started = time.perf_counter()
            corrupt_image(images[1], name, level)
            cells.append(time.perf_counter() - started)
    return statistics.fmean(cells), startup


def _enough(seconds: list[float], timed: int) -> bool:
    done = seconds[WARMUP_STEPS:]
    return len(done) >= timed or (len(done) >= 1 and sum(done) >= TIMED_BUDGET_S)


def _encoder(model_config: ModelConfig, data: PreparedDataset) -> nn.Module:
    spec = model_spec(model_config, channels=data.channels, image_size=data.image_size)
    return build_supcon_model(**spec, head=model_config.head, feat_dim=model_config.feat_dim).encoder


TimeAt = Callable[[int, int], list[float]]
"""(batch, timed steps) -> seconds of each timed step at a batch of that many images."""
