"""Throughput of one SupCon training step: this pipeline against a SupContrast-style loop.

    python -m bench.bench_train_step [--quick] [--json PATH] [--device cpu|cuda]
        [--encoder small_resnet|resnet50] [--image-size N] [--batch N] [--channels C]
        [--workers N] [--width N] [--depth N] [--blocks N]

One step: two SimAugment views of a batch of uint8 images, forward, loss, backward, SGD step.
Both cases train the same encoder + MLP head (same initial weights) on the same random images
with 10 classes, at T = 0.1, with SGD (momentum 0.9, weight decay 1e-4).
- `pipeline`: what `pipeline.engine.fit` runs for SupCon. A uint8 batch from the in-memory
  `TensorBatches` source, moved to the device; two views from `MultiView(build_augmentation(
  "simaugment"), 2)` on the device; the model placed by `pipeline.device.place_model`
  (contiguous on the CPU; channels_last and bf16 autocast on CUDA); `contrastive_loss` (supcon_loss); the engine's own
  `_train_step` with the SGD + per-step schedule of `recipe.optimizer_and_schedule`.
- `reference`: the loop of HobbitLong/SupContrast's main_supcon.py. A DataLoader (shuffle,
  `workers` processes, pin_memory on CUDA) over a Dataset that builds a PIL image per item, as
  torchvision's datasets do, and applies TwoCropTransform(RandomResizedCrop(S, scale=(0.2, 1)),
  RandomHorizontalFlip, RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
  RandomGrayscale(0.2), ToTensor, Normalize); then torch.cat of the views, float32 NCHW
  forward, the dense loss formulation (bench.bench_loss.dense_supcon_loss), torch.optim.SGD.
  cudnn.benchmark is on for this case only, as that script sets it.
Workers and the training process share the CPU: on a 2-core machine they compete with the
model for it, which is the cost the reference loop pays there.

Timing: each step is timed from the end of the previous one (so the reference's wait for its
next batch counts) to the end of its optimizer step, after torch.cuda.synchronize on CUDA. The
cases alternate in rounds; each round starts fresh DataLoader workers and skips warmup steps
(the reference skips 2 + its prefetched batches, so that a queue filled during warmup does not
flatter it). images/s = batch / median step time; each input image yields two views.
"""

import argparse
import copy
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from bench.bench_loss import dense_supcon_loss
from bench.common import machine_info, synchronizer
from pipeline.augment import MultiView, build_augmentation
from pipeline.batches import TensorBatches
from pipeline.config import MemoryConfig, OptimizerConfig, SupConConfig
from pipeline.device import place_model
from pipeline.engine import Loop, _train_step  # the loop's own step: the bench times what fit runs
from pipeline.methods.contrastive import contrastive_loss, key_memory
from pipeline.models import build_supcon_model
from pipeline.preprocess import Normalize
from pipeline.recipe import optimizer_and_schedule

CASES = ("pipeline", "reference")
# What the pipeline ran on the CPU before issue 7: the same step with model and inputs
# channels_last. Wrong gradients or a crash on AVX2-only CPUs, so opt-in (--channels-last-case),
# timed only to show what the contiguous layout costs on a CPU where channels_last works.
CHANNELS_LAST = "pipeline_channels_last"
CLASSES, TEMPERATURE, LR, MOMENTUM, WEIGHT_DECAY = 10, 0.1, 0.05, 0.9, 1e-4
WARMUP = 2  # steps skipped per round: first-call kernel selection and allocations
PREFETCH = 2  # DataLoader's default prefetch_factor: batches queued per worker
FULL, QUICK = (3, 8), (1, 5)  # (rounds, timed steps per case per round)
# Fashion-MNIST statistics for one channel, CIFAR-10's (as SupContrast uses) for three.
STATS = {1: ((0.2860,), (0.3530,)), 3: ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}


def default_channels(image_size: int) -> int:
    """1 channel at 28 px (Fashion-MNIST-like), 3 otherwise (CIFAR- or ImageNet-like)."""
    return 1 if image_size == 28 else 3


class TwoCropTransform:
    """SupContrast's TwoCropTransform: two independent draws of a transform of one image."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, x):
        return [self.transform(x), self.transform(x)]


class PILDataset(Dataset):
    """uint8 images [N, C, S, S] served as PIL images through `transform`, as torchvision's do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        arrays = images.permute(0, 2, 3, 1).numpy()  # HWC, as torchvision's CIFAR stores them
        self.arrays = arrays[..., 0] if arrays.shape[-1] == 1 else arrays
        self.labels, self.transform = labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = Image.fromarray(np.ascontiguousarray(self.arrays[i]))
        return self.transform(image), self.labels[i]


