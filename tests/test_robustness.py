"""Corruption-robustness metrics against plain float64 references and hand-computed examples."""

import math
from statistics import fmean
import re

import numpy as np
import pytest
import torch

from pipeline.config import COMMON_CORRUPTIONS, EXTRA_CORRUPTIONS
from pipeline.robustness import (
    SEVERITIES,
    ALEXNET_CLEAN_ERROR,
    ALEXNET_IMAGENET_C_ERRORS,
    alexnet_baseline,
    corruption_summary,
    cell_metrics,
    severity_profile,
)


def reference_summary(errors: dict, clean: float, baseline: dict, baseline_clean: float) -> dict:
    names = list(errors)
    model = np.array([errors[n] for n in names], dtype=np.float64)  # [C, 5]
    base = np.array([baseline[n] for n in names], dtype=np.float64)  # [C, 5]
    ce = 100 * model.sum(1) / base.sum(1)
    relative = 100 * (model - clean).sum(1) / (base - baseline_clean).sum(1)
    return {
        "CE": dict(zip(names, ce)),
        "relative_CE": dict(zip(names, relative)),
        "mCE": ce.mean(),
        "relative_mCE": relative.mean(),
    }


def reference_ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def random_errors(rng, names, low=0.3, high=0.95) -> dict:
    return {name: rng.uniform(low, high, size=5).tolist() for name in names}


def assert_summary_close(got: dict, expected: dict, rel: float = 1e-12) -> None:
    assert got.keys() == expected.keys()
    for key in ("CE", "relative_CE"):
        assert got[key].keys() == expected[key].keys()
        for name in expected[key]:
            assert got[key][name] == pytest.approx(expected[key][name], rel=rel)
    assert got["mCE"] == pytest.approx(expected["mCE"], rel=rel)
    assert got["relative_mCE"] == pytest.approx(expected["relative_mCE"], rel=rel)


@pytest.mark.parametrize("seed, num_corruptions", [(0, 1), (1, 4), (2, 15)])
def test_summary_matches_reference(seed, num_corruptions):
    rng = np.random.default_rng(seed)
    names = list(COMMON_CORRUPTIONS[:num_corruptions])
    errors, baseline = random_errors(rng, names), random_errors(rng, names)
    clean, baseline_clean = rng.uniform(0.0, 0.25, size=2)
    got = corruption_summary(errors, clean, baseline, baseline_clean)
    assert_summary_close(got, reference_summary(errors, clean, baseline, baseline_clean))


def test_summary_hand_computed():
    errors = {"fog": [0.1, 0.2, 0.3, 0.4, 0.5], "snow": [0.3] * 5}  # sums 1.5 and 1.5
    baseline = {"fog": [0.2, 0.3, 0.4, 0.5, 0.6], "snow": [0.6] * 5}  # sums 2.0 and 3.0
    got = corruption_summary(errors, 0.05, baseline, 0.1)
    # fog: CE 1.5 / 2.0, relative (1.5 - 5 * 0.05) / (2.0 - 5 * 0.1) = 1.25 / 1.5
    # snow: CE 1.5 / 3.0, relative 1.25 / 2.5
    assert got["CE"] == pytest.approx({"fog": 75.0, "snow": 50.0}, rel=1e-12)
    assert got["relative_CE"] == pytest.approx({"fog": 250 / 3, "snow": 50.0}, rel=1e-12)
    assert got["mCE"] == pytest.approx(62.5, rel=1e-12)
    assert got["relative_mCE"] == pytest.approx(200 / 3, rel=1e-12)


def test_summary_of_baseline_against_itself_is_100():
    rng = np.random.default_rng(3)
    errors = random_errors(rng, ["gaussian_noise", "fog", "pixelate"])
    got = corruption_summary(errors, 0.2, errors, 0.2)
    assert got["CE"] == pytest.approx(dict.fromkeys(errors, 100.0), rel=1e-12)
    assert got["relative_CE"] == pytest.approx(dict.fromkeys(errors, 100.0), rel=1e-12)
    assert got["mCE"] == pytest.approx(100.0) and got["relative_mCE"] == pytest.approx(100.0)


