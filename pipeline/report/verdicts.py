"""Verdicts on the paper's claims from values per seed: held, did not hold, or not enough evidence.

A claim compares SupCon with cross-entropy on one number (top-1, mCE, ...). A SupCon run and a CE
run of the same training seed share that seed's data order and initialisation draw, so they form a
pair: the evidence is the difference per seed, d = SupCon - CE, and its 95% t-interval over the
seeds. Pairing removes what a seed does to both runs alike, which two unpaired means and their stds
would count as noise. The verdict is read from the interval, on the raw values (never rounded ones,
so a 0.01-point loss can never print as a win): entirely on one side of 0 decides, touching or
crossing 0 does not.

The interval covers training variance on this one test set only; test-set sampling is a separate
binomial error (`top1_sampling_half_width`), shown beside it where the test-image count is known.
"""

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

HELD = "held"
DID_NOT_HOLD = "did not hold"
NOT_ENOUGH = "not enough evidence"
MIN_SEEDS = 3
"""Seed pairs below which no verdict is given: a spread from two values is not a spread."""
CONFIDENCE = 0.95
INTERVAL = "95% t-interval over training seeds, paired by seed"
"""How every interval in a reason was made, said in the reason itself."""


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with ddof=1, n) of `values`.

    The std of a single value is reported as 0.0 (ddof=1 is undefined there): n=1 must be read
    as "no spread measured", not as "no spread". Raises ValueError on an empty sequence.
    """
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    floats = [float(v) for v in values]
    std = statistics.stdev(floats) if len(floats) > 1 else 0.0
    return statistics.fmean(floats), std, len(floats)


def t_quantile(n: int) -> float:
    """The two-sided 95% quantile of Student's t for n values (n - 1 degrees of freedom)."""
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


@dataclass(frozen=True)
class PairedInterval:
    """Mean paired difference with its 95% t-interval: mean ± t(0.975, n-1) · std / √n."""

    mean: float
    low: float
    high: float
    n: int
    std: float
    """Sample std of the differences, ddof=1."""

    @classmethod
    def of(cls, differences: Sequence[float]) -> "PairedInterval":
        mean, std, n = mean_std(differences)
        half_width = t_quantile(n) * std / math.sqrt(n)
        return cls(mean=mean, low=mean - half_width, high=mean + half_width, n=n, std=std)

    def describe(self) -> str:
        """'mean +0.02, interval [+0.01752, +0.02248], n = 3', in the values' own units."""
        return f"mean {self.mean:+.4g}, interval [{self.low:+.4g}, {self.high:+.4g}], n = {self.n}"