def reference_transform(image_size: int, channels: int) -> TwoCropTransform:
    """main_supcon.py's training transform, two crops per image."""
    mean, std = STATS[channels]
    return TwoCropTransform(T.Compose([
        T.RandomResizedCrop(image_size, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(mean, std),
    ]))  # fmt: skip


def _time_steps(batches: Iterable, step: Callable, warmup: int, sync: Callable[[], None]) -> list[float]:
    """Seconds per step after `warmup` steps; fetching the next batch counts towards a step."""
    batches = iter(batches)
    for batch in itertools.islice(batches, warmup):
        step(batch)
    sync()
    times, last = [], time.perf_counter()
    for batch in batches:
        step(batch)
        sync()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def pipeline_loop(
    model, images, labels, batch: int, device: torch.device, *,
    memory: MemoryConfig | None = None, feat_dim: int = 128, num_items: int | None = None, channels_last: bool = False,
) -> Loop:
    """The Loop that `pipeline.training.train` builds for SupCon (pipeline.methods.contrastive),
    over the in-memory uint8 `images`: augmentation views, the placed model, `contrastive_loss`,
    SGD with the per-step schedule of `num_items` images (default len(images)). With memory.size > 0
    the KeyMemory of `key_memory` (queue of `feat_dim` keys, momentum key encoder) is loop.state
    and its EMA update loop.after_step, as in training; channels_last: the model in channels_last."""
    channels, size = images.shape[1], images.shape[-1]
    num_items = len(images) if num_items is None else num_items
    config = SupConConfig(batch_size=batch, temperature=TEMPERATURE, memory=memory or MemoryConfig())
    state = key_memory(model, config, dim=feat_dim, num_items=num_items, device=device)
    placed = place_model(model, device)
    if channels_last:  # a channels_last weight makes the convolutions run channels_last
        placed = placed.to(memory_format=torch.channels_last)
    views = MultiView(build_augmentation("simaugment", image_size=size, channels=channels), 2).to(device)
    normalize = Normalize(*STATS[channels]).to(device)
    optimizer, scheduler = optimizer_and_schedule(
        placed, OptimizerConfig(name="sgd", lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
        num_items=num_items, batch_size=batch, epochs=1000,
    )  # fmt: skip
    loss = contrastive_loss(views, normalize, config, state)
    placed.train()
    return Loop(
        name="bench", model=placed, optimizer=optimizer, scheduler=scheduler,
        loss_fn=lambda inputs, targets: loss(placed, inputs, targets),
        batches=TensorBatches(images, labels, batch_size=batch, seed=0), epochs=1,
        after_step=None if state is None else partial(state.after_step, model), state=state,
    )  # fmt: skip


def _pipeline_case(model, images, labels, batch: int, device: torch.device, channels_last: bool = False) -> Callable[[int, int], list[float]]:
    """fn(round, steps) -> step times of the pipeline's training step (optionally channels_last)."""
    loop = pipeline_loop(model, images, labels, batch, device, channels_last=channels_last)

    def timed(round_: int, steps: int) -> list[float]:
        order = itertools.islice(loop.batches.epoch(round_, rank=0, world_size=1), WARMUP + steps)
        return _time_steps(order, lambda batch_: _train_step(loop, device, *batch_), WARMUP, synchronizer(device.type))

    return timed


def _reference_case(
    model, images, labels, batch: int, device: torch.device, workers: int
) -> Callable[[int, int], list[float]]:
    """fn(round, steps) -> step times of the SupContrast-style loop, with fresh workers per round."""
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    dataset = PILDataset(images, labels, reference_transform(images.shape[-1], images.shape[1]))
    warmup = WARMUP + workers * PREFETCH
    model.train()

    def step(data) -> None:
        (view1, view2), targets = data
        inputs = torch.cat([view1, view2], dim=0).to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        size = targets.shape[0]
        f1, f2 = torch.split(model(inputs), [size, size], dim=0)
        loss = dense_supcon_loss(torch.cat([f1.unsqueeze(1), f2.unsqueeze(1)], dim=1), targets, TEMPERATURE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def timed(round_: int, steps: int) -> list[float]:
        # The dataset holds warmup + steps batches: the iterator ends there and its workers exit,
        # so they do not keep preparing batches while the other case is timed.
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                            pin_memory=device.type == "cuda", drop_last=True)  # fmt: skip
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # main_supcon.py sets it
        try:
            return _time_steps(loader, step, warmup, synchronizer(device.type))
        finally:
            torch.backends.cudnn.benchmark = benchmark

    return timed


def run(
    quick: bool = False,
    device: str = "cpu",
    *,
    encoder: str = "small_resnet",
    image_size: int = 28,
    batch: int = 256,
    channels: int | None = None,
    workers: int = 2,
    width: int = 32,
    depth: int = 3,
    blocks: int = 1,
    channels_last_case: bool = False,
) -> list[dict]:
    """One row per case: median ms per step, images/s and the speed-up over the reference."""
    channels = channels or default_channels(image_size)
    rounds, steps = QUICK if quick else FULL
    torch_device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    reference_warmup = WARMUP + workers * PREFETCH
    num_items = (reference_warmup + steps) * batch  # one reference round, no more
    images = torch.randint(0, 256, (num_items, channels, image_size, image_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, CLASSES, (num_items,), generator=gen)
    torch.manual_seed(0)
    model = build_supcon_model(
        encoder, in_channels=channels, image_size=image_size, width=width, depth=depth, blocks=blocks
    )
    cases = {
        "pipeline": _pipeline_case(copy.deepcopy(model), images, labels, batch, torch_device),
        "reference": _reference_case(copy.deepcopy(model), images, labels, batch, torch_device, workers),
    }
    if channels_last_case:
        cases[CHANNELS_LAST] = _pipeline_case(copy.deepcopy(model), images, labels, batch, torch_device, channels_last=True)
    names = tuple(cases)
    times: dict[str, list[float]] = {case: [] for case in names}
    for round_ in range(rounds):
        # Alternate which case goes first, so a drift in machine load hits all alike.
        for case in names if round_ % 2 == 0 else names[::-1]:
            times[case] += cases[case](round_, steps)
    medians = {case: statistics.median(ts) for case, ts in times.items()}
    rows = []
    for case in names:
        rows.append({
            "bench": "train_step", "case": case, "device": device, "encoder": encoder,
            "width": width, "depth": depth, "blocks": blocks, "image_size": image_size,
            "channels": channels, "batch": batch, "views": 2,
            "workers": workers if case == "reference" else 0, "threads": torch.get_num_threads(),
            "steps_timed": len(times[case]), "ms_per_step": 1000 * medians[case],
            "images_per_s": batch / medians[case],
            "images_per_s_mean": batch * len(times[case]) / sum(times[case]),
            "speedup_vs_reference": medians["reference"] / medians[case],
        })  # fmt: skip
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Rows of run() -> a markdown table."""
    lines = [
        "| encoder | input | batch | case | device | workers | ms/step | images/s | x reference |",
        "|---|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        encoder = r["encoder"]
        if encoder == "small_resnet":
            encoder += f" w{r['width']} d{r['depth']} b{r['blocks']}"
        lines.append(
            f"| {encoder} | {r['image_size']}x{r['image_size']}x{r['channels']} | {r['batch']} | {r['case']} "
            f"| {r['device']} | {r['workers']} | {r['ms_per_step']:.0f} | {r['images_per_s']:,.0f} "
            f"| {r['speedup_vs_reference']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 5 timed steps per case")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--encoder", default="small_resnet", help="a registered encoder, e.g. resnet50")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=256, help="images per step (each gives two views)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="default: 1 at 28 px, else 3")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--width", type=int, default=32, help="small_resnet only")
    parser.add_argument("--depth", type=int, default=3, help="small_resnet only")
    parser.add_argument("--blocks", type=int, default=1, help="small_resnet only")
    parser.add_argument("--channels-last-case", action="store_true",
                        help="also time the step in channels_last (crashes or is inaccurate on AVX2-only CPUs)")
    args = parser.parse_args(argv)
    options = vars(args)
    json_path = options.pop("json")
    info = machine_info()  # before the run: the load average is other processes' load
    rows = run(**options)
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['torch_threads']} threads"
          + (f", {info['cuda_device']}" if info["cuda_device"] else ""))
    print(markdown_table(rows))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
