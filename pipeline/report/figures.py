"""The report's figures, from values already read: accuracy against labelled fraction and against
imbalance factor, training
curves of every stage on shared axes, a sweep's objective against its parameter, SupCon's minus
CE's degradation per corruption. Robustness by severity is pipeline.figures.robustness_by_severity
(the robustness stage's own figure).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from pipeline import atomic
from pipeline.figures import plt  # Agg is selected there, before pyplot is imported
from pipeline.report.verdicts import mean_std

LABELS = {"supcon": "SupCon", "simclr": "SimCLR", "ce": "cross-entropy"}
MAX_TICKS = 6
MAX_HEIGHT = 7.0
"""Inches: a figure with one row per item stops growing here (ImageNet-C's 19 corruptions fit)."""


def accuracy_vs_fraction(top1: Mapping[str, Mapping[float, Sequence[float]]], dataset: str) -> Figure:
    """Test top-1 (%) against labelled fraction (log x), mean with std error bars over seeds.

    top1: method -> fraction -> top-1 per seed (fractions in [0, 1]).
    """
    return _accuracy_curves(top1, lambda f: f"{100 * f:g}%", xlabel="labelled fraction of the train split (log scale)", title=f"{dataset}: accuracy with reduced labels")


def accuracy_vs_imbalance(top1: Mapping[str, Mapping[float, Sequence[float]]], dataset: str) -> Figure:
    """Test top-1 (%) against imbalance factor n_max / n_min (log x), mean with std error bars over seeds.

    top1: method -> factor -> top-1 per seed.
    """
    return _accuracy_curves(top1, lambda f: f"{f:g}", xlabel="imbalance factor n_max / n_min of the train split (log scale)", title=f"{dataset}: accuracy with long-tailed training data")


def _accuracy_curves(top1: Mapping[str, Mapping[float, Sequence[float]]], tick, *, xlabel: str, title: str) -> Figure:
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for method, by_x in top1.items():
        xs = sorted(by_x)
        stats = [mean_std(by_x[x]) for x in xs]
        axis.errorbar(xs, [100 * m for m, _, _ in stats], yerr=[100 * s for _, s, _ in stats], marker="o", capsize=3, label=LABELS.get(method, method))
    _log_ticks(axis, sorted({x for by_x in top1.values() for x in by_x}), tick)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("test top-1 (%), mean ± std")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    return figure


def training_curves(curves: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """Train loss and val accuracy against epoch, one line per stage.

    curves: stage -> rows of plots/<stage>.csv (epoch, train_loss, val_...; missing cells absent).
    """
    figure, (loss_axis, val_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for stage, rows in curves.items():
        _plot(loss_axis, rows, "train_loss", stage)
        for column in sorted({key for row in rows for key in row if key.startswith("val_")}):
            _plot(val_axis, rows, column, f"{stage}: {column}")
    for axis, title in ((loss_axis, "train loss (each stage its own loss)"), (val_axis, "val accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _plot(axis, rows: Sequence[Mapping[str, float]], column: str, label: str) -> None:
    points = [(row["epoch"], row[column]) for row in rows if column in row]
    if points:
        axis.plot(*zip(*points), marker=".", label=label)


def sweep_objective(values: Sequence, objectives: Sequence[float], *, parameter: str, objective: str, best: object) -> Figure:
    """A sweep's objective per trial against its parameter; numbers on a log axis when all are
    positive (temperature, learning rate), names side by side otherwise. The best trial is ringed."""
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    positions = list(values) if numeric else [sorted(set(map(str, values))).index(str(v)) for v in values]
    axis.scatter(positions, objectives, marker="o")
    best_points = [(x, y) for x, v, y in zip(positions, values, objectives) if v == best]
    if best_points:
        axis.scatter(*zip(*best_points), s=160, facecolors="none", edgecolors="red", label=f"best: {best}")
        axis.legend()
    if numeric and all(v > 0 for v in values):
        _log_ticks(axis, sorted(set(values)), lambda v: f"{v:g}")
    if not numeric:
        names = sorted(set(map(str, values)))
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axis.set_xlabel(parameter)
    axis.set_ylabel(objective)
    axis.set_title(f"sweep over {parameter}")
    figure.tight_layout()
    return figure


def degradation_difference(names: Sequence[str], differences: Sequence[float], intervals: Sequence[tuple[float, float] | None], method: str) -> Figure:
    """SupCon's minus CE's degradation per corruption (points; degradation = mean error over
    severities minus clean error), one horizontal bar each, mean over seeds, with the 95% t-interval
    of the paired differences as a whisker where there is one. Left of 0: SupCon degrades less.

    intervals: (low, high) in points per corruption, or None (fewer than two seed pairs).
    """
    name = LABELS.get(method, method)
    figure, axis = plt.subplots(figsize=(6, min(MAX_HEIGHT, max(2.5, 1.4 + 0.3 * len(names)))))
    rows = range(len(names))
    axis.barh(rows, differences, color=["tab:blue" if d < 0 else "tab:orange" for d in differences])
    whiskers = [(row, mean, bounds) for row, mean, bounds in zip(rows, differences, intervals) if bounds is not None]
    if whiskers:
        at, means, bounds = zip(*whiskers)
        below, above = [m - low for m, (low, _) in zip(means, bounds)], [high - m for m, (_, high) in zip(means, bounds)]
        axis.errorbar(means, at, xerr=[below, above], fmt="none", ecolor="black", capsize=3, label="95% t-interval over seeds")
        axis.legend(fontsize=7)
    pairs = "paired by seed" if whiskers else "one seed pair: no interval"
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_yticks(list(rows), names, fontsize=8)
    axis.invert_yaxis()  # the table's order, top to bottom
    axis.set_xlabel(f"{name} − CE degradation (points); < 0: {name} degrades less")
    axis.set_title(f"SupCon − CE degradation per corruption\n({pairs})", fontsize=10)
    figure.tight_layout()
    return figure


def _log_ticks(axis, values: Sequence[float], label) -> None:
    """Log x axis ticked at the measured values: matplotlib's labelled minor ticks (3x10^-1)
    overlap. Past a handful of values (a sampled sweep) those would overlap too: decades only."""
    axis.set_xscale("log")
    axis.minorticks_off()
    if len(values) <= MAX_TICKS:
        axis.set_xticks(values, [label(v) for v in values])


def save_png(figure: Figure, path: Path) -> None:
    """Write `figure` as a PNG atomically (a reader never sees half a file), then close it."""
    atomic.atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    plt.close(figure)
