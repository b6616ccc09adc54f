"""The main comparison's runs as the confirmation's runs at params.yaml's own temperature.

A confirmation run of T = supcon.temperature (0.1 in every shipped config) with training seed s
trains what `pretrain_supcon@s` then `linear_eval@s` train: the same supcon and linear sections,
seed, data and training code (confirm_train.py calls the stages' pieces), and is scored the same
way (the probe's best val top-1). When DVC reports both stages up to date (their outputs were made
by this code, these params and this prepared data), their result is taken instead of training
the pair again: a K = 1 confirmation then trains a third less, and its T = 0.1 runs are the main
comparison's own, paired with it by seed. No DVC, a stale or missing stage, or metrics without a
val top-1 (no val split) mean the run is trained as before.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages import paths


@dataclass(frozen=True)
class MainStageRun:
    val_top1: float
    best_epoch: int
    seconds: float
    """Training seconds the two stages recorded (pretraining plus probe)."""
    mlflow_run_id: str
    """linear_eval@<seed>'s MLflow run."""


def stages_of(seed: int) -> list[str]:
    return [f"pretrain_supcon@{seed}", f"linear_eval@{seed}"]


def up_to_date(project: Path, stages: list[str]) -> bool:
    """`dvc status` says nothing changed for `stages` (False when DVC cannot tell: no project, an error)."""
    try:
        done = subprocess.run(["dvc", "status", "--json", *stages], cwd=project, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    try:
        return done.returncode == 0 and json.loads(done.stdout or "null") == {}
    except json.JSONDecodeError:
        return False


def main_stage_run(project: Path | None, seed: int) -> MainStageRun | None:
    """linear_eval@<seed>'s result when it and its encoder's stage are up to date in DVC, else None."""
    if project is None:
        return None
    folder = project / paths.SEEDS_METRICS / str(seed)
    try:
        probe = json.loads((folder / "linear_eval.json").read_text())
        pretrain = json.loads((folder / "pretrain_supcon.json").read_text())
        run = MainStageRun(float(probe["val/top1_best"]), int(probe["best_epoch"]), float(pretrain["train/time_s"]) + float(probe["train/time_s"]), str(probe["mlflow_run_id"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return run if up_to_date(project, stages_of(seed)) else None
