"""The report's sections after the main comparison, each from optional inputs: a missing input gives
a section that names the stage to run. Each returns its markdown lines and the figures it links."""

from pipeline import figures
from pipeline.report import figures as report_figures
from pipeline.report.claims import REPORTED, Claim
from pipeline.report.inputs import CURVE_STAGES, Inputs, best_value, contrastive_method, reduced_top1, severities, swept_key
from pipeline.report.markdown import NO_SWEEP, Section, distinct, label, not_run, seeds_of, stat, table
from pipeline.report.verdicts import DID_NOT_HOLD, HELD, MIN_SEEDS, NOT_ENOUGH, mean_std


def claims_section(rows: list[Claim]) -> Section:
    body = [[row.claim, row.paper, row.measured, f"**{row.verdict}**: {row.reason}"] for row in rows]
    judged = sum(row.verdict != REPORTED for row in rows)
    intro = (
        f"Each verdict is read from the 95% t-interval of the per-seed paired difference (SupCon minus CE, same training seed; "
        "for temperature, each T minus T = 0.1 against a 0.5-point margin): "
        f"**{HELD}** when it lies entirely on SupCon's side of 0, **{DID_NOT_HOLD}** when entirely on CE's side, **{NOT_ENOUGH}** "
        f"when it touches or crosses 0 or with fewer than {MIN_SEEDS} seed pairs; raw values are compared, never rounded ones. "
        "The interval covers training variance on this one test set, not test-set sampling: the test-set ± beside a top-1 "
        "(two binomial standard errors of the widest accuracy) is how far another test set of that size would move each run. "
        f"The table's {judged} claims are judged at once with no multiple-comparison correction: at 95% each, up to about "
        f"0.05 × {judged} = {0.05 * judged:.2g} false verdicts are expected by chance."
    )
    return ["## Claims", "", intro, "", *table(["claim", "paper", "measured here (with seeds)", "verdict"], body)], {}


def reduced_section(inputs: Inputs, dataset: str) -> Section:
    title = "## Accuracy against labelled fraction"
    if not inputs.reduced:
        return [title, "", not_run("reduced_data")], {}
    top1, method = reduced_top1(inputs.reduced), contrastive_method(inputs.reduced)
    rows = []
    for fraction in sorted({cell["fraction"] for cell in inputs.reduced}):
        at = [cell for cell in inputs.reduced if cell["fraction"] == fraction]
        supcon, ce = (list(top1[m].get(fraction, {}).values()) for m in ("supcon", "ce"))
        difference = f"{100 * (mean_std(supcon)[0] - mean_std(ce)[0]):+.2f}" if supcon and ce else "—"
        images = distinct(f"{int(c['train_images']):,}" for c in at if "train_images" in c)
        cells = [stat(values, 100, 2) for values in (supcon, ce)]
        rows.append([f"{100 * fraction:g}%", images, *cells, difference, budgets(at)])
    curves = {method if side == "supcon" else side: {f: list(s.values()) for f, s in by.items()} for side, by in top1.items() if by}
    figure = report_figures.accuracy_vs_fraction(curves, dataset)
    name = label(method)
    header = ["labelled fraction", "train images", f"{name} top-1 (%)", "CE top-1 (%)", f"{name} − CE (points)", "budget (per training run)"]
    lines = [title, "", *table(header, rows), "", "![accuracy against labelled fraction](figures/accuracy_vs_fraction.png)"]
    return lines, {"accuracy_vs_fraction": figure}


def budgets(cells: list[dict]) -> str:
    """The training budget of each method's cells at one fraction, contrastive first."""

    def one(budget: dict) -> str:
        probe = f" (probe {budget['probe_epochs']})" if "probe_epochs" in budget else ""
        return f"≥ {budget.get('steps', '?')} steps, {budget.get('epochs', '?')} epochs{probe}, {budget.get('images_seen', 0):,} images seen"

    ordered_cells = sorted(cells, key=lambda c: c["method"], reverse=True)
    return distinct(f"{cell['method']}: {one(cell['budget'])}" for cell in ordered_cells if "budget" in cell) or "not recorded"


