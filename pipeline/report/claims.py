"""The paper's claims, one row each: what the paper says, what was measured here (with seeds and
the paired interval), and a verdict from pipeline.report.verdicts on the raw values per seed."""

from dataclasses import dataclass

from pipeline.report.inputs import Inputs, best_value, contrastive_method, reduced_top1, severities, swept_key
from pipeline.report.markdown import NO_SWEEP, label, not_run, paired, test_set_noise, versus
from pipeline.report.robustness_view import MODELS, readable_runs, shared_corruptions
from pipeline.report.verdicts import MIN_SEEDS, NOT_ENOUGH, Evidence, temperature_verdict

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
    """The paper's claims, then the long-tail claim (not the paper's), in the order of the claims
    table; the queue's claims follow (pipeline.report.small_batch_view)."""
    return [claim_top1(inputs), *claims_reduced(inputs), claim_mce(inputs), claim_temperature(inputs), claim_ece(inputs), *claims_long_tail(inputs)]


def claim_top1(inputs: Inputs) -> Claim:
    evidence = Evidence({s: r["test/top1"] for s, r in inputs.supcon.items()}, {s: r["test/top1"] for s, r in inputs.ce.items()})
    result, reason, interval = evidence.paired()
    if inputs.method != "supcon":
        result, reason = NOT_ENOUGH, f"this run's contrastive method is {inputs.method}; the claim is about supcon"
    paper = "CIFAR-10 96.0 vs 95.0; CIFAR-100 76.5 vs 75.3; ImageNet 78.7 vs 78.2 (ResNet-50)"
    measured = versus(evidence, inputs.method, 100, 2) + " (top-1 %)" + paired(interval, inputs.method, 100, 2)
    measured += test_set_noise([*inputs.supcon.values(), *inputs.ce.values()])
    return Claim("top1", "SupCon (linear eval) top-1 ≥ CE top-1", paper, measured, result, reason)


def claims_reduced(inputs: Inputs) -> list[Claim]:
    """One claim per labelled fraction; a fraction with one side's cells only is not enough evidence."""
    paper = 'abstract: SupCon "outperforms cross-entropy significantly" with reduced data; no table'
    if not inputs.reduced:
        return [Claim("reduced", "SupCon beats CE with reduced labelled data", paper, "—", NOT_ENOUGH, not_run("reduced_data"))]
    top1, method = reduced_top1(inputs.reduced), contrastive_method(inputs.reduced)
    rows = []
    for fraction in sorted({cell["fraction"] for cell in inputs.reduced}):
        evidence = Evidence(top1["supcon"].get(fraction, {}), top1["ce"].get(fraction, {}))
        result, reason, interval = evidence.paired()
        if method != "supcon":
            result, reason = NOT_ENOUGH, f"the cells trained {method}; the claim is about supcon"
        claim = f"SupCon beats CE with {100 * fraction:g}% of the labels"
        measured = versus(evidence, method, 100, 2) + " (top-1 %)" + paired(interval, method, 100, 2)
        measured += test_set_noise([cell for cell in inputs.reduced if cell["fraction"] == fraction])
        rows.append(Claim(f"reduced_{fraction:g}", claim, paper, measured, result, reason))
    return rows


def claims_long_tail(inputs: Inputs) -> list[Claim]:
    """"SupCon keeps its edge under a long tail": one claim per imbalance factor of the long_tail
    cells, paired SupCon - CE per seed at that factor, as the reduced-data claims."""
    paper = "no figure in the paper; KCL, PaCo and TSC report that plain SupCon suffers on long-tailed data"
    if not inputs.long_tail:
        return [Claim("long_tail", "SupCon keeps its edge under a long tail", paper, "—", NOT_ENOUGH, not_run("long_tail"))]
    top1, method = reduced_top1(inputs.long_tail, by="factor"), contrastive_method(inputs.long_tail)
    rows = []
    for factor in sorted({cell["factor"] for cell in inputs.long_tail}):
        evidence = Evidence(top1["supcon"].get(factor, {}), top1["ce"].get(factor, {}))
        result, reason, interval = evidence.paired()
        if method != "supcon":
            result, reason = NOT_ENOUGH, f"the cells trained {method}; the claim is about supcon"
        measured = versus(evidence, method, 100, 2) + " (top-1 %)" + paired(interval, method, 100, 2)
        measured += test_set_noise([cell for cell in inputs.long_tail if cell["factor"] == factor])
        rows.append(Claim(f"long_tail_{factor:g}", f"SupCon keeps its edge under a long tail (imbalance factor {factor:g})", paper, measured, result, reason))
    return rows


