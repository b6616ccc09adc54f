"""Classification metrics: top-k accuracy, kNN accuracy, expected calibration error, confusion matrix.

Top-k, ECE and the confusion matrix come from torchmetrics; the kNN classifier (weighted voting
over cosine neighbours, Wu et al. 2018, as used to monitor contrastive pretraining) is written
here because no library offers it on a precomputed feature bank.
"""

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share of rows whose label is among the k largest logits. logits: [N, C], labels: [N]."""
    num_classes = logits.shape[1]
    return multiclass_accuracy(logits, labels, num_classes=num_classes, top_k=min(k, num_classes), average="micro").item()


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (15, as in the corruption-robustness literature)."""
    probs = logits.float().softmax(dim=1)
    return multiclass_calibration_error(probs, labels, num_classes=logits.shape[1], n_bins=bins, norm="l1").item()


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[C, C] counts; row = true class, column = predicted class."""
    return multiclass_confusion_matrix(logits.argmax(1), labels, num_classes=logits.shape[1])


def per_class_top1(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Top-1 of each class's images (recall), by class index; logits: [N, C], labels: [N]. A
    long-tailed run's mean top-1 hides its tail: the report groups these by train-class size."""
    return multiclass_accuracy(logits, labels, num_classes=logits.shape[1], average=None).tolist()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str) -> dict[str, float]:
    """top1 (and top5 when there are more than 10 classes) and ECE, keyed `<prefix>/<name>`."""
    metrics = {f"{prefix}/top1": topk_accuracy(logits, labels, 1)}
    if logits.shape[1] > 10:
        metrics[f"{prefix}/top5"] = topk_accuracy(logits, labels, 5)
    metrics[f"{prefix}/ece"] = expected_calibration_error(logits, labels)
    return metrics


@torch.no_grad()
def knn_neighbours(
    bank: torch.Tensor, queries: torch.Tensor, *, k: int, chunk: int = 1024, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sims [Q, k], rows [Q, k]): each query's k most similar bank rows by cosine, most similar first.

    bank: [N, D], queries: [Q, D] (any scale; normalised here). Queries go in chunks so memory
    stays O(chunk * N). exclude [Q]: a bank row per query that may not be its neighbour
    (leave-one-out: the query's own row; -1: none). k is capped at the rows there are.
    """
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    k = min(k, bank.shape[0])  # an excluded row can only be picked when k covers the bank: its vote is exp(-inf) = 0
    found = [], []
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start : start + chunk] @ bank.T  # [q, N]
        if exclude is not None:
            own = exclude[start : start + chunk].to(bank.device)
            mine = (own >= 0).nonzero().squeeze(1)
            sims[mine, own[mine]] = -float("inf")
        for part, values in zip(found, sims.topk(k, dim=1)):  # [q, k] each
            part.append(values)
    if not found[0]:
        return bank.new_zeros((0, k)), torch.zeros((0, k), dtype=torch.long, device=bank.device)
    return torch.cat(found[0]), torch.cat(found[1])


def knn_vote(sims: torch.Tensor, neighbour_labels: torch.Tensor, *, num_classes: int, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores [Q, C]: each neighbour votes exp(sim / temperature) for its class (Wu et al. 2018).
    sims, neighbour_labels: [Q, k]. In chunks of queries: the votes are [chunk, k, C]."""
    scores = [
        (F.one_hot(neighbour_labels[start : start + chunk], num_classes).float() * (sims[start : start + chunk] / temperature).exp().unsqueeze(-1)).sum(dim=1)
        for start in range(0, sims.shape[0], chunk)
    ]  # fmt: skip
    return torch.cat(scores) if scores else sims.new_zeros((0, num_classes))


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class scores [Q, C] from the k nearest bank features by cosine similarity (knn_neighbours,
    then knn_vote). bank: [N, D], bank_labels: [N], queries: [Q, D]; exclude: see knn_neighbours."""
    sims, rows = knn_neighbours(bank, queries, k=k, chunk=chunk, exclude=exclude)
    return knn_vote(sims, bank_labels.to(rows.device)[rows], num_classes=num_classes, temperature=temperature, chunk=chunk)


def knn_top1(bank, bank_labels, queries, query_labels, *, num_classes: int, k: int = 20) -> float:
    """kNN top-1 accuracy of `queries` against a labelled feature bank."""
    scores = knn_predict(bank, bank_labels, queries, num_classes=num_classes, k=k)
    return (scores.argmax(1) == query_labels).float().mean().item()
