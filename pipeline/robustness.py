"""Corruption-robustness metrics: corruption error (CE, mCE, relative mCE) and accuracy/ECE per severity.

CE and relative CE are those of Hendrycks & Dietterich (2019); the severity profile is the SupCon
paper's Table 6 / Figure 6 (top-1 accuracy and ECE against corruption severity).
"""

from collections.abc import Mapping, Sequence
from statistics import fmean

import torch

from pipeline.evaluate import expected_calibration_error, topk_accuracy

SEVERITIES = (1, 2, 3, 4, 5)

# AlexNet top-1 error on ImageNet-C per corruption, mean over severities 1..5: the normaliser of CE in
# Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
# Perturbations", ICLR 2019. Only the 15 common corruptions: the 4 "extra" ones (speckle_noise,
# gaussian_blur, spatter, saturate) have no AlexNet numbers here.
ALEXNET_IMAGENET_C_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
# AlexNet top-1 error on clean ImageNet validation images (same paper): the baseline of relative mCE.
ALEXNET_CLEAN_ERROR = 0.435


def alexnet_baseline(corruptions: Sequence[str]) -> dict[str, list[float]]:
    """AlexNet errors per severity for `corruptions`, in the form `corruption_summary` takes.

    Only the mean over severities is published here, so every severity gets that mean. CE and
    relative CE use only sums over severities, and the sum of 5 copies of the mean is the true sum,
    so both come out exact; the single entries are not AlexNet's real per-severity errors.
    """
    unknown = [name for name in corruptions if name not in ALEXNET_IMAGENET_C_ERRORS]
    if unknown:
        raise ValueError(
            f"no published AlexNet ImageNet-C error for {unknown}: only the 15 common corruptions have one "
            f"({', '.join(ALEXNET_IMAGENET_C_ERRORS)})"
        )
    return {name: [ALEXNET_IMAGENET_C_ERRORS[name]] * len(SEVERITIES) for name in corruptions}


def _check_fraction(what: str, value: float) -> None:
    # `not (0 <= v <= 1)` also rejects NaN; percent given by mistake (e.g. 45.2) lands here too.
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} = {value!r} is outside [0, 1]: errors are fractions, not percent")


def _check_errors(which: str, errors: Mapping[str, Sequence[float]]) -> None:
    for name, per_severity in errors.items():
        if len(per_severity) != len(SEVERITIES):
            raise ValueError(
                f"{which}[{name!r}] has {len(per_severity)} severities, expected {len(SEVERITIES)} (severity 1..5)"
            )
        for severity, value in zip(SEVERITIES, per_severity):
            _check_fraction(f"{which}[{name!r}] severity {severity}", value)


def _check_summary_inputs(errors, clean_error, baseline_errors, baseline_clean_error) -> None:
    if not errors:
        raise ValueError("errors is empty: give the errors of at least one corruption")
    missing_from_baseline = sorted(errors.keys() - baseline_errors.keys())
    missing_from_errors = sorted(baseline_errors.keys() - errors.keys())
    if missing_from_baseline or missing_from_errors:
        raise ValueError(
            f"corruption names differ: missing from baseline_errors: {missing_from_baseline}; "
            f"missing from errors: {missing_from_errors}"
        )
    _check_errors("errors", errors)
    _check_errors("baseline_errors", baseline_errors)
    _check_fraction("clean_error", clean_error)
    _check_fraction("baseline_clean_error", baseline_clean_error)


def _percent_ratio(numerator: float, denominator: float) -> float | None:
    """100 * numerator / denominator; None when the denominator is zero (the ratio is undefined)."""
    return None if denominator == 0.0 else 100.0 * numerator / denominator


