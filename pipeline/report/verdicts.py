"""Verdicts on the paper's claims from values per seed: held, did not hold, or not enough evidence.

A claim compares SupCon with cross-entropy on one number (top-1, mCE, ...). It is judged on the
raw values per seed, never on rounded ones, so a 0.01-point loss can never print as a win. A
difference counts only when it is larger than the seed spread: with one seed, or a difference
inside the noise of reruns, the honest answer is "not enough evidence".
"""

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HELD = "held"
DID_NOT_HOLD = "did not hold"
NOT_ENOUGH = "not enough evidence"
MIN_SEEDS = 3
"""Seeds per method below which no verdict is given: a spread from two values is not a spread."""


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


def verdict(supcon: Sequence[float], ce: Sequence[float], *, higher_is_better: bool, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, reason) for "SupCon is better than CE" on one metric, from the values per seed.

    Fewer than `min_seeds` values for either method, or a mean difference no larger than the
    seed spread (the larger of the two sample stds, ddof=1), gives NOT_ENOUGH; otherwise HELD
    when the difference favours SupCon in the claimed direction, DID_NOT_HOLD when it does not.
    """
    if min(len(supcon), len(ce)) < min_seeds:
        return NOT_ENOUGH, f"{_seeds(len(supcon))} of SupCon, {_seeds(len(ce))} of CE; {min_seeds} of each needed"
    if not all(math.isfinite(float(v)) for v in (*supcon, *ce)):
        return NOT_ENOUGH, "a value is not finite (a diverged run?)"
    supcon_mean, supcon_std, _ = mean_std(supcon)
    ce_mean, ce_std, _ = mean_std(ce)
    difference = supcon_mean - ce_mean
    spread = max(supcon_std, ce_std)
    if abs(difference) <= spread:
        return NOT_ENOUGH, f"difference {difference:+.4g} is within the seed spread {spread:.4g}"
    favours_supcon = difference > 0 if higher_is_better else difference < 0
    side = "SupCon" if favours_supcon else "CE"
    return (HELD if favours_supcon else DID_NOT_HOLD), f"difference {difference:+.4g} favours {side} beyond the seed spread {spread:.4g}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


@dataclass(frozen=True)
class Evidence:
    """The values per seed of SupCon and of CE for one comparison (seed -> value)."""

    supcon: Mapping[int, float]
    ce: Mapping[int, float]
    higher_is_better: bool = True
    """True for accuracy, False for errors such as mCE."""

    def verdict(self, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
        return verdict(list(self.supcon.values()), list(self.ce.values()), higher_is_better=self.higher_is_better, min_seeds=min_seeds)


def best_value_verdict(best: float | None, tried: Sequence[float], expected: float, *, gap: float | None = None, noise: float | None = None) -> tuple[str, str]:
    """(verdict, reason) for "`expected` is the best value of a swept parameter" (e.g. T = 0.1).

    HELD when the sweep's best equals `expected`, DID_NOT_HOLD when another value won although
    `expected` was tried, NOT_ENOUGH without a sweep or when `expected` was never tried (a sweep
    cannot reject a value it did not run). Equality allows float noise from the sampler only.
    `gap` (best objective minus `expected`'s) within `noise` (what one trial's objective can
    move by chance) is NOT_ENOUGH too: each trial is one seed, and a loss inside the noise is
    not a result either way.
    """
    if best is None:
        return NOT_ENOUGH, "no sweep"
    if not any(_same(value, expected) for value in tried):
        return NOT_ENOUGH, f"{expected:g} was not among the {len(tried)} values tried"
    if _same(best, expected):
        return HELD, f"best of {len(tried)} trials is {best:g}"
    if gap is not None and noise is not None and gap <= noise:
        return NOT_ENOUGH, f"best of {len(tried)} trials is {best:g}, only {100 * gap:.2f} points above {expected:g}: within ±{100 * noise:.2f} (2 standard errors of the objective on the val split; one seed per trial)"
    return DID_NOT_HOLD, f"best of {len(tried)} trials is {best:g}, not {expected:g}"


def sampling_error(accuracy: float, images: int) -> float:
    """Two standard errors of an accuracy measured on `images` independent images (binomial)."""
    return 2 * math.sqrt(accuracy * (1 - accuracy) / images)


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
