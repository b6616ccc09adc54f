"""Fresh results against the committed reference: the tolerance depends on the machine kind."""

import json
import subprocess
import sys
from pathlib import Path

from pipeline.reference import OTHER_MACHINE_TOLERANCE, SAME_MACHINE_TOLERANCE, compare_results

REPO = Path(__file__).resolve().parents[1]


def _metrics(top1: float, machine: str) -> dict:
    return {"test/top1": top1, "environment": {"machine": machine}}


def test_same_machine_is_held_to_the_tight_tolerance_another_to_the_wide_one():
    reference = {"seeds/0/train_ce": _metrics(0.85, "m1")}
    drift = SAME_MACHINE_TOLERANCE + 0.001
    (same,) = compare_results(reference, {"seeds/0/train_ce": _metrics(0.85 + drift, "m1")})
    (other,) = compare_results(reference, {"seeds/0/train_ce": _metrics(0.85 + drift, "m2")})
    assert not same.ok and same.tolerance == SAME_MACHINE_TOLERANCE
    assert other.ok and other.tolerance == OTHER_MACHINE_TOLERANCE
    (far,) = compare_results(reference, {"seeds/0/train_ce": _metrics(0.85 - OTHER_MACHINE_TOLERANCE - 0.001, "m2")})
    assert not far.ok


def test_metrics_missing_on_either_side_are_not_compared():
    assert compare_results({"train_ce": {"test/top1": 0.8}}, {"linear_eval": {"test/top1": 0.8}}) == []


def test_cli_compares_the_working_tree_with_a_commit(tmp_path):
    def commit_metrics(values: dict[str, float]) -> None:
        for output, top1 in values.items():
            (tmp_path / "metrics" / f"{output}.json").parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "metrics" / f"{output}.json").write_text(json.dumps(_metrics(top1, "m")))

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit_metrics({"seeds/0/pretrain_supcon": 0.5, "seeds/0/train_ce": 0.85, "seeds/1/train_ce": 0.84, "seeds/0/linear_eval": 0.86, "compare": 0.01})
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "reference"], cwd=tmp_path, check=True)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    check = [sys.executable, "-m", "stages.check_reference"]

    same = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert same.returncode == 0 and "3 of 3 within tolerance" in same.stdout
    commit_metrics({"seeds/1/train_ce": 0.80})
    moved = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert moved.returncode == 1 and "OUTSIDE" in moved.stdout
