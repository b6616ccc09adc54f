"""Fresh results against committed reference results, with a stated tolerance.

The default run is bit-exact on one machine with the same thread count (same seed, same
kernels), but CPUs of another kind (AVX2 against AVX-512, another oneDNN) pick other kernels,
and float32 rounding then takes training down a slightly different path. A fresh result is
compared with the reference under the tolerance for its case:
- same kind of machine (environment.machine_key equal): SAME_MACHINE_TOLERANCE, allowing for
  a different run.threads (the reduction order changes);
- another kind: OTHER_MACHINE_TOLERANCE, about twice the spread measured between an AVX2 and
  an AVX-512 run of the default (bench/RESULTS.md, "Reference results across CPUs").
"""

from dataclasses import dataclass

SAME_MACHINE_TOLERANCE = 0.003
OTHER_MACHINE_TOLERANCE = 0.015
# (stage, metric): the numbers the pipeline reports as its results.
COMPARED = (
    ("pretrain_supcon", "val/knn_top1"),
    ("train_ce", "test/top1"),
    ("linear_eval", "test/top1"),
    ("compare", "test/top1/difference/mean"),
    ("robustness", "supcon/corrupted_top1"),
    ("robustness", "ce/corrupted_top1"),
)


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


def tolerance_for(reference_machine: str | None, fresh_machine: str | None) -> float:
    same = bool(reference_machine) and reference_machine == fresh_machine
    return SAME_MACHINE_TOLERANCE if same else OTHER_MACHINE_TOLERANCE


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
                tolerance = tolerance_for(_machine(old), _machine(new))
                rows.append(Comparison(output, metric, float(old[metric]), float(new[metric]), tolerance))
    return rows


def _machine(metrics: dict) -> str | None:
    return (metrics.get("environment") or {}).get("machine")


def format_table(rows: list[Comparison]) -> str:
    lines = [f"{'stage':<16}{'metric':<24}{'reference':>10}{'fresh':>10}{'diff':>9}{'tolerance':>11}  verdict"]
    for r in rows:
        verdict = "ok" if r.ok else "OUTSIDE"
        lines.append(f"{r.stage:<16}{r.metric:<24}{r.reference:>10.4f}{r.fresh:>10.4f}{r.fresh - r.reference:>+9.4f}{r.tolerance:>11.3f}  {verdict}")
    return "\n".join(lines)
