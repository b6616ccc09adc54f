"""Corrupted test sets: images generated per second per corruption, and images scored per second.

    python -m bench --only corruption [--quick] [--device cpu|cuda]

Generation: `corrupt_image` (imagecorruptions at ImageNet-C parameters, 28 px grayscale resized
to 32 px, as the default run does) per corruption at severity 3, median of single-image times
after a warm-up (glass_blur's numba compile is not counted); then `corrupted_chunks` over all
corruptions with 1 process and with every core, side by side: the parallel speed-up.
Scoring: `score_corrupted` of the default model (width-16 small ResNet, 28 px) against a plain
`predict` over the same images, images/s.
"""

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.config import COMMON_CORRUPTIONS
from pipeline.corruption.generate import corrupt_image, corrupted_chunks
from pipeline.corruption.score import score_corrupted
from pipeline.corruption.store import CorruptedSet
from pipeline.models import build_ce_model
from pipeline.preprocess import eval_preprocess, predict


def _images(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:28, 0:28] / 28
    return np.clip(60 + 120 * (x + y) / 2 + rng.normal(0, 8, (n, 1, 28, 28)), 0, 255).astype(np.uint8)


def _per_image_ms(image: np.ndarray, name: str, repeats: int) -> float:
    corrupt_image(image, name, 3)  # warm-up (numba compiles glass_blur here)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        corrupt_image(image, name, 3)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _generation_rows(quick: bool) -> list[dict]:
    image = _images(1)[0]
    rows = [{"case": f"corrupt_image {name}", "ms_per_image": _per_image_ms(image, name, 5 if quick else 20)} for name in COMMON_CORRUPTIONS]
    images, cores = _images(100 if quick else 500), len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "clean.npy"  # the generator's workers read the clean images from a .npy
        np.save(source, images)
        for workers in sorted({1, cores}):
            started = time.perf_counter()
            for _ in corrupted_chunks(source, COMMON_CORRUPTIONS, [3], seed=0, workers=workers):
                pass
            seconds = time.perf_counter() - started
            rows.append({"case": f"generate, 15 corruptions, {workers} process(es)", "images_per_s": len(images) * 15 / seconds, "seconds": seconds})
    return rows


def _scoring_rows(quick: bool, device: torch.device) -> list[dict]:
    n = 2000 if quick else 10000
    images, labels = torch.from_numpy(_images(n)), torch.arange(n) % 10
    preprocess = eval_preprocess(28, 1, [0.5], [0.25]).to(device)
    model = build_ce_model("small_resnet", in_channels=1, image_size=28, num_classes=10, width=16, depth=3, blocks=1).to(device).eval()
    predictor = nn.Sequential(preprocess, model)

    def cell(name, level, batch_size):
        return ((images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size))

    corrupted = CorruptedSet(["fog"], [3], n, cell, lambda batch_size: cell("fog", 3, batch_size), "bench")
    scored = score_corrupted(predictor, corrupted, device=device, batch_size=500, name="bench")
    started = time.perf_counter()
    for _ in range(2):  # clean + one cell, as above
        predict(model, images, preprocess=preprocess, device=device, batch_size=500)
    plain = 2 * n / (time.perf_counter() - started)
    return [
        {"case": "score_corrupted (logits + top-1 + ECE per cell)", "images_per_s": scored["images_per_s"]},
        {"case": "plain predict (logits only)", "images_per_s": plain},
    ]


def run(quick: bool, device: str) -> list[dict]:
    return _generation_rows(quick) + _scoring_rows(quick, torch.device(device))


def format_table(rows: list[dict]) -> str:
    lines = ["| case | ms per image | images/s |", "| --- | ---: | ---: |"]
    for row in rows:
        ms = f"{row['ms_per_image']:.2f}" if "ms_per_image" in row else ""
        rate = f"{row['images_per_s']:.0f}" if "images_per_s" in row else ""
        lines.append(f"| {row['case']} | {ms} | {rate} |")
    return "\n".join(lines)
