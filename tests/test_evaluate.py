"""Metrics against plain float64 references."""

import numpy as np
import pytest
import torch

from pipeline.evaluate import classification_metrics, confusion_matrix, expected_calibration_error, knn_predict, knn_top1, topk_accuracy


def reference_topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    hits = [label in np.argsort(-row)[:k] for row, label in zip(logits, labels)]
    return float(np.mean(hits))


def reference_ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    confidence, predicted = probs.max(1), probs.argmax(1)
    total = 0.0
    edges = np.linspace(0, 1, bins + 1)
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(confidence[inside].mean() - (predicted[inside] == labels[inside]).mean())
    return total


def reference_knn(bank, bank_labels, queries, k, num_classes, temperature=0.07):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = np.zeros((len(queries), num_classes))
    for i, query in enumerate(queries):
        sims = bank @ query
        for j in np.argsort(-sims)[:k]:
            scores[i, bank_labels[j]] += np.exp(sims[j] / temperature)
    return scores


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_matches_reference(k):
    rng = np.random.default_rng(k)
    logits, labels = rng.normal(size=(200, 12)), rng.integers(0, 12, 200)
    got = topk_accuracy(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels), k)
    assert got == pytest.approx(reference_topk(logits, labels, k), abs=1e-6)


def test_ece_matches_reference():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(scale=3, size=(500, 10)), rng.integers(0, 10, 500)
    got = expected_calibration_error(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels))
    assert got == pytest.approx(reference_ece(logits, labels), abs=1e-5)


@pytest.mark.parametrize("chunk", [7, 1024])
def test_knn_matches_reference(chunk):
    rng = np.random.default_rng(1)
    bank, bank_labels = rng.normal(size=(300, 16)), rng.integers(0, 5, 300)
    queries = rng.normal(size=(40, 16))
    got = knn_predict(torch.tensor(bank), torch.tensor(bank_labels), torch.tensor(queries), num_classes=5, k=10, chunk=chunk)
    expected = reference_knn(bank, bank_labels, queries, 10, 5)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-4)


def test_knn_top1_on_separable_clusters_is_perfect():
    centers = torch.eye(4) * 10
    labels = torch.arange(4).repeat_interleave(25)
    points = centers[labels] + torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    assert knn_top1(points, labels, points, labels, num_classes=4, k=5) == 1.0


def test_confusion_matrix_counts_rows_as_true_classes():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    labels = torch.tensor([0, 0, 1, 2])
    assert confusion_matrix(logits, labels).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_classification_metrics_adds_top5_only_above_ten_classes():
    assert "test/top5" not in classification_metrics(torch.randn(8, 10), torch.zeros(8, dtype=torch.long), "test")
    assert "test/top5" in classification_metrics(torch.randn(8, 11), torch.zeros(8, dtype=torch.long), "test")
