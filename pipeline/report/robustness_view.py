"""The robustness section's numbers over training seeds, from each seed's robustness.json.

Numbers that mean the same on every dataset: the mean corruption error (unnormalised), each
model's degradation per corruption (mean error over severities minus clean error) and SupCon's
minus CE's paired by seed, and relative mCE against this pipeline's own CE model, averaged only
over the corruptions whose CE degradation stands above test-set noise (a denominator that is
noise makes a ratio that is noise: 250% on a corruption CE barely notices).

Each robustness.json is first read into a ScoredRun. A file that lacks a value these numbers need
(one written before the per-cell errors were recorded) or holds a non-finite one is left out and
named, so nothing past `readable_runs` can raise on a key or produce inf or NaN.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import fmean

from pipeline.report.verdicts import PairedInterval, paired_differences

MODELS = ("supcon", "ce")
MIN_PAIRS = 2
"""Seed pairs a t-interval needs; below it the single difference is shown without one."""


class Unreadable(ValueError):
    """A robustness.json without a value the section needs, or with a non-finite one."""


@dataclass(frozen=True)
class ModelScores:
    clean_error: float
    errors: dict[str, list[float]]
    """corruption -> top-1 error per scored severity (fractions)."""
    by_severity: dict[int, dict[str, float]]
    """severity (0 = clean) -> {"top1", "ece"}."""

    def degradation(self, corruption: str) -> float:
        """How much `corruption` raises the error: mean error over severities minus clean error."""
        return fmean(self.errors[corruption]) - self.clean_error

    def mean_corruption_error(self, corruptions: list[str]) -> float:
        """Top-1 error averaged over every (corruption, severity) cell of `corruptions`, normalised
        by nothing: the number CIFAR-10-C papers report, meaningful on any dataset."""
        return fmean(error for name in corruptions for error in self.errors[name])


@dataclass(frozen=True)
class ScoredRun:
    """One seed's robustness.json, as far as the section reads it."""

    supcon: ModelScores
    ce: ModelScores
    images_per_cell: int

    def model(self, name: str) -> ModelScores:
        return self.supcon if name == "supcon" else self.ce


# --- reading ------------------------------------------------------------------------------------


def readable_runs(runs: Mapping[int, Mapping]) -> tuple[dict[int, ScoredRun], str]:
    """(seed -> ScoredRun, note): the note is '' when every file could be read, else one line
    naming each seed left out and the first value its file lacks."""
    scored, left_out = {}, []
    for seed, run in sorted(runs.items()):
        try:
            scored[seed] = scored_run(run)
        except Unreadable as why:
            left_out.append(f"seed {seed} ({why})")
    if not left_out:
        return scored, ""
    rerun = "rerun `dvc repro robustness@<seed>` to record them"
    return scored, f"Left out of the tables below, their robustness.json lacks what they need (an older file?; {rerun}): {'; '.join(left_out)}."


def scored_run(run: Mapping) -> ScoredRun:
    """The values the section needs from one robustness.json; Unreadable names the first one that is missing or not finite."""
    images = _number(run, "images_per_cell")
    if images < 1:
        raise Unreadable(f"images_per_cell is {images:g}")
    return ScoredRun(supcon=_model_scores(run, "supcon"), ce=_model_scores(run, "ce"), images_per_cell=int(images))


def _model_scores(run: Mapping, model: str) -> ModelScores:
    errors = _at(run, f"{model}.errors")
    levels = _at(run, f"{model}.by_severity")
    if not isinstance(errors, Mapping) or not errors:
        raise Unreadable(f"no corruption in {model}.errors")
    if not isinstance(levels, Mapping) or not levels:
        raise Unreadable(f"no severity in {model}.by_severity")
    return ModelScores(
        clean_error=_number(run, f"{model}.clean_error"),
        errors={name: _numbers(per_severity, f"{model}.errors.{name}") for name, per_severity in errors.items()},
        by_severity={_level(level, model): {key: _number(run, f"{model}.by_severity.{level}.{key}") for key in ("top1", "ece")} for level in levels},
    )


def _at(data: Mapping, path: str):
    """data["a"]["b"] for path "a.b"; Unreadable when a key is missing."""
    value = data
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise Unreadable(f"no {path}")
        value = value[key]
    return value