def valid_inputs() -> dict:
    return {
        "errors": {"fog": [0.4] * 5, "snow": [0.5] * 5},
        "clean_error": 0.1,
        "baseline_errors": {"fog": [0.8] * 5, "snow": [0.9] * 5},
        "baseline_clean_error": 0.4,
    }


def with_change(key: str, name: str | None, value) -> dict:
    inputs = valid_inputs()
    if name is None:
        inputs[key] = value
    else:
        inputs[key][name] = value
    return inputs


@pytest.mark.parametrize(
    "inputs, message",
    [
        (with_change("errors", None, {}), "errors is empty"),
        (
            with_change("baseline_errors", None, {"fog": [0.8] * 5, "frost": [0.8] * 5}),
            "missing from baseline_errors: ['snow']; missing from errors: ['frost']",
        ),
        (with_change("errors", "fog", [0.4] * 4), "errors['fog'] has 4 severities, expected 5"),
        (with_change("baseline_errors", "snow", [0.9] * 6), "baseline_errors['snow'] has 6 severities"),
        (with_change("errors", "snow", [0.5, 0.5, 45.0, 0.5, 0.5]), "errors['snow'] severity 3 = 45.0 is outside"),
        (with_change("baseline_errors", "fog", [0.8, -0.1, 0.8, 0.8, 0.8]), "baseline_errors['fog'] severity 2 = -0.1"),
        (with_change("errors", "fog", [0.4, 0.4, 0.4, 0.4, math.nan]), "errors['fog'] severity 5 = nan"),
        (with_change("clean_error", None, 1.5), "clean_error = 1.5 is outside [0, 1]"),
        (with_change("baseline_clean_error", None, -0.2), "baseline_clean_error = -0.2"),
    ],
)
def test_summary_rejects_bad_input(inputs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        corruption_summary(**inputs)


def test_an_undefined_ratio_is_none_named_and_leaves_its_mean_out():
    """A baseline a corruption does not change (relative CE) or a perfect one (CE): no mean is
    taken over the other corruptions, which would not compare with any published one."""
    unchanged = corruption_summary(**with_change("baseline_errors", "fog", [0.4] * 5))  # baseline clean error 0.4
    assert unchanged["relative_CE"]["fog"] is None and unchanged["undefined"] == {"relative_CE": ["fog"]}
    assert "relative_mCE" not in unchanged and unchanged["mCE"] == pytest.approx(fmean(unchanged["CE"].values()))
    perfect = corruption_summary(**with_change("baseline_errors", "snow", [0.0] * 5))
    assert perfect["CE"]["snow"] is None and "mCE" not in perfect and perfect["undefined"]["CE"] == ["snow"]
    assert "undefined" not in corruption_summary(**valid_inputs())


def test_alexnet_table_has_exactly_the_common_corruptions():
    assert len(ALEXNET_IMAGENET_C_ERRORS) == 15
    assert set(ALEXNET_IMAGENET_C_ERRORS) == set(COMMON_CORRUPTIONS)
    assert ALEXNET_CLEAN_ERROR == 0.435


def test_alexnet_baseline_repeats_the_mean():
    got = alexnet_baseline(["fog", "jpeg_compression"])
    assert got == {"fog": [0.819324] * 5, "jpeg_compression": [0.606500] * 5}


def test_alexnet_baseline_gives_the_published_ce_normaliser():
    # CE against the published means is 100 * mean_s E_sc / mean_s B_sc; the repeated mean gives exactly that.
    errors = {"brightness": [0.1, 0.15, 0.2, 0.3, 0.4], "snow": [0.3, 0.5, 0.6, 0.7, 0.8]}
    got = corruption_summary(errors, 0.08, alexnet_baseline(list(errors)), ALEXNET_CLEAN_ERROR)
    assert got["CE"]["brightness"] == pytest.approx(100 * 0.23 / 0.564592, rel=1e-12)
    assert got["relative_CE"]["snow"] == pytest.approx(100 * (0.58 - 0.08) / (0.866816 - 0.435), rel=1e-12)


@pytest.mark.parametrize("extra", EXTRA_CORRUPTIONS)
def test_alexnet_baseline_rejects_unknown_corruptions(extra):
    with pytest.raises(ValueError, match=re.escape(f"no published AlexNet ImageNet-C error for ['{extra}']")):
        alexnet_baseline(["fog", extra])


def constant_confidence_pair(num_correct: int, total: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes, every row predicts class 0 with confidence 0.75; the first `num_correct` labels are 0."""
    logits = torch.tensor([[math.log(3.0), 0.0]] * total)
    labels = torch.tensor([0] * num_correct + [1] * (total - num_correct))
    return logits, labels


def _cells(results: dict) -> dict:
    """severity -> [(logits, labels)] as the scorer turns it into severity -> [cell_metrics]."""
    return {severity: [cell_metrics(*pair) for pair in pairs] for severity, pairs in results.items()}


def test_severity_profile_known_accuracy_and_ece():
    # Severity 1: one corruption is under-confident (4/4 right at 0.75), one over-confident (2/4);
    # each has ECE 0.25, while the pooled predictions (6/8 right at 0.75) would give ECE 0.
    results = {
        0: [constant_confidence_pair(3)],
        1: [constant_confidence_pair(4), constant_confidence_pair(2)],
    }
    got = severity_profile(_cells(results))
    assert list(got) == [0, 1]
    assert got[0]["top1"] == pytest.approx(0.75, abs=1e-6) and got[0]["ece"] == pytest.approx(0.0, abs=1e-6)
    assert got[1]["top1"] == pytest.approx(0.75, abs=1e-6) and got[1]["ece"] == pytest.approx(0.25, abs=1e-6)


def test_severity_profile_matches_reference():
    rng = np.random.default_rng(4)
    results, expected = {}, {}
    for severity in range(6):
        pairs = []
        for corruption in range(1 if severity == 0 else 3):
            size, scale = 60 + 20 * corruption, 1.0 + severity + corruption  # differing N and sharpness
            pairs.append((rng.normal(scale=scale, size=(size, 10)), rng.integers(0, 10, size)))
        results[severity] = [(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) for x, y in pairs]
        expected[severity] = {
            "top1": np.mean([(x.argmax(1) == y).mean() for x, y in pairs]),
            "ece": np.mean([reference_ece(x, y) for x, y in pairs]),
        }
    got = severity_profile(_cells(results))
    assert list(got) == list(range(6))
    for severity, metrics in expected.items():
        assert got[severity]["top1"] == pytest.approx(metrics["top1"], abs=1e-6)
        assert got[severity]["ece"] == pytest.approx(metrics["ece"], abs=1e-5)


@pytest.mark.parametrize(
    "results, message",
    [
        ({}, "results is empty"),
        ({6: [constant_confidence_pair(3)]}, "severity 6 is not 0"),
        ({2: []}, "severity 2 has no cells"),
    ],
)
def test_severity_profile_rejects_bad_input(results, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        severity_profile(_cells(results))


def _scores(errors: dict[str, list[float]], clean_error: float, severities: tuple[int, ...]) -> dict:
    """What corruption.score.score_corrupted returns, built from chosen errors (ECE left at 0)."""
    cells = {(name, level): {"top1": 1 - e, "ece": 0.0} for name, per in errors.items() for level, e in zip(severities, per)}
    return {"clean": {"top1": 1 - clean_error, "ece": 0.0}, "cells": cells}


def test_model_report_against_a_baseline_and_without_all_five_severities():
    from pipeline.robustness import model_report

    errors = {"fog": [0.1, 0.2, 0.3, 0.4, 0.5], "snow": [0.2, 0.2, 0.2, 0.2, 0.2]}
    baseline = ({"fog": [0.2] * 5, "snow": [0.4] * 5}, 0.05)
    report = model_report(_scores(errors, 0.05, SEVERITIES), SEVERITIES, baseline)
    assert report["CE"] == pytest.approx({"fog": 150.0, "snow": 50.0}) and report["mCE"] == pytest.approx(100.0)
    assert report["by_severity"][0]["top1"] == pytest.approx(0.95) and report["by_severity"][3]["top1"] == pytest.approx(0.75)
    partial = model_report(_scores({"fog": [0.1, 0.3]}, 0.05, (1, 3)), (1, 3), baseline)
    assert "mCE" not in partial and partial["errors"]["fog"] == pytest.approx([0.1, 0.3])
