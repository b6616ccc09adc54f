"""Figures logged as MLflow artifacts: training curves and confusion matrices."""

import matplotlib

matplotlib.use("Agg")  # headless machines and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(history: list[dict[str, float]], title: str) -> Figure:
    """One panel per metric (loss, accuracies, lr) against epoch."""
    keys = sorted({k for row in history for k in row if k != "epoch" and not k.endswith(("_time_s", "images_per_s"))})
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        axis.plot(*zip(*points), marker="o")
        axis.set_title(key)
        axis.set_xlabel("epoch")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_figure(matrix: torch.Tensor, class_names: list[str], title: str) -> Figure:
    """Row-normalised confusion matrix (rows: true class) with counts in the cells."""
    counts = matrix.float()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.5 * len(class_names))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
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


def close(figure: Figure) -> None:
    plt.close(figure)
