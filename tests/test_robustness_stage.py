"""The robustness stage scores only finished models that belong together, says when its mCE is
not the published kind, and a released set must be the one of data.dataset.

The checkpoints here are the dicts the training stages save (checkpoint.save), without weights:
the checks read only their epoch, kind and key, and fail before any model is built.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures_data import write_cifar10
from pipeline.config import COMMON_CORRUPTIONS, parse_params
from pipeline.corruption.store import CorruptedSet
from pipeline.errors import ConfigError, UserError
from pipeline.provenance import file_digest
from pipeline.tracking import NullRun
from stages import robustness as robustness_stage
from stages.corrupt import corrupt
from stages.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
EPOCHS = {"supcon": 6, "linear": 2, "ce": 6}
RAW = {"run": {"device": "cpu", "threads": 1}, **{name: {"epochs": epochs} for name, epochs in EPOCHS.items()}}


def _save(name: str, **changes) -> Path:
    """models/seeds/0/<name>/last.pt as its training stage leaves it after every epoch."""
    path = Path("models/seeds/0") / name / "last.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": 2, "epoch": EPOCHS[name], "spec": {"kind": name}, "config": {"inputs": {"prepared": "abc"}}, "mlflow_run_id": f"run-{name}"}
    if name == "linear":  # linear_eval keys its run on the encoder checkpoint's bytes
        state["config"]["inputs"]["encoder"] = file_digest(Path("models/seeds/0/supcon/last.pt"))
    torch.save({**state, **changes}, path)
    return path


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    """A consistent set of finished checkpoints for seed 0 in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    for name in ("supcon", "linear", "ce"):
        _save(name)
    return tmp_path


def test_finished_models_that_belong_together_pass(models):
    states = robustness_stage._finished_models(parse_params(RAW), 0)
    assert {name: state["mlflow_run_id"] for name, state in states.items()} == {"supcon": "run-supcon", "linear": "run-linear", "ce": "run-ce"}


def _retrain_encoder() -> None:
    _save("supcon", mlflow_run_id="a later run")  # the same epochs, other bytes


@pytest.mark.parametrize(
    "change, message",
    [
        (_retrain_encoder, r"^models/seeds/0/linear/last\.pt: the linear probe was fitted on another encoder than models/seeds/0/supcon/last\.pt; rerun `dvc repro linear_eval@0`$"),
        (lambda: _save("supcon", epoch=3), r"^models/seeds/0/supcon/last\.pt: at epoch 3, but supcon\.epochs = 6 .*; rerun `dvc repro pretrain_supcon@0`$"),
        (lambda: _save("linear", epoch=1), r"^models/seeds/0/linear/last\.pt: at epoch 1, but linear\.epochs = 2 .*; rerun `dvc repro linear_eval@0`$"),
        (lambda: _save("ce", epoch=4), r"^models/seeds/0/ce/last\.pt: at epoch 4, but ce\.epochs = 6 .*; rerun `dvc repro train_ce@0`$"),
        (lambda: Path("models/seeds/0/ce/last.pt").unlink(), r"^models/seeds/0/ce/last\.pt: no ce checkpoint there; run `dvc repro train_ce@0` first$"),
    ],
    ids=["retrained-encoder", "unfinished-supcon", "unfinished-probe", "unfinished-ce", "no-ce"],
)
def test_models_that_do_not_belong_together_are_one_line_and_nothing_is_written(models, change, message):
    change()
    before = sorted(p.relative_to(models) for p in models.rglob("*"))
    with pytest.raises(UserError, match=message):
        robustness_stage.score(parse_params(RAW), 0)
    assert sorted(p.relative_to(models) for p in models.rglob("*")) == before  # no metrics, plots or mlflow.db


def _stage_cli(name: str, folder: Path, raw: dict, *args: str) -> subprocess.CompletedProcess:
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_the_stage_cli_exits_2_naming_the_probe_to_refit(models):
    _retrain_encoder()
    done = _stage_cli("robustness", models, RAW, "--seed", "0")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "rerun `dvc repro linear_eval@0`" in done.stderr
    assert not (models / "metrics").exists() and not (models / "mlflow.db").exists()


# ---- a released set belongs to data.dataset ----


@pytest.mark.parametrize(
    "dataset, released, allowed",
    [
        ("cifar10", "cifar100-c", "expected 'cifar10-c' (the release of data.dataset cifar10) or null"),
        ("cifar100", "cifar10-c", "expected 'cifar100-c' (the release of data.dataset cifar100) or null"),
        ("imagenet", "cifar10-c", "expected 'imagenet-c'"),
        ("cifar10", "imagenet-c", "expected 'cifar10-c'"),
        ("fashion_mnist", "cifar10-c", "expected null (data.dataset fashion_mnist has no released corrupted set)"),
        ("imagefolder", "imagenet-c", "expected null (data.dataset imagefolder has no released corrupted set)"),
    ],
)
def test_a_release_of_another_dataset_is_a_config_error(dataset, released, allowed):
    with pytest.raises(ConfigError, match=rf"^robustness\.released = '{released}' is not allowed: {re.escape(allowed)}"):
        parse_params({"data": {"dataset": dataset}, "robustness": {"released": released, "released_root": "/data/release"}})


