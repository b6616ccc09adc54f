"""Score a classifier on every cell of a corrupted set: top-1 and ECE per (corruption, severity).

The predictor maps uint8 images [B, C, H, W] to logits (the evaluation transform is inside it),
so the SupCon probe and the CE model are scored the same way. Logits are reduced to two numbers
per cell at once (robustness.cell_metrics): a cell of ImageNet-C has 50 000 x 1000 of them.
Batches run across cell boundaries: a cell smaller than a batch (a capped or miniature set) would
otherwise pay a whole forward pass for a few images, 75 times per model.
"""

import time
from collections.abc import Iterable, Iterator

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


Cell = tuple[str, int]


def packed_batches(corrupted: CorruptedSet, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[tuple[Cell, int]]]]:
    """Every cell's images in order, in batches of `batch_size` (the last may be smaller) that
    may span several cells: (images, labels, [(cell, how many of the batch's rows), ...])."""
    images, labels, spans, held = [], [], [], 0
    for cell in corrupted.cells():
        for x, y in corrupted.batches(*cell, batch_size):
            while len(x):
                take = min(len(x), batch_size - held)
                images.append(x[:take]), labels.append(y[:take]), spans.append((cell, take))
                x, y, held = x[take:], y[take:], held + take
                if held == batch_size:
                    yield torch.cat(images), torch.cat(labels), spans
                    images, labels, spans, held = [], [], [], 0
    if held:
        yield torch.cat(images), torch.cat(labels), spans


@torch.no_grad()
def score_cells(predictor: nn.Module, corrupted: CorruptedSet, *, device: torch.device, batch_size: int, name: str) -> dict[Cell, dict]:
    """{(corruption, severity): {top1, ece}}; a cell's logits are reduced as soon as it is complete."""
    predictor.eval()
    pending: dict[Cell, tuple[list, list]] = {}
    cells = {}
    progress = tqdm(total=len(corrupted.cells()), desc=f"scoring {name}", disable=None)

    def finish(cell: Cell) -> None:
        logits, labels = pending.pop(cell)
        cells[cell] = cell_metrics(torch.cat(logits), torch.cat(labels))
        progress.update()

    for images, labels, spans in packed_batches(corrupted, batch_size):
        with autocast(device):
            out = predictor(to_input(images, device)).float().cpu()
        start = 0
        for cell, count in spans:
            logits, targets = pending.setdefault(cell, ([], []))
            logits.append(out[start : start + count]), targets.append(labels[start : start + count])
            start += count
        for cell in list(pending)[:-1]:  # cells come in order: all but the last one seen are complete
            finish(cell)
    for cell in list(pending):
        finish(cell)
    progress.close()
    return cells


def score_corrupted(predictor: nn.Module, corrupted: CorruptedSet, *, device: torch.device, batch_size: int, name: str) -> dict:
    """{"clean": {top1, ece}, "cells": {(corruption, severity): {top1, ece}}, "images_per_s"}."""
    started = time.perf_counter()
    clean = cell_metrics(*logits_of(predictor, corrupted.clean_batches(batch_size), device))
    cells = score_cells(predictor, corrupted, device=device, batch_size=batch_size, name=name)
    images = corrupted.num_images * (len(cells) + 1)
    return {"clean": clean, "cells": cells, "images_per_s": images / (time.perf_counter() - started)}
