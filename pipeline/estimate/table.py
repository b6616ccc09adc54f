"""The estimate as text: one row per kind of work, the total, and how it was measured."""

from pipeline.estimate.measure import Measurement
from pipeline.estimate.plan import CORRUPTION, INFERENCE, Work

HEADER = ("stage", "runs", "steps", "images", "measured", "predicted")


def duration(seconds: float) -> str:
    """'42 s', '3 min 5 s', '2.4 h', '3.1 days', '4.6 years'."""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365 * 86400):.1f} years"


def hours(seconds: float) -> str:
    """seconds in hours: '0.182', '7.25', '40,413'."""
    return f"{seconds / 3600:.3g}" if seconds < 36_000 else f"{seconds / 3600:,.0f}"


def measured(kind: str, measurement: Measurement | None, per_image: float) -> str:
    """The cost a row is priced at: s/step at the timed batch, images/s, or ms per corrupted image."""
    if kind == CORRUPTION:
        return f"{per_image * 1000:.1f} ms/image/process"
    if kind == INFERENCE:
        return f"{1 / per_image:,.0f} images/s"
    return f"{measurement.per_step:.3g} s/step at {measurement.batch}"


def format_table(work: list[Work], seconds: list[float], measurements: dict[str, Measurement], per_image: dict[str, float], notes: list[str]) -> str:
    rows = [HEADER]
    for row, spent in zip(work, seconds):
        steps = f"{row.steps:,}" if row.steps else "-"
        rows.append((row.stage, f"{row.runs:,}", steps, f"{row.images:,}", measured(row.kind, measurements.get(row.kind), per_image[row.kind]), duration(spent)))
    total = sum(seconds)
    rows.append(("total", "", "", "", "", f"{duration(total)} ({hours(total)} h)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join([*lines, *notes])
