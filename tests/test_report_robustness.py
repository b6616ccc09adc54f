"""The report's robustness section on hand-made robustness.json contents (pipeline.report.robustness_view
computes, pipeline.report.sections.robustness_section writes): mean corruption error, degradation
paired by seed with its t-interval, relative mCE over the corruptions CE's degradation makes
meaningful, and old files that name themselves instead of aborting the report."""

import io
import math
import re

import pytest

from pipeline.report import Inputs
from pipeline.report.robustness_view import degradation_noise, degradations, readable_runs, relative_ce, relative_mce, scored_run, shared_corruptions
from pipeline.report.sections import robustness_section
from pipeline.robustness import corruption_summary

OWN_CE = "this pipeline's CE model (train_ce): its CE and relative CE are 100 by construction"
ALEXNET = "AlexNet's ImageNet-C errors (Hendrycks & Dietterich, ICLR 2019)"


def model(clean: float, errors: dict[str, list[float]], **stored) -> dict:
    """One model's entry of robustness.json: top-1 by severity follows from the errors."""
    levels = len(next(iter(errors.values())))
    by_severity = {"0": {"top1": 1 - clean, "ece": 0.01}}
    by_severity |= {str(s): {"top1": 1 - sum(e[s - 1] for e in errors.values()) / len(errors), "ece": 0.01 * (s + 1)} for s in range(1, levels + 1)}
    return {"clean_error": clean, "errors": errors, "by_severity": by_severity, **stored}


def run(supcon: dict, ce: dict, images: int = 1000, baseline: str = OWN_CE) -> dict:
    return {"source": "generated", "baseline": baseline, "images_per_cell": images, "supcon": supcon, "ce": ce}


def section(robustness: dict[int, dict]) -> tuple[str, dict]:
    inputs = Inputs(supcon={0: {"method": "supcon"}}, ce={}, pretrain={}, robustness=robustness, reduced=[], sweeps=[], curves={})
    lines, drawn = robustness_section(inputs)
    return "\n".join(lines), drawn


