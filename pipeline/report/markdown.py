"""Markdown pieces of the report: numbers over seeds, tables, and what to run when an input is missing."""

from matplotlib.figure import Figure

from pipeline.report.figures import LABELS
from pipeline.report.verdicts import Evidence, PairedInterval, mean_std, top1_sampling_half_width

Section = tuple[list[str], dict[str, Figure]]
"""A section's markdown lines and its figures by name (reports/figures/<name>.png)."""

NO_SWEEP = "no sweep yet: `python -m pipeline.sweep --space temperature`"


def not_run(stage: str) -> str:
    return f"not run yet: `dvc repro {stage}`"


def label(method: str) -> str:
    return LABELS.get(method, method)


def stat(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """'86.35 ± 0.12 (n=3)'; one value has no spread to show, so none is printed; none is '—'."""
    if not values:
        return "—"
    mean, std, n = mean_std(values)
    if n == 1:
        return f"{scale * mean:.{digits}f} (n=1)"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f} (n={n})"


def seeds_of(values: dict) -> str:
    return ", ".join(str(seed) for seed in sorted(values))


def versus(evidence: Evidence, method: str, scale: float, digits: int) -> str:
    """'SupCon 91.00 ± 1.00 (n=3) vs CE 81.00 ± 1.00 (n=3); seeds 0, 1, 2 / 0, 1, 2'."""
    supcon, ce = evidence.supcon, evidence.ce
    both = f"{label(method)} {stat(list(supcon.values()), scale, digits)} vs CE {stat(list(ce.values()), scale, digits)}"
    return f"{both}; seeds {seeds_of(supcon)} / {seeds_of(ce)}"


def paired(interval: PairedInterval | None, method: str, scale: float, digits: int) -> str:
    """'; paired SupCon − CE +0.54 [+0.31, +0.77] points (n=3, 95% t)', or '' without an interval
    (too few pairs or a diverged run: the verdict's reason says which)."""
    if interval is None:
        return ""
    low, high = (f"{scale * bound:+.{digits}f}" for bound in (interval.low, interval.high))
    return f"; paired {label(method)} − CE {scale * interval.mean:+.{digits}f} [{low}, {high}] points (n={interval.n}, 95% t)"


def test_set_noise(runs) -> str:
    """'; test-set ±0.68 points (2 binomial SE, 10,000 images)' for accuracies scored on the same
    number of test images, or '' when a metrics file does not record it. The seed interval cannot
    show this: another test set of that size would move every run's top-1 by about as much."""
    counts = {int(run["test/images"]) for run in runs if "test/images" in run}
    if len(counts) != 1 or any("test/images" not in run for run in runs):
        return ""
    (images,) = counts
    widest = max(top1_sampling_half_width(float(run["test/top1"]), images) for run in runs)
    return f"; test-set ±{100 * widest:.2f} points (2 binomial SE, {images:,} images)"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


def distinct(texts) -> str:
    """The texts joined once each, in order: runs that agree print as one."""
    return "; ".join(dict.fromkeys(texts))
