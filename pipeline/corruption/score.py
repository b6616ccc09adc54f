"""Score a classifier on every cell of a corrupted set: top-1 and ECE per (corruption, severity).

The predictor maps uint8 images [B, C, H, W] to logits (the evaluation transform is inside it),
so the SupCon probe and the CE model are scored the same way. Logits are reduced to two numbers
per cell at once (robustness.cell_metrics): a cell of ImageNet-C has 50 000 x 1000 of them.
"""

import time
from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.corruption.store import CorruptedSet
from pipeline.device import autocast, to_input
from pipeline.robustness import cell_metrics


@torch.no_grad()
def logits_of(predictor: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, K] float32 on the CPU, labels [N]) over every batch, in order."""
    predictor.eval()
    logits, labels = [], []
    for images, targets in batches:
        with autocast(device):
            logits.append(predictor(to_input(images, device)).float().cpu())
        labels.append(targets)
    return torch.cat(logits), torch.cat(labels)


def score_corrupted(predictor: nn.Module, corrupted: CorruptedSet, *, device: torch.device, batch_size: int, name: str) -> dict:
    """{"clean": {top1, ece}, "cells": {(corruption, severity): {top1, ece}}, "images_per_s"}."""
    started = time.perf_counter()
    clean = cell_metrics(*logits_of(predictor, corrupted.clean_batches(batch_size), device))
    cells = {}
    for corruption, severity in tqdm(corrupted.cells(), desc=f"scoring {name}", disable=None):
        cells[corruption, severity] = cell_metrics(*logits_of(predictor, corrupted.batches(corruption, severity, batch_size), device))
    images = corrupted.num_images * (len(cells) + 1)
    return {"clean": clean, "cells": cells, "images_per_s": images / (time.perf_counter() - started)}