def claim_mce(inputs: Inputs) -> Claim:
    """Against AlexNet (a released ImageNet-C) the paper's mCE; against this pipeline's own CE
    model, whose mCE is 100 by construction, the unnormalised mean corruption error of the same
    corruptions (robustness_view): the quantity mCE normalises, paired by seed."""
    claim, paper = "SupCon has a lower mCE than CE", "ImageNet-C, ResNet-50: mCE 67.2 vs 68.6 (relative mCE 94.6 vs 96.2)"
    if not inputs.robustness:
        return Claim("mce", claim, paper, "—", NOT_ENOUGH, not_run("robustness"))
    if all(run.get("source") == "imagenet-c" for run in inputs.robustness.values()):
        return _claim_alexnet_mce(inputs, claim, paper)
    runs, left_out = readable_runs(inputs.robustness)
    corruptions = shared_corruptions(runs) if runs else []
    if not corruptions:
        return Claim("mce", claim, paper, "—", NOT_ENOUGH, left_out or "no corruption was scored for both models of every seed")
    error = {model: {seed: run.model(model).mean_corruption_error(corruptions) for seed, run in runs.items()} for model in MODELS}
    evidence = Evidence(error["supcon"], error["ce"], higher_is_better=False)
    result, reason, interval = evidence.paired()
    what = f" (mean corruption error %, unnormalised, over {len(corruptions)} corruptions: mCE against this pipeline's own CE is 100 for CE by construction)"
    return Claim("mce", claim, paper, versus(evidence, inputs.method, 100, 2) + what + paired(interval, inputs.method, 100, 2), result, reason)


def _claim_alexnet_mce(inputs: Inputs, claim: str, paper: str) -> Claim:
    if not all("mCE" in run["supcon"] and "mCE" in run["ce"] for run in inputs.robustness.values()):
        why = next((run.get("undefined_note") or run.get("mCE_note") for run in inputs.robustness.values() if "mCE" not in run["supcon"] or "mCE" not in run["ce"]), None)
        return Claim("mce", claim, paper, "—", NOT_ENOUGH, f"mCE not computed ({why or 'it needs all five severities'})")
    runs = inputs.robustness
    evidence = Evidence({s: r["supcon"]["mCE"] for s, r in runs.items()}, {s: r["ce"]["mCE"] for s, r in runs.items()}, higher_is_better=False)
    result, reason, interval = evidence.paired()
    return Claim("mce", claim, paper, versus(evidence, inputs.method, 1, 1) + " (mCE %, AlexNet-normalised)" + paired(interval, inputs.method, 1, 1), result, reason)


def claim_temperature(inputs: Inputs) -> Claim:
    """Judged on the newest sweep over temperature. Its trials (one seed each, short runs) only rank
    temperatures; a verdict needs the summary's confirmation runs (several seeds per temperature at
    full length), judged by temperature_verdict."""
    claim, paper = "temperature 0.1 is best", "T = 0.1 best on ResNet-50; choosing it well is worth nearly 3%"
    sweep = next(((path, s) for path, s in inputs.sweeps if s.get("space") == "temperature"), None)
    if sweep is None:
        return Claim("temperature", claim, paper, "—", NOT_ENOUGH, NO_SWEEP)
    path, summary = sweep
    key = swept_key(summary)
    best = best_value(summary, key)
    measured = f"best T = {best} over {len(summary['trials'])} trials ({path.parent}, MLflow run {summary.get('mlflow_run_id', '?')})"
    confirmation = summary.get("confirmation")
    if not confirmation:
        why = f"a one-seed sweep ranks temperatures (best T = {best}); confirming needs ≥ {MIN_SEEDS} seeds per temperature at full length (`--confirm`)"
        return Claim("temperature", claim, paper, measured, NOT_ENOUGH, why)
    val_top1 = confirmed_val_top1(confirmation)
    stopped = [float(t) for t in confirmation.get("stopped", [])]
    measured += f"; confirmed at T = {', '.join(f'{t:g}' for t in sorted(val_top1))}"
    return Claim("temperature", claim, paper, measured, *temperature_verdict(val_top1, stopped=stopped))


def confirmed_val_top1(confirmation: dict) -> dict[float, dict[int, float]]:
    """temperature -> seed -> val top-1 from a summary's confirmation entry, whose JSON keys are strings."""
    return {float(t): {int(seed): float(v) for seed, v in seeds.items()} for t, seeds in confirmation.get("val_top1", {}).items()}


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