def robustness_section(inputs: Inputs) -> Section:
    title = "## Robustness to corruptions"
    if not inputs.robustness:
        return [title, "", not_run("robustness")], {}
    seed, run = min(inputs.robustness.items())  # the per-severity table and figure show one run
    name = label(inputs.method)
    intro = (
        f"{run.get('source', '?')}, {run.get('images_per_cell', '?')} images per cell, seeds {seeds_of(inputs.robustness)}. "
        f"Baseline of CE and mCE: {run.get('baseline', '?')}."
    )
    note = ["", run["mCE_note"]] if "mCE_note" in run else []
    lines = [title, "", intro, *note, "", *table(["", name, "CE"], robustness_summary(list(inputs.robustness.values())))]
    by_level = [
        [level, *(f"{100 * run[m]['by_severity'][level]['top1']:.2f}" for m in ("supcon", "ce")), *(f"{run[m]['by_severity'][level]['ece']:.4f}" for m in ("supcon", "ce"))]
        for level in severities(run)
    ]
    lines += ["", f"Top-1 and ECE by severity (0 = clean), seed {seed}:", ""]
    lines += [*table(["severity", f"{name} top-1 (%)", "CE top-1 (%)", f"{name} ECE", "CE ECE"], by_level), "", "![robustness by severity](figures/robustness_by_severity.png)"]
    return lines, {"robustness_by_severity": figures.robustness_by_severity(run, name)}


def robustness_summary(runs: list[dict]) -> list[list[str]]:
    """Clean error, mCE and relative mCE of both models over the robustness runs (percent)."""
    rows = [["clean error (%)", *(stat([100 * r[m]["clean_error"] for r in runs], 1, 2) for m in ("supcon", "ce"))]]
    for key in ("mCE", "relative_mCE"):
        rows.append([f"{key} (%)", *(stat([r[m][key] for r in runs], 1, 1) if all(key in r[m] for r in runs) else "not computed" for m in ("supcon", "ce"))])
    return rows


def sweep_section(inputs: Inputs) -> Section:
    """The newest sweep, its trials in order of the swept value."""
    if not inputs.sweeps:
        return ["## Sweep", "", NO_SWEEP], {}
    path, summary = inputs.sweeps[0]
    key = swept_key(summary)
    best = best_value(summary, key)
    trials = sorted(summary["trials"], key=lambda t: ordered(t["params"].get(key)))
    values, objectives = [t["params"].get(key) for t in trials], [t["objective"] for t in trials]
    objective = summary.get("objective", "objective")
    named = (
        f"Newest sweep: `{path.parent}` (space {summary.get('space', '?')}, MLflow run {summary.get('mlflow_run_id', '?')}, "
        f"{summary.get('date', '?')}, commit {summary.get('commit', '?')})."
    )
    rows = [[value, f"{score:.4f}"] for value, score in zip(values, objectives)]
    lines = ["## Sweep", "", named, f"Best: {best}.", "", *table([key, objective], rows), "", "![sweep](figures/sweep.png)"]
    return lines, {"sweep": report_figures.sweep_objective(values, objectives, parameter=key, objective=objective, best=best)}


def ordered(value) -> tuple:
    """Sort key that puts numbers in numeric order and names (optimizers, policies) after them."""
    return (0, value, "") if isinstance(value, int | float) and not isinstance(value, bool) else (1, 0, str(value))


def curves_section(inputs: Inputs) -> Section:
    missing = [f"- {stage}: {not_run(stage)}" for stage in CURVE_STAGES if stage not in inputs.curves]
    if not inputs.curves:
        return ["## Training curves", "", *missing], {}
    read = ", ".join(f"`{inputs.curve_files[stage]}`" for stage in inputs.curves)
    lines = ["## Training curves", "", f"From {read}.", *missing, "", "![training curves](figures/training_curves.png)"]
    return lines, {"training_curves": report_figures.training_curves(inputs.curves)}


def sources_section(inputs: Inputs) -> Section:
    rows = [[f"`{path}`", data.get("mlflow_run_id", "—")] for path, data in sorted(inputs.sources.items())]
    return ["## Sources", "", f"Layout: {inputs.layout}.", "", *table(["file", "MLflow run"], rows)], {}