@pytest.mark.parametrize("dataset, released", [("cifar10", "cifar10-c"), ("cifar100", "cifar100-c"), ("imagenet", "imagenet-c"), ("fashion_mnist", None)])
def test_the_release_of_data_dataset_is_accepted(dataset, released):
    assert parse_params({"data": {"dataset": dataset}, "robustness": {"released": released}}).robustness.released == released


def test_the_corrupt_stage_refuses_another_datasets_release_before_reading_anything(tmp_path):
    raw = {"data": {"dataset": "cifar10"}, "robustness": {"released": "cifar100-c", "released_root": str(tmp_path / "CIFAR-100-C")}}
    done = _stage_cli("corrupt", tmp_path, raw)
    assert done.returncode == 2 and done.stderr.startswith("error: robustness.released = 'cifar100-c' is not allowed: expected 'cifar10-c'")
    assert done.stderr.count("\n") == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.fixture
def cifar10(tmp_path, monkeypatch) -> dict:
    """A working directory with a prepared CIFAR-10 (from its real pickles) and its raw params."""
    write_cifar10(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    raw = {"run": {"threads": 1}, "data": {"dataset": "cifar10", "root": str(tmp_path / "raw"), "val_fraction": 0.0}}
    prepare(parse_params(raw))
    return raw


def test_the_release_of_data_dataset_must_be_where_released_root_says(cifar10, tmp_path):
    """A missing release is one line naming its folder, and the store already written is kept."""
    store = Path("data/corrupted/cifar10")
    corrupt(parse_params({**cifar10, "robustness": {"corruptions": ["fog"], "severities": [1], "max_images": 10}}))
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    nowhere = {"released": "cifar10-c", "released_root": str(tmp_path / "nowhere")}
    with pytest.raises(UserError, match=r"nowhere: no such folder; expected CIFAR-10-C as released"):
        corrupt(parse_params({**cifar10, "robustness": nowhere}))
    with pytest.raises(UserError, match=r"^robustness\.released_root = null: robustness\.released = cifar10-c reads the released set in place"):
        corrupt(parse_params({**cifar10, "robustness": {**nowhere, "released_root": None}}))
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before


# ---- mCE over fewer than the 15 common corruptions ----


def _scores(names: list[str], seed: int) -> dict:
    """What corruption.score.score_corrupted returns for one model, with seeded errors."""
    rng = np.random.default_rng(seed)
    cells = {(name, level): {"top1": float(rng.uniform(0.2, 0.8)), "ece": 0.05} for name in names for level in range(1, 6)}
    return {"clean": {"top1": 0.9, "ece": 0.02}, "cells": cells, "images_per_s": 100.0}


def _scored(names: list[str]) -> tuple[dict, CorruptedSet]:
    corrupted = CorruptedSet(names, (1, 2, 3, 4, 5), 10, None, None, "generated")
    return {"supcon": _scores(names, 0), "ce": _scores(names, 1)}, corrupted


def test_an_mce_over_some_common_corruptions_says_which_are_missing(tmp_path, monkeypatch, capsys):
    scores, corrupted = _scored(["gaussian_noise", "fog", "snow"])
    metrics = robustness_stage._report(scores, corrupted)
    missing = [name for name in COMMON_CORRUPTIONS if name not in ("gaussian_noise", "fog", "snow")]
    assert "mCE" in metrics["supcon"] and metrics["mCE_missing_corruptions"] == missing
    assert metrics["mCE_note"].startswith("mCE averages 3 of the 15 common corruptions (missing: shot_noise, impulse_noise, defocus_blur,")

    monkeypatch.chdir(tmp_path)
    robustness_stage._write(NullRun(), {"mlflow_run_id": "", **metrics}, "supcon", 0)
    assert json.loads(Path("metrics/seeds/0/robustness.json").read_text())["mCE_missing_corruptions"] == missing
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "supcon/mCE" in printed and "mCE averages 3 of the 15 common corruptions (missing: shot_noise" in printed


def test_an_mce_over_all_common_corruptions_has_no_note(capsys):
    metrics = robustness_stage._report(*_scored(list(COMMON_CORRUPTIONS)))
    assert "mCE" in metrics["supcon"] and "mCE_note" not in metrics and "mCE_missing_corruptions" not in metrics


def test_without_all_severities_the_note_says_so_and_names_no_corruptions():
    scores, _ = _scored(["fog"])
    for model in scores.values():
        model["cells"] = {key: value for key, value in model["cells"].items() if key[1] in (1, 3)}
    metrics = robustness_stage._report(scores, CorruptedSet(["fog"], (1, 3), 10, None, None, "generated"))
    assert metrics["mCE_note"] == "CE and mCE need all five severities; only some were scored" and "mCE_missing_corruptions" not in metrics
