"""Scoring a corrupted set: batches run across cell boundaries, and every cell still gets exactly
its own images' top-1 and ECE (checked against a float64 reference computed cell by cell)."""

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.corruption import generate
from pipeline.corruption.score import packed_batches, score_cells, score_corrupted
from pipeline.corruption.store import open_corrupted, write_generated
from test_corruption_store import _dataset

CORRUPTIONS, SEVERITIES, N, CLASSES = ["fog", "snow"], [2, 4], 7, 3


def _random_cell(images: np.ndarray, corruption: str, severity: int, seed: int, start: int) -> np.ndarray:
    """Stands in for corrupt_chunk: different random pixels in every cell and chunk."""
    rng = np.random.default_rng([CORRUPTIONS.index(corruption), severity, start])
    return rng.integers(0, 256, images[start : start + generate.CHUNK].shape, dtype=np.uint8)


@pytest.fixture
def store(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (N, 1, 8, 8), dtype=np.uint8)
    labels = np.arange(N) % CLASSES
    monkeypatch.setattr(generate, "corrupt_chunk", _random_cell)
    write_generated(tmp_path / "store", indices=np.arange(N), clean=clean, labels=labels, corruptions=CORRUPTIONS, severities=SEVERITIES, seed=0, workers=1)
    return open_corrupted(tmp_path / "store", _dataset(clean, labels, classes=CLASSES))


class Predictor(nn.Module):
    """uint8 images -> logits, as the scored models are (their evaluation transform is inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.to(self.linear.weight.dtype).flatten(1) / 255)


def reference(predictor: Predictor, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 and 15-bin ECE of one cell in float64, with numpy."""
    weight, bias = (p.detach().double().numpy() for p in (predictor.linear.weight, predictor.linear.bias))
    logits = images.reshape(len(images), -1).astype(np.float64) / 255 @ weight.T + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    confidence, correct = probs.max(1), (probs.argmax(1) == labels)
    bins = np.minimum((confidence * 15).astype(int) - (confidence * 15 == np.floor(confidence * 15)), 14)  # right-closed bins
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean() for b in range(15) if (bins == b).any())
    return {"top1": correct.mean(), "ece": ece}


@pytest.mark.parametrize("batch_size", [3, 4, 7, 64])
def test_batches_span_cells_and_give_each_cell_its_rows_in_order(store, batch_size):
    batches = list(packed_batches(store, batch_size))
    assert [len(labels) for _, labels, _ in batches[:-1]] == [batch_size] * (len(batches) - 1)
    rows: dict = {}
    for images, labels, spans in batches:
        assert sum(count for _, count in spans) == len(images) == len(labels)
        start = 0
        for cell, count in spans:
            rows.setdefault(cell, []).append(images[start : start + count])
            start += count
    assert list(rows) == store.cells()
    for cell in store.cells():
        whole = torch.cat([images for images, _ in store.batches(*cell, batch_size=N)])
        assert torch.equal(torch.cat(rows[cell]), whole)


@pytest.mark.parametrize("batch_size", [3, 7, 64])
def test_every_cell_scores_as_its_own_images_alone_in_float64(store, batch_size):
    torch.manual_seed(0)
    predictor = Predictor()
    scores = score_cells(predictor, store, device=torch.device("cpu"), batch_size=batch_size, name="test")
    assert list(scores) == store.cells()
    for cell in store.cells():
        images, labels = (torch.cat(parts).numpy() for parts in zip(*store.batches(*cell, batch_size=N)))
        expected = reference(predictor, images, labels)
        assert scores[cell]["top1"] == pytest.approx(expected["top1"], abs=1e-6)
        assert scores[cell]["ece"] == pytest.approx(expected["ece"], abs=1e-6)


def test_the_whole_score_counts_clean_and_corrupted_images(store):
    scored = score_corrupted(Predictor(), store, device=torch.device("cpu"), batch_size=5, name="test")
    assert set(scored["cells"]) == set(store.cells()) and set(scored["clean"]) == {"top1", "ece"} and scored["images_per_s"] > 0