def corruption_summary(
    errors: Mapping[str, Sequence[float]],
    clean_error: float,
    baseline_errors: Mapping[str, Sequence[float]],
    baseline_clean_error: float,
) -> dict:
    """CE and relative CE per corruption, mCE and relative mCE, all in percent.

    errors, baseline_errors: corruption name -> 5 top-1 errors (severity 1..5, fractions in [0, 1]);
    clean_error, baseline_clean_error: top-1 errors on clean images (fractions). Following
    Hendrycks & Dietterich (2019):
        CE_c          = 100 * sum_s E_sc / sum_s B_sc
        relative CE_c = 100 * sum_s (E_sc - E_clean) / sum_s (B_sc - B_clean)
    mCE and relative mCE are plain means over the corruptions given, so they compare with published
    numbers only when all 15 common corruptions are given.

    A ratio whose baseline sum is zero is undefined (a perfect baseline; for relative CE, a
    baseline whose error a corruption does not change, e.g. one that predicts a single class):
    it is None, named in "undefined", and the mean over corruptions is left out rather than
    taken over the others, which would make it incomparable. The scores stay reported.
    Returns {"CE": {name: pct | None}, "relative_CE": {...}, "mCE": pct, "relative_mCE": pct,
    and, when some are, "undefined": {"CE": [names], "relative_CE": [names]}; means only where defined.
    """
    _check_summary_inputs(errors, clean_error, baseline_errors, baseline_clean_error)
    clean_error, baseline_clean_error = float(clean_error), float(baseline_clean_error)
    ce, relative_ce = {}, {}
    for name, per_severity in errors.items():
        model = [float(e) for e in per_severity]
        base = [float(b) for b in baseline_errors[name]]
        ce[name] = _percent_ratio(sum(model), sum(base))
        relative_ce[name] = _percent_ratio(sum(e - clean_error for e in model), sum(b - baseline_clean_error for b in base))
    summary: dict = {"CE": ce, "relative_CE": relative_ce}
    undefined = {key: [name for name, value in ratios.items() if value is None] for key, ratios in summary.items()}
    for key, mean_key in (("CE", "mCE"), ("relative_CE", "relative_mCE")):
        if not undefined[key]:
            summary[mean_key] = fmean(summary[key].values())
    named = {key: names for key, names in undefined.items() if names}
    return {**summary, **({"undefined": named} if named else {})}


def cell_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy and ECE (15 equal-width bins on top-1 confidence) of one (corruption, severity) cell.

    Scoring keeps these two numbers per cell and drops the logits: ImageNet-C's 75 cells of 50 000
    images x 1000 classes would not fit in memory.
    """
    return {"top1": topk_accuracy(logits, labels, 1), "ece": expected_calibration_error(logits, labels, bins=15)}


def severity_profile(results: Mapping[int, Sequence[Mapping[str, float]]]) -> dict[int, dict[str, float]]:
    """Top-1 accuracy and ECE at each corruption severity, as fractions.

    results: severity (0 = clean, 1..5) -> one `cell_metrics` per corruption (a single one for
    severity 0). Returns {severity: {"top1": ..., "ece": ...}}, sorted by severity.

    Both numbers are means over corruptions of the per-corruption metric, so each corruption counts
    once, and the ECE of one corruption matches what `evaluate.expected_calibration_error` reports
    for it alone. ECE over the pooled predictions would be a different number: over- and
    under-confident corruptions that share a confidence bin cancel there, so with equal N it is
    never above the mean of per-corruption ECE (triangle inequality) and hides miscalibration.
    """
    if not results:
        raise ValueError("results is empty: give the predictions of at least one severity")
    profile = {}
    for severity in sorted(results):
        if severity not in (0, *SEVERITIES):
            raise ValueError(f"severity {severity!r} is not 0 (clean) or one of 1..5")
        cells = results[severity]
        if not cells:
            raise ValueError(f"severity {severity} has no cells")
        profile[severity] = {name: fmean(cell[name] for cell in cells) for name in ("top1", "ece")}
    return profile


def model_report(scores: Mapping, severities: Sequence[int], baseline: tuple[Mapping[str, Sequence[float]], float] | None) -> dict:
    """One model's robustness from its per-cell scores (corruption.score.score_corrupted).

    Returns clean_error, errors {corruption: [error per severity]}, by_severity {0..5: top1, ece}
    and, when all five severities were scored and a baseline (errors, clean error) is given,
    the corruption_summary (CE, relative_CE, mCE, relative_mCE) against it, over the
    corruptions the baseline has (AlexNet has none for the 4 extra ones).
    """
    cells = scores["cells"]
    corruptions = list(dict.fromkeys(name for name, _ in cells))  # in scoring order
    errors = {name: [1.0 - cells[name, level]["top1"] for level in severities] for name in corruptions}
    clean_error = 1.0 - scores["clean"]["top1"]
    by_severity = severity_profile({0: [scores["clean"]], **{level: [cells[name, level] for name in corruptions] for level in severities}})
    report = {"clean_error": clean_error, "errors": errors, "by_severity": by_severity}
    if baseline is not None and tuple(severities) == SEVERITIES:
        baseline_errors, baseline_clean = baseline
        compared = {name: errors[name] for name in baseline_errors}
        report.update(corruption_summary(compared, clean_error, baseline_errors, baseline_clean))
    return report


def errors_of(report: Mapping) -> tuple[dict[str, list[float]], float]:
    """A model_report's (errors, clean_error): the baseline form, when a model is the baseline."""
    return dict(report["errors"]), report["clean_error"]
