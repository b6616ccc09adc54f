"""The sweep's figure: the objective of each trial against each swept parameter, one panel per
parameter; positive numbers spanning a decade or more on a log axis (temperature, learning
rate: the paper's accuracy-against-temperature figure), names side by side. Stopped trials are
hollow, a grid sweep's replicates triangles, the best trial is ringed (a replicated configuration:
at the mean of its runs)."""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402

from pipeline import atomic  # noqa: E402
from pipeline.sweep.grid import REPLICATE, replicate_of  # noqa: E402
from pipeline.sweep.ledger import FINISHED, TrialRecord  # noqa: E402

_HOLLOW = {"facecolors": "none", "edgecolors": "C0"}
_STYLES = {
    (True, False): ("finished", {}),
    (False, False): ("stopped early", _HOLLOW),
    (True, True): ("finished, replicate (another seed)", {"marker": "^"}),
    (False, True): ("stopped early, replicate (another seed)", {"marker": "^", **_HOLLOW}),
}
"""(finished?, a replicate?) -> legend label and marker: a grid sweep's repeats of a configuration
are triangles, so seed spread shows as a column of points."""


def _numeric(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def objective_figure(trials: list[TrialRecord], *, objective: str, title: str, best: TrialRecord | None) -> Figure:
    keys = list(dict.fromkeys(k for t in trials for k in t.params if k != REPLICATE))
    figure, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys):
        values = [t.params.get(key) for t in trials]
        numeric = _numeric(values)
        names = sorted(set(map(str, values)))
        x = values if numeric else [names.index(str(v)) for v in values]
        for (finished, repeat), (label, style) in _STYLES.items():
            points = [(xi, t.objective) for xi, t in zip(x, trials) if (t.state == FINISHED, replicate_of(t.params) > 0) == (finished, repeat)]
            if points:
                axis.scatter(*zip(*points), label=label, **style)
        if best is not None and key in best.params:
            bx = best.params[key] if numeric else names.index(str(best.params[key]))
            shown = f"{best.params[key]:.3g}" if numeric else best.params[key]
            axis.scatter([bx], [best.objective], s=170, facecolors="none", edgecolors="red", label=f"best: {shown}")
        if numeric and min(values) > 0 and max(values) >= 3 * min(values):
            axis.set_xscale("log")  # labelled minor ticks (3x10^-1) would overlap: plain numbers at the majors
            axis.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            axis.xaxis.set_minor_formatter(NullFormatter())
        if not numeric:
            axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axis.set_xlabel(key)
        axis.set_ylabel(objective)
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def save(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic.atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
