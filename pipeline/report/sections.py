"""The report's sections after the main comparison, each from optional inputs: a missing input gives
a section that names the stage to run. Each returns its markdown lines and the figures it links."""

import math
from statistics import fmean

from matplotlib.figure import Figure

from pipeline import figures
from pipeline.report import figures as report_figures
from pipeline.report.claims import REPORTED, Claim
from pipeline.report.inputs import CURVE_STAGES, Inputs, best_value, contrastive_method, reduced_top1, swept_key
from pipeline.report.long_tail_view import RULE, THIRDS, thirds_top1
from pipeline.report.markdown import NO_SWEEP, Section, distinct, label, not_run, seeds_of, stat, table
from pipeline.report.robustness_view import MODELS, Degradation, RelativeMCE, ScoredRun, degradations, per_seed, readable_runs, relative_mce, shared_corruptions, shared_severities
from pipeline.report.verdicts import DID_NOT_HOLD, HELD, MIN_SEEDS, NOT_ENOUGH, mean_std


def claims_section(rows: list[Claim]) -> Section:
    body = [[row.claim, row.paper, row.measured, f"**{row.verdict}**: {row.reason}"] for row in rows]
    judged = sum(row.verdict != REPORTED for row in rows)
    intro = (
        f"Each verdict is read from the 95% t-interval of the per-seed paired difference (SupCon minus CE, same training seed; "
        "for temperature, each T minus T = 0.1 against a 0.5-point margin; for the queue, small batch with queue minus without): "
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


def long_tail_section(inputs: Inputs, dataset: str) -> Section:
    """Test top-1 against imbalance factor (as the reduced section, by factor), then per-class
    top-1 grouped into head, middle and tail thirds by train-class size (long_tail_view)."""
    title = "## Long-tailed training data"
    if not inputs.long_tail:
        return [title, "", not_run("long_tail")], {}
    cells, method = inputs.long_tail, contrastive_method(inputs.long_tail)
    top1, name = reduced_top1(cells, by="factor"), label(method)
    rows, third_rows = [], []
    for factor in sorted({cell["factor"] for cell in cells}):
        at = [cell for cell in cells if cell["factor"] == factor]
        supcon, ce = (list(top1[m].get(factor, {}).values()) for m in ("supcon", "ce"))
        difference = f"{100 * (mean_std(supcon)[0] - mean_std(ce)[0]):+.2f}" if supcon and ce else "—"
        rows.append([f"{factor:g}", distinct(train_sizes(c["train_per_class"]) for c in at), *(stat(v, 100, 2) for v in (supcon, ce)), difference, budgets(at)])
        for side, values in ((name, [c for c in at if c["method"] != "ce"]), ("CE", [c for c in at if c["method"] == "ce"])):
            if values:
                thirds = [thirds_top1(c) for c in values]
                third_rows.append([f"{factor:g}", side, *(stat([t[g] for t in thirds if g in t], 100, 2) for g in THIRDS)])
    curves = {method if side == "supcon" else side: {f: list(s.values()) for f, s in by.items()} for side, by in top1.items() if by}
    intro = (
        "Each cell trains on the main stages' train split made long-tailed at its imbalance factor n_max / n_min "
        "(`data.imbalance`'s profile and class order); val and test stay balanced. Test top-1, mean ± std over seeds:"
    )
    header = ["imbalance factor", "train images (largest / smallest class)", f"{name} top-1 (%)", "CE top-1 (%)", f"{name} − CE (points)", "budget (per training run)"]
    lines = [title, "", intro, "", *table(header, rows), "", "![accuracy against imbalance factor](figures/accuracy_vs_imbalance.png)"]
    lines += ["", f"Per-class test top-1 by train-class size: {RULE}. Mean ± std over seeds:", ""]
    lines += table(["imbalance factor", "method", "head top-1 (%)", "middle top-1 (%)", "tail top-1 (%)"], third_rows)
    return lines, {"accuracy_vs_imbalance": report_figures.accuracy_vs_imbalance(curves, dataset)}


def train_sizes(per_class: list[int]) -> str:
    """'11,006 (2,700 / 270)': a cell's train images, its largest and smallest class."""
    return f"{sum(per_class):,} ({max(per_class):,} / {min(per_class):,})"


def budgets(cells: list[dict]) -> str:
    """The training budget of each method's cells at one fraction, contrastive first."""

    def one(budget: dict) -> str:
        probe = f" (probe {budget['probe_epochs']})" if "probe_epochs" in budget else ""
        return f"≥ {budget.get('steps', '?')} steps, {budget.get('epochs', '?')} epochs{probe}, {budget.get('images_seen', 0):,} images seen"

    ordered_cells = sorted(cells, key=lambda c: c["method"], reverse=True)
    return distinct(f"{cell['method']}: {one(cell['budget'])}" for cell in ordered_cells if "budget" in cell) or "not recorded"


def robustness_section(inputs: Inputs) -> Section:
    """Numbers that mean the same on every dataset (pipeline.report.robustness_view), then the stored
    mCE with the baseline it was normalised by. A robustness.json too old for the tables is named in
    a note, never an error."""
    title = "## Robustness to corruptions"
    if not inputs.robustness:
        return [title, "", not_run("robustness")], {}
    runs, left_out = readable_runs(inputs.robustness)
    first = inputs.robustness[min(inputs.robustness)]
    intro = f"{first.get('source', '?')}, {first.get('images_per_cell', '?')} images per cell, seeds {seeds_of(inputs.robustness)}. {baseline_sentence(first)}"
    head = [title, "", intro, *(line for note in (first.get("mCE_note"), left_out) if note for line in ("", str(note)))]
    if not runs:
        return head, {}
    corruptions = shared_corruptions(runs)
    if not corruptions:
        return [*head, "", "No corruption was scored on both models of every readable run: nothing to average."], {}
    body, drawn = robustness_tables(inputs, runs, corruptions)
    return head + body, drawn


def robustness_tables(inputs: Inputs, runs: dict[int, ScoredRun], corruptions: list[str]) -> Section:
    name, relative, rows = label(inputs.method), relative_mce(runs, corruptions), degradations(runs, corruptions)
    lines = ["", f"Mean ± std over seeds {seeds_of(runs)}; the unnormalised top-1 errors first, as CIFAR-10-C papers report them:", ""]
    lines += [*table(["", name, "CE"], robustness_summary(runs, list(inputs.robustness.values()), corruptions, relative)), "", relative_mce_rule(runs, relative, name)]
    lines += ["", "Top-1 and ECE by severity (0 = clean), mean ± std over seeds:", "", *table(["severity", f"{name} top-1 (%)", "CE top-1 (%)", f"{name} ECE", "CE ECE"], severity_rows(runs))]
    seed = min(runs)
    lines += ["", f"![robustness by severity, seed {seed}](figures/robustness_by_severity.png)", "", degradation_intro(name), ""]
    header = ["corruption", f"{name} degradation (points)", "CE degradation (points)", f"{name} − CE (points) [95% t]", f"{name} relative CE (%)"]
    lines += [*table(header, [degradation_row(row, relative) for row in rows]), "", "![degradation per corruption](figures/robustness_degradation.png)"]
    drawn = {"robustness_by_severity": figures.robustness_by_severity(inputs.robustness[seed], name), "robustness_degradation": degradation_figure(rows, inputs.method)}
    return lines, drawn


def baseline_sentence(run: dict) -> str:
    """The stored CE's and mCE's normaliser, and what it means when it is not AlexNet's published errors."""
    baseline = str(run.get("baseline", "?"))
    if "AlexNet" in baseline:
        return f"Baseline of CE and mCE: {baseline}, as published."
    return f"Baseline of CE and mCE: {baseline}; not AlexNet, so the stored mCE compares with no published one."


def robustness_summary(runs: dict[int, ScoredRun], stored: list[dict], corruptions: list[str], relative: RelativeMCE) -> list[list[str]]:
    """Mean corruption error over `corruptions`, clean error, relative mCE against this pipeline's
    CE over the kept ones, then the mCE the stage stored with its baseline (percent, over seeds)."""
    cells = distinct(str(len(run.supcon.errors[c])) for run in runs.values() for c in corruptions)
    mean_error = [stat(per_seed(runs, m, lambda s: s.mean_corruption_error(corruptions)), 100, 2) for m in MODELS]
    clean = [stat(per_seed(runs, m, lambda s: s.clean_error), 100, 2) for m in MODELS]
    kept = stat(list(relative.per_seed.values()), 1, 1) if relative.kept else "— (no corruption kept)"
    return [
        [f"mean corruption error (%; {len(corruptions)} corruptions × {cells} severities)", *mean_error],
        ["clean error (%)", *clean],
        [f"relative mCE against this pipeline's CE (%; {len(relative.kept)} of {len(corruptions)} corruptions)", kept, "100 by construction"],
        *stored_mce_rows(stored),
    ]


def stored_mce_rows(stored: list[dict]) -> list[list[str]]:
    """The stage's mCE (and, against AlexNet, its relative mCE), labelled with their normaliser.
    Against this pipeline's CE the stored relative mCE is left out: relative_mce_rule's replaces it."""
    alexnet = all("AlexNet" in str(run.get("baseline", "")) for run in stored)
    keys, against = (("mCE", "relative_mCE"), "AlexNet") if alexnet else (("mCE",), "this pipeline's CE, not AlexNet")
    rows = []
    for key in keys:
        values = {m: [run[m][key] for run in stored if isinstance(run.get(m), dict) and is_finite(run[m].get(key))] for m in MODELS}
        rows.append([f"{key} (%; normalised by {against})", *(stat(values[m], 1, 1) if len(values[m]) == len(stored) else "not computed" for m in MODELS)])
    return rows


def is_finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def relative_mce_rule(runs: dict[int, ScoredRun], relative: RelativeMCE, name: str) -> str:
    images = min(run.images_per_cell for run in runs.values())
    excluded = "; ".join(f"{name} ({why})" for name, why in relative.excluded.items()) or "none"
    return (
        f"Relative CE_c = Σ_s (E_c,s − E_clean) / Σ_s (E^CE_c,s − E^CE_clean), {name} over the CE model of the same seed; "
        f"relative mCE averages it only over corruptions whose CE degradation e_c − e_0, pooled over CE seeds {seeds_of(runs)}, "
        f"exceeds the test-set noise 2·√(e_c(1 − e_c)/N + e_0(1 − e_0)/N), N = {images:,} images per cell. "
        f"Excluded, on every seed alike: {excluded}."
    )


def severity_rows(runs: dict[int, ScoredRun]) -> list[list[str]]:
    def over_seeds(model: str, level: int, key: str, scale: float, digits: int) -> str:
        return stat(per_seed(runs, model, lambda s: s.by_severity[level][key]), scale, digits)

    return [[level, *(over_seeds(m, level, "top1", 100, 2) for m in MODELS), *(over_seeds(m, level, "ece", 1, 4) for m in MODELS)] for level in shared_severities(runs)]


def degradation_intro(name: str) -> str:
    return (
        "Degradation on a corruption = mean top-1 error over its severities minus the clean error (points), mean ± std over seeds; "
        f"{name} − CE is the per-seed paired difference (same training seed) with its 95% t-interval; below 0, {name} degrades less. "
        "Relative CE is not shown for a corruption excluded above."
    )


def degradation_row(row: Degradation, relative: RelativeMCE) -> list[str]:
    values = (stat(list(side.values()), 100, 2) for side in (row.supcon, row.ce))
    if row.interval is None:
        difference = f"{100 * fmean(row.difference.values()):+.2f} ({len(row.difference)} pair: no interval)"
    else:
        difference = f"{100 * row.interval.mean:+.2f} [{100 * row.interval.low:+.2f}, {100 * row.interval.high:+.2f}] (n={row.interval.n})"
    if row.corruption in relative.excluded:
        ratio = "excluded"
    else:
        ratio = stat([by_name[row.corruption] for by_name in relative.relative_ce.values()], 1, 1)
    return [row.corruption, *values, difference, ratio]


def degradation_figure(rows: list[Degradation], method: str) -> Figure:
    means = [100 * fmean(row.difference.values()) for row in rows]
    intervals = [(100 * row.interval.low, 100 * row.interval.high) if row.interval else None for row in rows]
    return report_figures.degradation_difference([row.corruption for row in rows], means, intervals, method)


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


def sources_section(inputs: Inputs, compare_url: str | None = None) -> Section:
    rows = [[f"`{path}`", data.get("mlflow_run_id", "—")] for path, data in sorted(inputs.sources.items())]
    compare = [f"SupCon against CE in MLflow's compare page (each seed's probe and CE run; open it while `make mlflow-ui` serves the store): {compare_url}", ""] if compare_url else []
    return ["## Sources", "", f"Layout: {inputs.layout}.", "", *compare, *table(["file", "MLflow run"], rows)], {}