def row(text: str, first_cell: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"no single row {first_cell!r} in:\n{text}"
    return rows[0]


def renders(figure) -> bool:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()[:4] == b"\x89PNG"


def test_mean_corruption_error_is_the_plain_mean_of_every_corruption_and_severity():
    # SupCon (0.20 + 0.40 + 0.30 + 0.50) / 4 = 0.35; CE (0.30 + 0.50 + 0.40 + 0.60) / 4 = 0.45
    supcon = model(0.10, {"fog": [0.20, 0.40], "snow": [0.30, 0.50]})
    ce = model(0.12, {"fog": [0.30, 0.50], "snow": [0.40, 0.60]})
    scored = scored_run(run(supcon, ce))
    assert scored.supcon.mean_corruption_error(["fog", "snow"]) == pytest.approx(0.35)
    text, _ = section({0: run(supcon, ce)})
    assert row(text, "mean corruption error (%; 2 corruptions × 2 severities)").endswith("| 35.00 (n=1) | 45.00 (n=1) |")
    assert row(text, "clean error (%)") == "| clean error (%) | 10.00 (n=1) | 12.00 (n=1) |"
    assert row(text, "2") == "| 2 | 55.00 (n=1) | 45.00 (n=1) | 0.0300 (n=1) | 0.0300 (n=1) |"  # top-1 = 1 - mean error at severity 2


def test_one_seed_pair_shows_its_degradation_difference_without_an_interval():
    # fog: SupCon 0.30 - 0.10 = 20 points, CE 0.40 - 0.12 = 28 points: -8 points
    text, drawn = section({0: run(model(0.10, {"fog": [0.20, 0.40]}), model(0.12, {"fog": [0.30, 0.50]}))})
    assert row(text, "fog") == "| fog | 20.00 (n=1) | 28.00 (n=1) | -8.00 (1 pair: no interval) | 71.4 (n=1) |"
    assert renders(drawn["robustness_degradation"])


def test_degradation_difference_is_paired_by_seed_with_a_95_percent_t_interval():
    # each seed moves both models' fog error by 5 points alike; SupCon degrades 1, 2, 3 points more:
    # mean 2, std 1, half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732 = 2.484 points
    runs = {}
    for seed in range(3):
        ce_fog, supcon_fog = 0.30 + 0.05 * seed, 0.30 + 0.05 * seed + 0.01 * (seed + 1)
        runs[seed] = run(model(0.10, {"fog": [supcon_fog] * 2}), model(0.10, {"fog": [ce_fog] * 2}))
    scored, _ = readable_runs(runs)
    (fog,) = degradations(scored, ["fog"])
    assert fog.difference == pytest.approx({0: 0.01, 1: 0.02, 2: 0.03})
    assert (fog.interval.mean, fog.interval.low, fog.interval.high, fog.interval.n) == pytest.approx((0.02, 0.02 - 0.024841, 0.02 + 0.024841, 3), abs=1e-5)
    text, drawn = section(runs)
    assert row(text, "fog") == "| fog | 27.00 ± 6.00 (n=3) | 25.00 ± 5.00 (n=3) | +2.00 [-0.48, +4.48] (n=3) | 107.7 ± 2.5 (n=3) |"
    assert "(figures/robustness_degradation.png)" in text and renders(drawn["robustness_degradation"])


def test_corruptions_ce_does_not_degrade_on_are_excluded_named_and_never_give_inf_or_nan():
    # CE: fog +20 points (kept), zoom_blur +0 (zero), jpeg_compression -1.5 (negative)
    ce = model(0.10, {"fog": [0.30, 0.30], "zoom_blur": [0.10, 0.10], "jpeg_compression": [0.09, 0.08]})
    supcon = model(0.08, {"fog": [0.20, 0.20], "zoom_blur": [0.12, 0.12], "jpeg_compression": [0.10, 0.10]})
    text, drawn = section({0: run(supcon, ce)})
    # relative mCE over fog alone: (0.20 - 0.08) / (0.30 - 0.10) = 60%
    assert row(text, "relative mCE against this pipeline's CE (%; 1 of 3 corruptions)").endswith("| 60.0 (n=1) | 100 by construction |")
    assert "Excluded, on every seed alike: zoom_blur (CE degradation +0.00 ≤ noise" in text and "jpeg_compression (CE degradation -1.50 ≤ noise" in text
    assert row(text, "zoom_blur").endswith("| excluded |") and row(text, "jpeg_compression").endswith("| excluded |")
    assert re.search(r"\b(inf|nan)\b", text, re.IGNORECASE) is None
    assert all(renders(figure) for figure in drawn.values())


def test_a_corruption_ce_does_not_degrade_on_in_one_seed_is_excluded_for_every_seed():
    # pooled CE degradation on fog (20 - 1) / 2 = 9.5 points is far above noise, but seed 1's is -1
    runs = {seed: run(model(0.10, {"fog": [0.20] * 2, "snow": [0.40] * 2}), model(0.10, {"fog": [fog] * 2, "snow": [0.40] * 2})) for seed, fog in ((0, 0.30), (1, 0.09))}
    scored, _ = readable_runs(runs)
    relative = relative_mce(scored, shared_corruptions(scored))
    assert relative.excluded == {"fog": "CE degradation ≤ 0 on seed 1"}
    assert relative.per_seed == pytest.approx({0: 100.0, 1: 100.0})  # snow alone: 30 / 30 points


def test_the_excluded_set_is_fixed_once_from_the_pooled_ce_seeds():
    # CE clean 10% on every seed, N = 1,000. fog: CE degradation 1, 1, 10 points, pooled e_c = 14%:
    # 4 points > 2 sqrt(.14 x .86 / 1000 + .1 x .9 / 1000) = 2.90: kept on every seed, though seeds 0
    # and 1 alone would not be. snow: 5, 1, 1 points, pooled e_c = 12.33%: 2.33 ≤ 2 sqrt(.1233 x .8767 / 1000
    # + .09 / 1000) = 2.82: excluded on every seed, though seed 0 alone would be kept.
    ce_fog, ce_snow, supcon_fog = (0.11, 0.11, 0.20), (0.15, 0.11, 0.11), (0.105, 0.11, 0.15)
    runs = {seed: run(model(0.10, {"fog": [supcon_fog[seed]] * 2, "snow": [0.12] * 2}), model(0.10, {"fog": [ce_fog[seed]] * 2, "snow": [ce_snow[seed]] * 2})) for seed in range(3)}
    scored, _ = readable_runs(runs)
    relative = relative_mce(scored, shared_corruptions(scored))
    assert relative.excluded == {"snow": "CE degradation +2.33 ≤ noise 2.82 points"}
    assert all(list(by_name) == ["fog"] for by_name in relative.relative_ce.values()) and len(relative.relative_ce) == 3
    # SupCon fog degradations 0.5, 1, 5 points over CE's 1, 1, 10: 50%, 100%, 50%
    assert relative.per_seed == pytest.approx({0: 50.0, 1: 100.0, 2: 50.0})
    text, _ = section(runs)
    assert row(text, "relative mCE against this pipeline's CE (%; 1 of 2 corruptions)").endswith("| 66.7 ± 28.9 (n=3) | 100 by construction |")


def test_degradation_noise_is_two_binomial_standard_errors_of_the_difference():
    # 2 sqrt(0.2 x 0.8 / 100 + 0.1 x 0.9 / 100) = 2 sqrt(0.0025) = 0.1
    assert degradation_noise(0.2, 0.1, 100) == pytest.approx(0.1)


def test_relative_ce_is_the_robustness_stage_definition():
    supcon_errors, ce_errors = [0.2, 0.25, 0.3, 0.4, 0.6], [0.15, 0.3, 0.35, 0.5, 0.55]
    scored = scored_run(run(model(0.1, {"fog": supcon_errors}), model(0.12, {"fog": ce_errors})))
    stage = corruption_summary({"fog": supcon_errors}, 0.1, {"fog": ce_errors}, 0.12)["relative_CE"]["fog"]
    assert relative_ce(scored.supcon, scored.ce, "fog") == pytest.approx(stage)


def test_an_old_robustness_json_without_per_cell_errors_gives_a_note_not_an_exception():
    old = run(model(0.10, {"fog": [0.2, 0.4]}, mCE=95.0), model(0.12, {"fog": [0.3, 0.5]}, mCE=100.0))
    for side in ("supcon", "ce"):
        del old[side]["errors"]
    alone, drawn = section({0: old})
    assert "seed 0 (no supcon.errors)" in alone and "rerun `dvc repro robustness@<seed>`" in alone
    assert "|" not in alone and drawn == {}
    new = run(model(0.10, {"fog": [0.2, 0.4]}), model(0.12, {"fog": [0.3, 0.5]}))
    nan = run(model(0.10, {"fog": [0.2, math.nan]}), model(0.12, {"fog": [0.3, 0.5]}))
    unsized = {key: value for key, value in new.items() if key != "images_per_cell"}
    mixed, _ = section({0: old, 1: new, 2: nan, 3: unsized})
    assert "seed 0 (no supcon.errors); seed 2 (supcon.errors.fog is nan, not a finite number); seed 3 (no images_per_cell)" in mixed
    assert "Mean ± std over seeds 1;" in mixed and row(mixed, "clean error (%)") == "| clean error (%) | 10.00 (n=1) | 12.00 (n=1) |"


def test_the_stored_mce_is_labelled_with_its_normaliser():
    def stored(baseline: str) -> str:
        supcon = model(0.10, {"fog": [0.2, 0.4]}, mCE=67.2, relative_mCE=94.6)
        ce = model(0.12, {"fog": [0.3, 0.5]}, mCE=68.6, relative_mCE=96.2)
        return section({0: run(supcon, ce, baseline=baseline)})[0]

    alexnet = stored(ALEXNET)
    assert "as published" in alexnet and row(alexnet, "mCE (%; normalised by AlexNet)").endswith("| 67.2 (n=1) | 68.6 (n=1) |")
    assert row(alexnet, "relative_mCE (%; normalised by AlexNet)").endswith("| 94.6 (n=1) | 96.2 (n=1) |")
    own = stored(OWN_CE)
    assert "not AlexNet, so the stored mCE compares with no published one" in own
    assert row(own, "mCE (%; normalised by this pipeline's CE, not AlexNet)").endswith("| 67.2 (n=1) | 68.6 (n=1) |")
    assert "relative_mCE (%" not in own  # the ill-conditioned stored one: replaced by the row over kept corruptions


def mce_claim(robustness: dict[int, dict]):
    from pipeline.report.claims import claim_mce

    return claim_mce(Inputs(supcon={0: {"method": "supcon"}}, ce={}, pretrain={}, robustness=robustness, reduced=[], sweeps=[], curves={}))


def test_the_mce_claim_against_own_ce_pairs_the_mean_corruption_error_by_seed():
    # Mean corruption errors (fog, snow; 1 severity): SupCon 0.30, 0.32, 0.31; CE 0.35, 0.36, 0.38.
    # Differences -0.05, -0.04, -0.07: mean -0.05333, s = 0.015275, half-width 4.3027 x s / sqrt(3) = 0.037945
    # -> [-0.09128, -0.01539]: entirely below 0, so SupCon's error is lower: held.
    supcon = {0: 0.30, 1: 0.32, 2: 0.31}
    ce = {0: 0.35, 1: 0.36, 2: 0.38}
    runs = {seed: run(model(0.1, {"fog": [supcon[seed] - 0.01], "snow": [supcon[seed] + 0.01]}, mCE=90.0), model(0.1, {"fog": [ce[seed]], "snow": [ce[seed]]}, mCE=100.0)) for seed in supcon}
    claim = mce_claim(runs)
    assert claim.verdict == "held", claim
    assert "SupCon 31.00 ± 1.00 (n=3) vs CE 36.33 ± 1.53 (n=3)" in claim.measured and "over 2 corruptions" in claim.measured
    assert "−5.33 [−9.13, −1.54]" in claim.measured.replace("-", "−") or "-5.33 [-9.13, -1.54]" in claim.measured, claim.measured
    # One seed where SupCon degrades more: differences -0.05, -0.04, +0.03 -> the interval crosses 0.
    runs[2] = run(model(0.1, {"fog": [0.40], "snow": [0.42]}), model(0.1, {"fog": [0.38], "snow": [0.38]}))
    assert mce_claim(runs).verdict == "not enough evidence"


def test_the_mce_claim_on_imagenet_c_uses_the_alexnet_normalised_mce():
    # Stored mCE: SupCon 70, 71, 72 vs CE 80, 80, 80: differences -10, -9, -8, interval [-12.48, -5.52]: held.
    runs = {seed: {**run(model(0.1, {"fog": [0.5]}, mCE=70.0 + seed), model(0.1, {"fog": [0.5]}, mCE=80.0), baseline=ALEXNET), "source": "imagenet-c"} for seed in range(3)}
    claim = mce_claim(runs)
    assert claim.verdict == "held" and "AlexNet-normalised" in claim.measured and "SupCon 71.0 ± 1.0 (n=3) vs CE 80.0" in claim.measured, claim
