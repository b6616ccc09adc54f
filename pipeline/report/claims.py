"""The paper's claims, one row each: what the paper says, what was measured here (with seeds), and
a verdict from pipeline.report.verdicts on the raw values per seed."""

import math
from dataclasses import dataclass

from pipeline.report.inputs import Inputs, best_value, contrastive_method, reduced_top1, severities, swept_key
from pipeline.report.markdown import NO_SWEEP, label, not_run, versus
from pipeline.report.verdicts import NOT_ENOUGH, Evidence, best_value_verdict, sampling_error

REPORTED = "reported, no claim"


@dataclass(frozen=True)
class Claim:
    key: str
    """MLflow tag suffix: claim/<key>."""
    claim: str
    paper: str
    measured: str
    verdict: str
    reason: str


def claim_rows(inputs: Inputs) -> list[Claim]:
    """Every claim the report judges, in the order of the claims table."""
    return [claim_top1(inputs), *claims_reduced(inputs), claim_mce(inputs), claim_temperature(inputs), claim_ece(inputs)]


def claim_top1(inputs: Inputs) -> Claim:
    evidence = Evidence({s: r["test/top1"] for s, r in inputs.supcon.items()}, {s: r["test/top1"] for s, r in inputs.ce.items()})
    judged = evidence.verdict() if inputs.method == "supcon" else (NOT_ENOUGH, f"this run's contrastive method is {inputs.method}; the claim is about supcon")
    paper = "CIFAR-10 96.0 vs 95.0; CIFAR-100 76.5 vs 75.3; ImageNet 78.7 vs 78.2 (ResNet-50)"
    return Claim("top1", "SupCon (linear eval) top-1 ≥ CE top-1", paper, versus(evidence, inputs.method, 100, 2) + " (top-1 %)", *judged)


def claims_reduced(inputs: Inputs) -> list[Claim]:
    """One claim per labelled fraction; a fraction with one side's cells only is not enough evidence."""
    paper = 'abstract: SupCon "outperforms cross-entropy significantly" with reduced data; no table'
    if not inputs.reduced:
        return [Claim("reduced", "SupCon beats CE with reduced labelled data", paper, "—", NOT_ENOUGH, not_run("reduced_data"))]
    top1, method = reduced_top1(inputs.reduced), contrastive_method(inputs.reduced)
    rows = []
    for fraction in sorted({cell["fraction"] for cell in inputs.reduced}):
        evidence = Evidence(top1["supcon"].get(fraction, {}), top1["ce"].get(fraction, {}))
        judged = evidence.verdict() if method == "supcon" else (NOT_ENOUGH, f"the cells trained {method}; the claim is about supcon")
        claim = f"SupCon beats CE with {100 * fraction:g}% of the labels"
        rows.append(Claim(f"reduced_{fraction:g}", claim, paper, versus(evidence, method, 100, 2) + " (top-1 %)", *judged))
    return rows


def claim_mce(inputs: Inputs) -> Claim:
    claim, paper = "SupCon has a lower mCE than CE", "ImageNet-C, ResNet-50: mCE 67.2 vs 68.6 (relative mCE 94.6 vs 96.2)"
    if not inputs.robustness:
        return Claim("mce", claim, paper, "—", NOT_ENOUGH, not_run("robustness"))
    if not all("mCE" in run["supcon"] and "mCE" in run["ce"] for run in inputs.robustness.values()):
        why = next((run.get("undefined_note") or run.get("mCE_note") for run in inputs.robustness.values() if "mCE" not in run["supcon"] or "mCE" not in run["ce"]), None)
        return Claim("mce", claim, paper, "—", NOT_ENOUGH, f"mCE not computed ({why or 'it needs all five severities'})")
    runs = inputs.robustness
    evidence = Evidence({s: r["supcon"]["mCE"] for s, r in runs.items()}, {s: r["ce"]["mCE"] for s, r in runs.items()}, higher_is_better=False)
    return Claim("mce", claim, paper, versus(evidence, inputs.method, 1, 1) + " (mCE %)", *evidence.verdict())


def claim_temperature(inputs: Inputs) -> Claim:
    """Judged on the newest sweep over temperature; a sweep cannot reject a value it never tried."""
    claim, paper = "temperature 0.1 is best", "T = 0.1 best on ResNet-50; choosing it well is worth nearly 3%"
    sweep = next(((path, s) for path, s in inputs.sweeps if s.get("space") == "temperature"), None)
    if sweep is None:
        return Claim("temperature", claim, paper, "—", NOT_ENOUGH, NO_SWEEP)
    path, summary = sweep
    key = swept_key(summary)
    tried = [trial["params"][key] for trial in summary["trials"]]
    best = best_value(summary, key)
    measured = f"best T = {best} over {len(tried)} trials ({path.parent}, MLflow run {summary.get('mlflow_run_id', '?')})"
    return Claim("temperature", claim, paper, measured, *best_value_verdict(best, tried, 0.1, **_gap_and_noise(summary, key, 0.1)))


def _gap_and_noise(summary: dict, key: str, expected: float) -> dict[str, float]:
    """How far the best trial's objective is above the (best) trial at `expected` among those
    that trained every epoch, and the objective's sampling error on the val split; {} when the
    sweep does not say its val size or no full-length trial ran `expected`."""
    full = [t for t in summary["trials"] if t.get("state", "finished") == "finished"]
    at_expected = [t["objective"] for t in full if math.isclose(float(t["params"][key]), expected, rel_tol=1e-9)]
    best = (summary.get("best") or {}).get("objective")
    images = (summary.get("settings") or {}).get("val_images")
    if not at_expected or best is None or not images:
        return {}
    return {"gap": best - max(at_expected), "noise": sampling_error(best, images)}


def claim_ece(inputs: Inputs) -> Claim:
    """ECE by severity is shown, not judged: the paper's own table is mixed."""
    paper = "SupCon .024→.100, CE .039→.098 (clean, severities 1-5): mixed"
    if not inputs.robustness:
        return Claim("ece", "ECE by severity", paper, "—", REPORTED, not_run("robustness"))
    seed, run = min(inputs.robustness.items())

    def by_severity(side: str) -> str:
        return " ".join(f"{run[side]['by_severity'][level]['ece']:.3f}" for level in severities(run))

    measured = f"{label(inputs.method)} {by_severity('supcon')}; {label('ce')} {by_severity('ce')}"
    return Claim("ece", "ECE by severity", paper, f"{measured} (seed {seed})", REPORTED, "the paper's own table is mixed")
