"""Fresh results against committed reference results, with a stated tolerance per metric.

The default run is bit-exact on one machine with the same thread count (same seed, same
kernels), but CPUs of another kind (AVX2 against AVX-512, another oneDNN, another vendor) pick
other kernels, and float32 rounding then takes training down a slightly different path. A fresh
result is compared with the reference under the tolerance of its metric and case:
- same kind of machine (environment.machine_key equal): SAME_MACHINE_TOLERANCE, allowing for
  a different run.threads (the reduction order changes);
- another kind: the metric's OTHER_MACHINE tolerance, about twice the largest move measured
  between machines for that kind of metric (bench/RESULTS.md, "Reference results across CPUs").
  Clean accuracies moved by at most 0.75 points (AVX2 against AVX-512 Xeon, kNN top-1; 0.12 on an
  AMD EPYC against an Intel Xeon, both AVX-512): 1.5 points. Accuracy under corruption moved by up
  to 1.81 points on the same code and seed (SupCon's corrupted top-1, EPYC against Xeon; +1.8 on
  another pair): 4 points. A single tolerance would pass clean drifts it should catch, or fail
  corrupted ones that every new CPU produces.
"""

from dataclasses import dataclass

SAME_MACHINE_TOLERANCE = 0.003
CLEAN_OTHER_MACHINE_TOLERANCE = 0.015
CORRUPTED_OTHER_MACHINE_TOLERANCE = 0.04
OTHER_MACHINE_TOLERANCE = CLEAN_OTHER_MACHINE_TOLERANCE
"""The clean metrics' tolerance on another kind of machine (kept under its old name)."""
# (stage, metric): the numbers the pipeline reports as its results.
COMPARED = (
    ("pretrain_supcon", "val/knn_top1"),
    ("train_ce", "test/top1"),
    ("linear_eval", "test/top1"),
    ("compare", "test/top1/difference/mean"),
    ("robustness", "supcon/corrupted_top1"),
    ("robustness", "ce/corrupted_top1"),
)
CORRUPTED = {"supcon/corrupted_top1", "ce/corrupted_top1"}
"""Metrics measured under corruption: the wider tolerance on another kind of machine."""


@dataclass(frozen=True)
class Comparison:
    stage: str
    metric: str
    reference: float
    fresh: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return abs(self.fresh - self.reference) <= self.tolerance


def tolerance_for(reference_machine: str | None, fresh_machine: str | None, metric: str = "") -> float:
    if reference_machine and reference_machine == fresh_machine:
        return SAME_MACHINE_TOLERANCE
    return CORRUPTED_OTHER_MACHINE_TOLERANCE if metric in CORRUPTED else CLEAN_OTHER_MACHINE_TOLERANCE


def compare_results(reference: dict[str, dict], fresh: dict[str, dict]) -> list[Comparison]:
    """Per compared metric present in both: reference vs fresh, under the tolerance of the case.

    reference, fresh: output name (a stage, or seeds/<seed>/<stage>) -> its metrics JSON (with
    its "machine" key, if any); an output is compared on the metrics COMPARED lists for its stage.
    """
    rows = []
    for output in sorted(reference.keys() & fresh.keys()):
        old, new = reference[output], fresh[output]
        for metric in (m for stage, m in COMPARED if stage == output.rsplit("/", 1)[-1]):
            if metric in old and metric in new:
                tolerance = tolerance_for(_machine(old), _machine(new), metric)
                rows.append(Comparison(output, metric, float(old[metric]), float(new[metric]), tolerance))
    return rows


def _machine(metrics: dict) -> str | None:
    return (metrics.get("environment") or {}).get("machine")


def format_table(rows: list[Comparison]) -> str:
    stage_width = max([len("stage"), *(len(r.stage) for r in rows)]) + 2  # seeds/0/pretrain_supcon is 23 characters
    metric_width = max([len("metric"), *(len(r.metric) for r in rows)]) + 2
    lines = [f"{'stage':<{stage_width}}{'metric':<{metric_width}}{'reference':>10}{'fresh':>10}{'diff':>9}{'tolerance':>11}  verdict"]
    for r in rows:
        verdict = "ok" if r.ok else "OUTSIDE"
        lines.append(f"{r.stage:<{stage_width}}{r.metric:<{metric_width}}{r.reference:>10.4f}{r.fresh:>10.4f}{r.fresh - r.reference:>+9.4f}{r.tolerance:>11.3f}  {verdict}")
    return "\n".join(lines)
