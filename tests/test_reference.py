"""Fresh results against the committed reference: the tolerance depends on the machine kind."""

import json
import subprocess
import sys
from pathlib import Path

from pipeline.reference import CORRUPTED_OTHER_MACHINE_TOLERANCE, OTHER_MACHINE_TOLERANCE, SAME_MACHINE_TOLERANCE, compare_results, format_table

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


def test_corrupted_accuracy_gets_its_own_wider_tolerance_on_another_machine():
    # The measured case: SupCon's corrupted top-1 0.6185 on an EPYC, 0.6004 on a Xeon (-1.81 points).
    reference = {"seeds/0/robustness": {"supcon/corrupted_top1": 0.6185, "ce/corrupted_top1": 0.6024, "environment": {"machine": "epyc"}}}
    fresh = {"seeds/0/robustness": {"supcon/corrupted_top1": 0.6004, "ce/corrupted_top1": 0.6024 + 0.041, "environment": {"machine": "xeon"}}}
    rows = {row.metric: row for row in compare_results(reference, fresh)}
    assert rows["supcon/corrupted_top1"].ok and rows["supcon/corrupted_top1"].tolerance == CORRUPTED_OTHER_MACHINE_TOLERANCE == 0.04
    assert not rows["ce/corrupted_top1"].ok  # 4.1 points is outside
    same = {"seeds/0/robustness": {**fresh["seeds/0/robustness"], "environment": {"machine": "epyc"}}}
    assert all(row.tolerance == SAME_MACHINE_TOLERANCE and not row.ok for row in compare_results(reference, same))
    # A clean accuracy on another machine keeps the 1.5-point tolerance.
    (clean,) = compare_results({"seeds/0/train_ce": _metrics(0.85, "epyc")}, {"seeds/0/train_ce": _metrics(0.85 + 0.016, "xeon")})
    assert clean.tolerance == OTHER_MACHINE_TOLERANCE == 0.015 and not clean.ok


def test_the_table_keeps_its_columns_for_long_stage_names():
    rows = compare_results({"seeds/0/pretrain_supcon": {"val/knn_top1": 0.8758}}, {"seeds/0/pretrain_supcon": {"val/knn_top1": 0.8770}})
    header, line = format_table(rows).splitlines()
    assert line.split() == ["seeds/0/pretrain_supcon", "val/knn_top1", "0.8758", "0.8770", "+0.0012", "0.015", "ok"]
    assert header.index("metric") == line.index("val/knn_top1")


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
