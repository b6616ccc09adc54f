"""pipeline.report.verdicts against hand-computed numbers: mean and std, the paired 95% t-interval
and each verdict it gives, the test-set sampling error, and the temperature rule."""

import math

import numpy as np
import pytest

from pipeline.report.verdicts import (
    DID_NOT_HOLD,
    HELD,
    NOT_ENOUGH,
    Evidence,
    PairedInterval,
    mean_std,
    paired_verdict,
    sampling_error,
    t_quantile,
    temperature_verdict,
    top1_sampling_half_width,
    verdict,
)

# SupCon - CE per seed is 2.0, 2.1, 1.9: mean 2, s 0.1, half-width 4.303 * 0.1 / √3 = 0.2484.
NARROW = Evidence({0: 3.0, 1: 4.1, 2: 2.9}, {0: 1.0, 1: 2.0, 2: 1.0})

# --- mean, std and the t quantile -----------------------------------------------------------------


def test_mean_std_matches_hand_computed_values_and_numpy():
    mean, std, n = mean_std([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4)
    assert std == pytest.approx(math.sqrt(5 / 3), rel=1e-15)  # sum of squares 5, ddof=1
    values = np.random.default_rng(0).random(7)
    mean, std, _ = mean_std(list(values))
    assert mean == pytest.approx(float(np.mean(values, dtype=np.float64)), rel=1e-15)
    assert std == pytest.approx(float(np.std(values, ddof=1, dtype=np.float64)), rel=1e-14)


def test_mean_std_of_one_value_has_zero_std_and_of_none_raises():
    assert mean_std([0.8635]) == (0.8635, 0.0, 1)
    with pytest.raises(ValueError):
        mean_std([])


def test_t_quantile_is_the_tabulated_two_sided_95_percent_value():
    assert t_quantile(3) == pytest.approx(4.303, abs=5e-4)  # 2 degrees of freedom
    assert t_quantile(5) == pytest.approx(2.776, abs=5e-4)  # 4 degrees of freedom
    with pytest.raises(ValueError):
        t_quantile(1)


# --- the paired interval and the verdict read from it -------------------------------------------


def test_differences_1_2_3_give_an_interval_across_0_and_no_verdict():
    interval = PairedInterval.of([1.0, 2.0, 3.0])  # mean 2, s 1, half-width 4.303 / √3 = 2.484
    assert (interval.mean, interval.std, interval.n) == (2.0, 1.0, 3)
    assert interval.low == pytest.approx(-0.484, abs=1e-3) and interval.high == pytest.approx(4.484, abs=1e-3)
    result, reason = verdict({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0}, higher_is_better=True)
    assert result == NOT_ENOUGH
    # printed to 4 digits with t = 4.3027 (4.303 is rounded): 2 - 4.3027 / √3 = -0.48414
    assert reason == "SupCon − CE: mean +2, interval [-0.4841, +4.484], n = 3 pairs (95% t-interval over training seeds, paired by seed): touches or crosses 0"


def test_an_interval_entirely_above_0_holds_for_an_accuracy():
    result, reason, interval = NARROW.paired()
    assert result == HELD and "entirely on SupCon's side of 0" in reason
    assert interval.low == pytest.approx(1.752, abs=1e-3) and interval.high == pytest.approx(2.248, abs=1e-3)
    assert "[+1.752, +2.248], n = 3 pairs (95% t-interval over training seeds, paired by seed)" in reason
    assert NARROW.verdict() == (result, reason)


def test_lower_is_better_mirrors_the_verdict():
    lower = Evidence(NARROW.supcon, NARROW.ce, higher_is_better=False)  # SupCon's error 2 higher
    assert lower.verdict()[0] == DID_NOT_HOLD and "entirely on CE's side of 0" in lower.verdict()[1]
    assert Evidence(NARROW.ce, NARROW.supcon, higher_is_better=False).verdict()[0] == HELD  # 2 lower
    assert Evidence(NARROW.ce, NARROW.supcon, higher_is_better=True).verdict()[0] == DID_NOT_HOLD


def test_fewer_than_3_pairs_is_not_enough_evidence_and_says_how_many():
    result, reason, interval = paired_verdict({0: 3.0, 1: 4.1}, {0: 1.0, 1: 2.0}, higher_is_better=True)
    assert (result, reason, interval) == (NOT_ENOUGH, "2 pairs of seeds; 3 needed", None)
    assert verdict({0: 0.9}, {0: 0.5}, higher_is_better=True) == (NOT_ENOUGH, "1 pair of seeds; 3 needed")
    # two pairs at min_seeds=2: t(1 dof) = 12.706, s 0.0707, half-width 0.635: (1.415, 2.685)
    assert verdict({0: 3.0, 1: 4.1}, {0: 1.0, 1: 2.0}, higher_is_better=True, min_seeds=2)[0] == HELD
    with pytest.raises(ValueError):
        verdict({0: 1.0}, {0: 0.0}, higher_is_better=True, min_seeds=1)


def test_seeds_on_one_side_only_are_not_used_and_are_named():
    supcon, ce = {**NARROW.supcon, 3: 0.0}, {**NARROW.ce, 4: 9.0}
    result, reason, interval = paired_verdict(supcon, ce, higher_is_better=True)
    assert result == HELD and interval == NARROW.paired()[2]
    assert reason.endswith("; unpaired, not used: seed 3 (SupCon only), seed 4 (CE only)")
    two_pairs = verdict({0: 3.0, 1: 4.1, 5: 1.0}, {0: 1.0, 1: 2.0}, higher_is_better=True)
    assert two_pairs == (NOT_ENOUGH, "2 pairs of seeds; 3 needed; unpaired, not used: seed 5 (SupCon only)")


def test_a_non_finite_value_gives_no_verdict_and_names_its_seed():
    result, reason = verdict({0: 0.9, 1: float("nan"), 2: 0.9}, {0: 0.5, 1: 0.5, 2: 0.5}, higher_is_better=True)
    assert (result, reason) == (NOT_ENOUGH, "a value of seed 1 is not finite (a diverged run?)")
    assert verdict({0: 0.9, 1: 0.9, 2: 0.9}, {0: 0.5, 1: 0.5, 2: float("inf")}, higher_is_better=True)[0] == NOT_ENOUGH


def test_pairing_by_seed_removes_what_a_seed_does_to_both_runs():
    # Seeds move both methods alike by ±10 points; SupCon is 1 point ahead on every seed. Unpaired,
    # 1 point is inside a 10-point std; paired, the differences are 0.01 each and the claim holds.
    supcon, ce = {0: 0.80, 1: 0.90, 2: 0.70}, {0: 0.79, 1: 0.89, 2: 0.69}
    assert mean_std(list(supcon.values()))[1] == pytest.approx(0.1)
    result, _, interval = paired_verdict(supcon, ce, higher_is_better=True)
    assert result == HELD and interval.mean == pytest.approx(0.01)
    # the pairs follow the seeds, not the order the values were given in
    assert paired_verdict(supcon, dict(reversed(ce.items())), higher_is_better=True)[2] == interval


def test_a_loss_is_never_rounded_into_a_win():
    supcon = {0: 0.8600, 1: 0.8600 + 1e-7, 2: 0.8600 - 1e-7}
    ce = {0: 0.8601, 1: 0.8601 + 1e-7, 2: 0.8601 - 1e-7}
    assert round(0.8600, 3) == round(0.8601, 3)  # rounded, they would tie
    result, reason = verdict(supcon, ce, higher_is_better=True)
    assert result == DID_NOT_HOLD and "favours CE" in reason


def test_evidence_takes_a_stricter_minimum_of_seeds():
    evidence = Evidence({0: 67.0, 1: 67.1, 2: 67.2}, {0: 68.5, 1: 68.6, 2: 68.7}, higher_is_better=False)
    assert evidence.verdict()[0] == HELD
    assert evidence.verdict(min_seeds=4) == (NOT_ENOUGH, "3 pairs of seeds; 4 needed")


# --- test-set sampling ------------------------------------------------------------------------------


def test_sampling_error_is_two_binomial_standard_errors():
    assert sampling_error(0.85, 6000) == pytest.approx(2 * math.sqrt(0.85 * 0.15 / 6000), rel=1e-15)
    assert sampling_error(0.85, 6000) == pytest.approx(0.00922, abs=1e-5)


def test_top1_sampling_half_width_on_a_test_set():
    assert top1_sampling_half_width(0.85, 10000) == pytest.approx(0.00714, abs=1e-5)  # 2 √(0.85 · 0.15 / 10000)
    assert top1_sampling_half_width(0.5, 100) == pytest.approx(0.1, rel=1e-12)  # 2 √(0.25 / 100)
    with pytest.raises(ValueError):
        top1_sampling_half_width(0.85, 0)
    with pytest.raises(ValueError):
        top1_sampling_half_width(85.0, 10000)  # percent, not a fraction


# --- temperature ------------------------------------------------------------------------------------

REFERENCE = {0: 0.850, 1: 0.860, 2: 0.855}


def shifted(*by: float) -> dict[int, float]:
    """The reference's val top-1 per seed moved by `by` (one shift per seed)."""
    return {seed: value + shift for (seed, value), shift in zip(REFERENCE.items(), by, strict=True)}


def test_temperature_held_when_every_other_temperature_is_worse():
    result, reason = temperature_verdict({0.1: REFERENCE, 0.05: shifted(-0.01, -0.01, -0.01), 0.5: shifted(-0.05, -0.04, -0.06)})
    assert result == HELD
    assert reason.startswith("T = 0.05 − T = 0.1: mean -0.01")  # the closest one is named


def test_temperature_held_when_another_is_ahead_within_the_margin():
    # differences 0.002, 0.003, 0.001: mean 0.002, s 0.001, interval 0.002 ± 4.3027 · 0.001 / √3 ≤ 0.005
    result, reason = temperature_verdict({0.1: REFERENCE, 0.2: shifted(0.002, 0.003, 0.001)})
    assert result == HELD
    assert "T = 0.2 − T = 0.1: mean +0.002, interval [-0.0004841, +0.004484], n = 3 seeds" in reason


def test_temperature_did_not_hold_when_another_is_ahead_beyond_the_margin():
    # differences 0.020, 0.021, 0.019: interval 0.02 ± 0.002484, its low end above 0.005
    result, reason = temperature_verdict({0.1: REFERENCE, 0.05: shifted(-0.01, -0.01, -0.01), 0.2: shifted(0.020, 0.021, 0.019)})
    assert result == DID_NOT_HOLD
    assert reason.startswith("T = 0.2 − T = 0.1: mean +0.02, interval [+0.01752, +0.02248], n = 3 seeds")
    assert "beats T = 0.1 by more than 0.005" in reason


def test_temperature_interval_across_the_margin_is_not_enough_evidence():
    # differences 0.004, 0.006, 0.005: interval 0.005 ± 0.002484 = (0.0025, 0.0075) contains 0.005
    result, reason = temperature_verdict({0.1: REFERENCE, 0.2: shifted(0.004, 0.006, 0.005)})
    assert result == NOT_ENOUGH and "T = 0.2" in reason and "crosses 0.005" in reason


def test_a_stopped_temperature_never_decides():
    beyond = {0.1: REFERENCE, 0.05: shifted(-0.01, -0.01, -0.01), 0.30000000000000004: shifted(0.020, 0.021, 0.019)}
    assert temperature_verdict(beyond)[0] == DID_NOT_HOLD
    result, reason = temperature_verdict(beyond, stopped=[0.3])  # the same T, up to float noise
    assert result == HELD and reason.endswith("; stopped early, not judged: T = 0.3")
    assert temperature_verdict({0.1: REFERENCE, 0.3: shifted(0.02, 0.02, 0.02)}, stopped=[0.3])[0] == NOT_ENOUGH  # nothing left


def test_temperature_without_three_shared_seeds_or_the_reference_is_not_enough_evidence():
    two_seeds = {0: 0.80, 1: 0.81, 5: 0.99}  # seed 5 has no reference run to pair with
    result, reason = temperature_verdict({0.1: REFERENCE, 0.05: shifted(-0.01, -0.01, -0.01), 0.2: two_seeds})
    assert (result, reason) == (NOT_ENOUGH, "T = 0.2 against T = 0.1: 2 pairs of seeds; 3 needed; unpaired, not used: seed 2 (T = 0.1 only), seed 5 (T = 0.2 only)")
    assert temperature_verdict({0.05: REFERENCE, 0.2: REFERENCE}) == (NOT_ENOUGH, "T = 0.1 has no confirmation runs")
    assert temperature_verdict({0.1: REFERENCE})[0] == NOT_ENOUGH
    assert temperature_verdict({0.1: REFERENCE, 0.2: {0: 0.85, 1: float("nan"), 2: 0.85}})[0] == NOT_ENOUGH