def _finite(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unreadable(f"{where} is {value!r}, not a finite number")
    return float(value)


def _number(data: Mapping, path: str) -> float:
    return _finite(_at(data, path), path)


def _numbers(values, where: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise Unreadable(f"{where} is not a list of errors per severity")
    return [_finite(value, where) for value in values]


def _level(level, model: str) -> int:
    if not str(level).isdigit():
        raise Unreadable(f"{model}.by_severity has a severity {level!r}")
    return int(level)


# --- numbers over seeds -------------------------------------------------------------------------


def shared_corruptions(runs: Mapping[int, ScoredRun]) -> list[str]:
    """The corruptions both models of every run were scored on, in the first run's order: a mean
    over seeds must average the same corruptions on each."""
    first = next(iter(runs.values()))
    return [name for name in first.supcon.errors if all(name in run.supcon.errors and name in run.ce.errors for run in runs.values())]


def shared_severities(runs: Mapping[int, ScoredRun]) -> list[int]:
    """The severity levels (0 = clean) both models of every run report, in order."""
    return sorted(set.intersection(*(set(run.supcon.by_severity) & set(run.ce.by_severity) for run in runs.values())))


def per_seed(runs: Mapping[int, ScoredRun], model: str, value) -> list[float]:
    """value(model's scores) for each run, in seed order."""
    return [value(runs[seed].model(model)) for seed in sorted(runs)]


@dataclass(frozen=True)
class Degradation:
    """Both models' degradation on one corruption, per seed, and SupCon's minus CE's paired by seed."""

    corruption: str
    supcon: dict[int, float]
    ce: dict[int, float]
    difference: dict[int, float]
    interval: PairedInterval | None
    """95% t-interval of the differences; None below MIN_PAIRS pairs."""


def degradations(runs: Mapping[int, ScoredRun], corruptions: list[str]) -> list[Degradation]:
    """One Degradation per corruption, in the order given (fractions, not points)."""
    rows = []
    for name in corruptions:
        supcon, ce = ({seed: run.model(model).degradation(name) for seed, run in runs.items()} for model in MODELS)
        difference = paired_differences(supcon, ce)
        interval = PairedInterval.of(list(difference.values())) if len(difference) >= MIN_PAIRS else None
        rows.append(Degradation(name, supcon, ce, difference, interval))
    return rows


# --- relative mCE against this pipeline's CE ----------------------------------------------------


def degradation_noise(corrupted_error: float, clean_error: float, images: int) -> float:
    """Two binomial standard errors of a difference of two error rates, each measured on `images` images:

        2 * sqrt(e_c (1 - e_c) / N + e_0 (1 - e_0) / N)

    e_c: the error on a corruption (mean over severities), e_0: the clean error, N: images per cell.
    A degradation e_c - e_0 at or below this is what another test set of N images could move it by.
    """
    return 2 * math.sqrt(corrupted_error * (1 - corrupted_error) / images + clean_error * (1 - clean_error) / images)


def excluded_corruptions(runs: Mapping[int, ScoredRun], corruptions: list[str]) -> dict[str, str]:
    """Corruptions left out of relative mCE, name -> why (in points), fixed once for every seed.

    Pooled over all CE runs: e_c is CE's error on c (mean over severities, then over seeds), e_0
    its clean error (mean over seeds), N the fewest images per cell of any run (every seed scores
    the same images, so pooling seeds does not shrink the noise). c is excluded when
    e_c - e_0 <= degradation_noise(e_c, e_0, N): relative CE divides by that degradation, and a
    divisor inside the noise makes a ratio of noise. c is also excluded when some seed's CE
    degradation is <= 0, where that seed's ratio has no meaning (or no value).
    """
    images = min(run.images_per_cell for run in runs.values())
    clean = fmean(run.ce.clean_error for run in runs.values())
    excluded = {}
    for name in corruptions:
        corrupted = fmean(fmean(run.ce.errors[name]) for run in runs.values())
        noise = degradation_noise(corrupted, clean, images)
        not_above = [seed for seed, run in sorted(runs.items()) if run.ce.degradation(name) <= 0]
        if corrupted - clean <= noise:
            excluded[name] = f"CE degradation {100 * (corrupted - clean):+.2f} ≤ noise {100 * noise:.2f} points"
        elif not_above:
            excluded[name] = f"CE degradation ≤ 0 on seed {', '.join(map(str, not_above))}"
    return excluded


def relative_ce(supcon: ModelScores, ce: ModelScores, corruption: str) -> float:
    """SupCon's relative CE (%) against CE of the same seed, as pipeline.robustness.corruption_summary
    defines it: 100 * sum_s (E_s - E_clean) / sum_s (B_s - B_clean). Both models are scored on the
    same severities, so the sums' ratio is the ratio of the degradations (means over severities)."""
    return 100 * supcon.degradation(corruption) / ce.degradation(corruption)


@dataclass(frozen=True)
class RelativeMCE:
    kept: list[str]
    excluded: dict[str, str]
    """name -> why it is not averaged (excluded_corruptions)."""
    relative_ce: dict[int, dict[str, float]]
    """seed -> kept corruption -> SupCon's relative CE (%)."""

    @property
    def per_seed(self) -> dict[int, float]:
        """seed -> relative mCE (%): the mean over the kept corruptions; empty when none is kept."""
        return {seed: fmean(by_name.values()) for seed, by_name in self.relative_ce.items() if by_name}


def relative_mce(runs: Mapping[int, ScoredRun], corruptions: list[str]) -> RelativeMCE:
    """SupCon's relative CE per seed over the corruptions excluded_corruptions keeps: the same set on every seed."""
    excluded = excluded_corruptions(runs, corruptions)
    kept = [name for name in corruptions if name not in excluded]
    per_corruption = {seed: {name: relative_ce(run.supcon, run.ce, name) for name in kept} for seed, run in sorted(runs.items())}
    return RelativeMCE(kept, excluded, per_corruption)
