"""Figures logged as MLflow artifacts: training curves, confusion matrices, corruption robustness."""

import matplotlib

matplotlib.use("Agg")  # headless machines and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(history: list[dict[str, float]], title: str) -> Figure:
    """One panel per metric (loss, accuracies, lr) against epoch."""
    # train/steps is a straight line against epoch: it is in the history, not worth a panel
    keys = sorted({k for row in history for k in row if k not in ("epoch", "train/steps") and not k.endswith(("_time_s", "images_per_s"))})
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        axis.plot(*zip(*points), marker="o")
        axis.set_title(key)
        axis.set_xlabel("epoch")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


MAX_CONFUSION_INCHES = 12.0
MAX_NAMED_CLASSES = 24


def confusion_figure(matrix: torch.Tensor, class_names: list[str], title: str) -> Figure:
    """Row-normalised confusion matrix (rows: true class) with counts in the cells."""
    counts = matrix.float()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    # Half an inch a class up to MAX_CONFUSION_INCHES: ImageNet's 1000 classes at half an inch
    # would be a 50,000-pixel-square PNG (gigabytes of raster, minutes to draw) per stage.
    size = min(MAX_CONFUSION_INCHES, max(4.0, 0.5 * len(class_names)))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    if len(class_names) <= MAX_NAMED_CLASSES:  # beyond that the names overlap into a black band
        axis.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        axis.set_yticks(ticks, class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        for row in ticks:
            for col in ticks:
                axis.text(col, row, int(counts[row, col]), ha="center", va="center", fontsize=6, color="white" if rates[row, col] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def robustness_by_severity(metrics: dict, method: str) -> Figure:
    """Top-1 and ECE against corruption severity (0 = clean), SupCon vs CE: the paper's Figure 6."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for model, label in (("supcon", method), ("ce", "cross-entropy")):
        levels = sorted(metrics[model]["by_severity"], key=int)
        for axis, key in zip(axes, ("top1", "ece")):
            axis.plot([int(level) for level in levels], [metrics[model]["by_severity"][level][key] for level in levels], marker="o", label=label)
    for axis, title in zip(axes, ("top-1 accuracy", "expected calibration error")):
        axis.set_xlabel("corruption severity (0 = clean)")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    return figure


def errors_by_corruption(metrics: dict, method: str) -> Figure:
    """Mean top-1 error over severities per corruption, SupCon and CE side by side."""
    names = metrics["corruptions"]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(names)), 3.6))
    width = 0.4
    for offset, (model, label) in zip((-width / 2, width / 2), (("supcon", method), ("ce", "cross-entropy"))):
        errors = [sum(metrics[model]["errors"][name]) / len(metrics[model]["errors"][name]) for name in names]
        axis.bar([i + offset for i in range(len(names))], errors, width, label=label)
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("top-1 error")
    axis.legend()
    figure.tight_layout()
    return figure


def close(figure: Figure) -> None:
    plt.close(figure)