def paired_differences(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """seed -> a[seed] - b[seed] for the seeds both sides have, in seed order."""
    return {seed: float(a[seed]) - float(b[seed]) for seed in sorted(a.keys() & b.keys())}


def unpaired(a: Mapping[int, float], b: Mapping[int, float], names: tuple[str, str]) -> str:
    """'; unpaired, not used: seed 3 (SupCon only), seed 4 (CE only)', or '' when every seed pairs."""
    alone = sorted([(seed, names[0]) for seed in a.keys() - b.keys()] + [(seed, names[1]) for seed in b.keys() - a.keys()])
    return "; unpaired, not used: " + ", ".join(f"seed {seed} ({name} only)" for seed, name in alone) if alone else ""


def unusable(differences: Mapping[int, float], min_pairs: int) -> str | None:
    """Why no interval can decide from these differences (too few pairs, a non-finite value), or None."""
    if len(differences) < min_pairs:
        return f"{_pairs(len(differences))} of seeds; {min_pairs} needed"
    diverged = [seed for seed, d in differences.items() if not math.isfinite(d)]
    if diverged:
        return f"a value of seed {', '.join(map(str, diverged))} is not finite (a diverged run?)"
    return None


def paired_verdict(
    supcon: Mapping[int, float], ce: Mapping[int, float], *, higher_is_better: bool, min_seeds: int = MIN_SEEDS, names: tuple[str, str] = ("SupCon", "CE")
) -> tuple[str, str, PairedInterval | None]:
    """(verdict, reason, interval) for "SupCon is better than CE" on one metric (seed -> value).

    HELD when the interval of SupCon - CE lies entirely on SupCon's side of 0 (above for
    accuracies, below when lower is better), DID_NOT_HOLD when entirely on CE's side, NOT_ENOUGH
    when it touches or crosses 0, with fewer than `min_seeds` pairs or a non-finite value (then no
    interval is returned). Seeds on one side only are named in the reason, never used. `names`:
    what the two sides are called in the reason, for a claim about another pair of arms (a
    queue against none) judged by the same rule.
    """
    if min_seeds < 2:
        raise ValueError(f"min_seeds must be at least 2 for a t-interval, got {min_seeds}")
    first, second = names
    differences = paired_differences(supcon, ce)
    skipped = unpaired(supcon, ce, names)
    problem = unusable(differences, min_seeds)
    if problem:
        return NOT_ENOUGH, problem + skipped, None
    interval = PairedInterval.of(list(differences.values()))
    first_side, second_side = (interval.low > 0, interval.high < 0) if higher_is_better else (interval.high < 0, interval.low > 0)
    if first_side:
        result, where = HELD, f"entirely on {first}'s side of 0"
    elif second_side:
        result, where = DID_NOT_HOLD, f"entirely on {second}'s side of 0 (favours {second})"
    else:
        result, where = NOT_ENOUGH, "touches or crosses 0"
    return result, f"{first} − {second}: {interval.describe()} pairs ({INTERVAL}): {where}{skipped}", interval


def verdict(supcon: Mapping[int, float], ce: Mapping[int, float], *, higher_is_better: bool, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, reason) of `paired_verdict`, for callers that print no interval."""
    result, reason, _ = paired_verdict(supcon, ce, higher_is_better=higher_is_better, min_seeds=min_seeds)
    return result, reason


def _pairs(n: int) -> str:
    return f"{n} pair" if n == 1 else f"{n} pairs"


@dataclass(frozen=True)
class Evidence:
    """The values per seed of SupCon and of CE for one comparison (seed -> value)."""

    supcon: Mapping[int, float]
    ce: Mapping[int, float]
    higher_is_better: bool = True
    """True for accuracy, False for errors such as mCE."""
    names: tuple[str, str] = ("SupCon", "CE")
    """The two sides as the reason names them (the first is the one the claim favours)."""

    def paired(self, min_seeds: int = MIN_SEEDS) -> tuple[str, str, PairedInterval | None]:
        return paired_verdict(self.supcon, self.ce, higher_is_better=self.higher_is_better, min_seeds=min_seeds, names=self.names)

    def verdict(self, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
        return verdict(self.supcon, self.ce, higher_is_better=self.higher_is_better, min_seeds=min_seeds)


def sampling_error(accuracy: float, images: int) -> float:
    """Two standard errors of an accuracy measured on `images` independent images (binomial)."""
    return 2 * math.sqrt(accuracy * (1 - accuracy) / images)


def top1_sampling_half_width(top1: float, test_images: int) -> float:
    """± of a top-1 accuracy (a fraction) from sampling `test_images` test images: two binomial
    standard errors. What the seed interval cannot show: another test set of the same size would
    move every run's top-1 by about this much."""
    if test_images < 1 or not 0 <= top1 <= 1:
        raise ValueError(f"a top-1 fraction in [0, 1] on at least one image is needed, got {top1} on {test_images}")
    return sampling_error(top1, test_images)


def temperature_verdict(val_top1: Mapping[float, Mapping[int, float]], *, reference: float = 0.1, margin: float = 0.005, stopped: Collection[float] = ()) -> tuple[str, str]:
    """(verdict, reason) for "`reference` is the best temperature", from confirmation runs:
    temperature -> seed -> the linear probe's val top-1 (fractions; `margin` 0.005 = 0.5 points).

    Every other temperature T not in `stopped` (trials an early-stopping scheduler ended never
    decide) is compared with `reference` by its paired difference T - reference over shared seeds.
    HELD when every interval's upper bound is ≤ `margin` (no T beats the reference by more than
    the margin); DID_NOT_HOLD when some interval's lower bound is > `margin`; NOT_ENOUGH
    otherwise, and when the reference or any other T is missing, or a compared T has fewer than
    MIN_SEEDS shared seeds or a non-finite value. The reason names the deciding T and its interval.
    """
    at_reference = next((seeds for t, seeds in val_top1.items() if _same(t, reference)), None)
    if at_reference is None:
        return NOT_ENOUGH, f"T = {reference:g} has no confirmation runs"
    compared = sorted(t for t in val_top1 if not _same(t, reference) and not any(_same(t, s) for s in stopped))
    ignored = f"; stopped early, not judged: T = {', '.join(f'{t:g}' for t in sorted(stopped))}" if stopped else ""
    if not compared:
        return NOT_ENOUGH, f"no other temperature to compare T = {reference:g} with{ignored}"
    intervals = {}
    for t in compared:
        differences = paired_differences(val_top1[t], at_reference)
        problem = unusable(differences, MIN_SEEDS)
        if problem:
            skipped = unpaired(val_top1[t], at_reference, (f"T = {t:g}", f"T = {reference:g}"))
            return NOT_ENOUGH, f"T = {t:g} against T = {reference:g}: {problem}{skipped}{ignored}"
        intervals[t] = PairedInterval.of(list(differences.values()))
    result, reason = _judge_temperatures(intervals, reference, margin)
    return result, reason + ignored


def _judge_temperatures(intervals: dict[float, PairedInterval], reference: float, margin: float) -> tuple[str, str]:
    """The temperature verdict from each T's interval of T - reference; see temperature_verdict."""
    beyond = max(intervals, key=lambda t: intervals[t].low)
    closest = max(intervals, key=lambda t: intervals[t].high)

    def named(t: float) -> str:
        return f"T = {t:g} − T = {reference:g}: {intervals[t].describe()} seeds ({INTERVAL})"

    if intervals[beyond].low > margin:
        return DID_NOT_HOLD, f"{named(beyond)}: beats T = {reference:g} by more than {margin:g}"
    if intervals[closest].high <= margin:
        return HELD, f"{named(closest)}: no other T beats T = {reference:g} by more than {margin:g} (the closest shown)"
    return NOT_ENOUGH, f"{named(closest)}: the interval crosses {margin:g}"


def _same(a: float, b: float) -> bool:
    """Temperatures equal up to float noise from a sampler or a JSON round trip."""
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
