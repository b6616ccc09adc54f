"""`python -m pipeline.study`: the study preset runs whole, in miniature, from a fresh clone.

The study's preset (configs/study_fashion_mnist.yaml) with a second overlay that changes only sizes
(as tests/test_presets.py allows, plus the sweep's trial count), on a Fashion-MNIST fixture in
its IDX format: three training seeds, the temperature sweep on Ray and its confirmation, every
stage, and the study folder it writes. Costs about 3 to 4 minutes on 2 cores (about 30 processes
of a few seconds each, and a Ray start).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures_data import write_fashion_mnist
from test_presets import allowed, env, leaf_keys, new_project, report_claims

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PRESET = "configs/study_fashion_mnist.yaml"
SEEDS = [0, 1, 2]
STEPS = ["preset", "overlay", "prepare", "sweep", "repro", "confirm", "report"]


def miniature(raw: Path) -> dict:
    """Sizes only: one epoch, batch 16, 8 px, 2 steps per reduced cell and only its 10% fraction
    (the 1% one runs the same code), long-tail factor 10, 10 images per corruption cell, 2 sweep
    trials of 1 epoch."""
    train = {"epochs": 1, "batch_size": 16, "optimizer": {"warmup_epochs": 1}}
    return {
        "run": {"device": "cpu", "threads": 1},
        "data": {"root": str(raw), "image_size": 8},
        "supcon": train, "ce": train, "linear": {"epochs": 1, "batch_size": 16},
        "reduced": {"steps": 2, "min_epochs": 1, "fractions": [0.1]},
        # the fixture's classes hold 13 train images: factor 100 would empty the tail, 10 keeps it one
        "long_tail": {"factors": [10]},
        "robustness": {"max_images": 10},
        "sweep": {"num_samples": 2, "epochs": 1},
    }  # fmt: skip


def study(repo: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.study", *args], cwd=repo, env=env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def miniature_study(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("study")
    write_fashion_mnist(root / "raw", train_per_class=30, test_per_class=4)
    repo = new_project(root)
    (root / "miniature.yaml").write_text(yaml.safe_dump(miniature(root / "raw")))
    done = study(repo, PRESET, "--overlay", str(root / "miniature.yaml"), "--workdir", str(root / "clone"))
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    return {"repo": repo, "root": root, "out": repo / "reports/study", "done": done}


def test_the_overlay_changes_only_sizes(tmp_path):
    touched = sorted(leaf_keys(miniature(tmp_path)))
    assert [key for key in touched if not (allowed(key) or key == "sweep.num_samples")] == []
    listed = yaml.safe_load((REPO / PRESET).read_text())["reduced"]["fractions"]
    assert set(miniature(tmp_path)["reduced"]["fractions"]) <= set(listed)


def test_the_study_writes_its_report_and_every_input_from_the_committed_head(miniature_study):
    out, repo = miniature_study["out"], miniature_study["repo"]
    record = json.loads((out / "study.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    assert record["commit"] == head and record["preset"] == PRESET and record["confirm_k"] == 1
    assert list(record["step_seconds"]) == STEPS and record["total_seconds"] > 0
    assert not (miniature_study["root"] / "clone").exists()  # removed once the study is in place

    params = yaml.safe_load((out / "params.yaml").read_text())
    preset = yaml.safe_load((REPO / PRESET).read_text())
    assert params["run"]["seeds"] == SEEDS and params["supcon"]["augmentation"]["crop_scale"] == preset["supcon"]["augmentation"]["crop_scale"]  # the preset applied, then only sizes
    compare = json.loads((out / "metrics/compare.json").read_text())
    assert sorted(compare["seeds"]) == SEEDS, compare
    for seed in SEEDS:
        for name in ("pretrain_supcon", "train_ce", "linear_eval", "robustness"):
            assert (out / f"metrics/seeds/{seed}/{name}.json").is_file(), (seed, name)
        for method in ("supcon", "ce"):
            assert (out / f"metrics/reduced/{method}-0.1-seed{seed}.json").is_file()
    confirmation = json.loads((out / "sweeps/temperature/summary.json").read_text())["confirmation"]
    assert len(confirmation["val_top1"]) == 2 and all(sorted(map(int, by_seed)) == SEEDS for by_seed in confirmation["val_top1"].values())
    assert "0.1" in confirmation["val_top1"]
    for seed in SEEDS:  # at 0.1 the confirmation took the main comparison's runs (DVC: up to date)
        probe = json.loads((out / f"metrics/seeds/{seed}/linear_eval.json").read_text())
        assert confirmation["val_top1"]["0.1"][str(seed)] == probe["val/top1_best"]

    summary = (out / "summary.md").read_text()
    claims = report_claims(out / "summary.md")
    assert len(claims) == 3 + 1 + 1 + 2, claims  # top-1, the 10% cell, robustness, temperature, ECE, long tail at 10, the queue (no cell listed)
    assert not any("needed" in row for row in claims), claims  # three seed pairs: no claim lacks its interval
    for link in [line.split("](", 1)[1].rstrip(")") for line in summary.splitlines() if line.startswith("![")]:
        assert (out / link).is_file() and (out / link).stat().st_size > 0, link  # the figures travel with the summary


# ---- the second study (configs/study_small_batch_long_tail.yaml): --only, no sweep ----

SECOND = "configs/study_small_batch_long_tail.yaml"
SECOND_ONLY = ["linear_eval", "train_ce", "long_tail", "small_batch"]


def second_miniature(raw: Path) -> dict:
    """Sizes only: one epoch, batch 16 (the small cells 8), 8 px, 2 steps per long-tail cell, only
    factor 10 (the study's 5% of the fixture keeps 10 images a class: factor 100 would empty the tail)."""
    train = {"epochs": 1, "batch_size": 16, "optimizer": {"warmup_epochs": 1}}
    return {
        "run": {"device": "cpu", "threads": 1},
        "data": {"root": str(raw), "image_size": 8},
        "supcon": train, "ce": train, "linear": {"epochs": 1, "batch_size": 16},
        "reduced": {"steps": 2, "min_epochs": 1},
        "long_tail": {"factors": [10]},
        "small_batch": {"batch_size": 8},
    }  # fmt: skip


def test_the_second_studys_overlay_changes_only_sizes(tmp_path):
    assert [key for key in sorted(leaf_keys(second_miniature(tmp_path))) if not allowed(key)] == []


def test_the_second_study_runs_its_stages_and_judges_both_new_claims(tmp_path):
    """About 2 minutes on 2 cores: 3 seeds x (main comparison, 2 long-tail cells, 4 small-batch cells)."""
    write_fashion_mnist(tmp_path / "raw", train_per_class=240, test_per_class=4)
    repo = new_project(tmp_path)
    # The default run's committed results: a stage the study leaves out must not report them.
    for relative in ("metrics/reduced/ce-0.01-seed0.json", "metrics/seeds/0/robustness.json", "plots/reduced/ce-0.01-seed0.csv"):
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text("{}\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "the default's results"], cwd=repo, check=True, env=env())
    (tmp_path / "miniature.yaml").write_text(yaml.safe_dump(second_miniature(tmp_path / "raw")))
    out = "reports/study_small_batch_long_tail"

    done = study(repo, SECOND, "--only", *SECOND_ONLY, "--overlay", str(tmp_path / "miniature.yaml"), "--workdir", str(tmp_path / "clone"), "--out", out)

    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    record = json.loads((repo / out / "study.json").read_text())
    assert list(record["step_seconds"]) == ["preset", "overlay", "prepare", "repro", "report"] and record["only"] == SECOND_ONLY
    assert record["commands"]["repro"] == "dvc repro " + " ".join(SECOND_ONLY)
    assert not (repo / out / "metrics/seeds/0/robustness.json").exists() and not (repo / out / "metrics/reduced").exists()  # not asked for
    assert not (repo / out / "plots/reduced").exists()
    cells = sorted(path.name for path in (repo / out / "metrics/small_batch").glob("*.json"))
    assert cells == sorted(f"b8-q{q}-{e}-seed{s}.json" for q in (0, 2048) for e in ("steps", "epochs") for s in SEEDS)
    claims = report_claims(repo / out / "summary.md")
    new = [row for row in claims if "long tail" in row or "momentum-key queue" in row]
    assert len(new) == 1 + 2, new  # factor 10; the queue at equal steps and at equal epochs
    assert not any("needed" in row or "lists none" in row for row in new), new  # three seed pairs each
    summary = (repo / out / "summary.md").read_text()
    assert "| equal epochs | batch 8 + 2,048-key queue |" in summary
    assert "## Accuracy against labelled fraction\n\nnot run yet: `dvc repro reduced_data`" in summary  # not the committed cell's numbers
    assert "SupCon beats CE with reduced labelled data" in claims[1] and "not run yet" in claims[1]


def test_only_a_stage_dvc_yaml_lacks_is_one_line(tmp_path):
    repo = committed_project(tmp_path)
    done = study(repo, SECOND, "--only", "small_batches", timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--only small_batches: not a stage of dvc.yaml" in done.stderr, done.stderr


def committed_project(tmp_path: Path) -> Path:
    repo = new_project(tmp_path)
    (repo / "reports/study").mkdir(parents=True)
    (repo / "reports/study/summary.md").write_text("the previous study\n")
    return repo


def test_uncommitted_changes_are_refused_in_one_line(tmp_path):
    repo = committed_project(tmp_path)
    with open(repo / "params.yaml", "a") as params:
        params.write("# an edit\n")
    done = study(repo, PRESET, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "tracked files differ from HEAD" in done.stderr, done.stderr
    done = study(repo.parent, "configs/none.yaml", timeout=60)  # not a git checkout
    assert done.returncode != 0


def test_a_failed_step_keeps_the_previous_study_and_the_clone(tmp_path):
    repo = committed_project(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"supcon": {"epochs": 0}}))
    done = study(repo, PRESET, "--overlay", str(tmp_path / "bad.yaml"), "--workdir", str(tmp_path / "clone"), timeout=120)
    assert done.returncode == 2 and "step overlay failed" in done.stderr and str(tmp_path / "clone") in done.stderr, done.stderr
    assert (repo / "reports/study/summary.md").read_text() == "the previous study\n"
    assert (tmp_path / "clone/params.yaml").is_file()
    done = study(repo, "configs/none.yaml", timeout=60)
    assert done.returncode == 2 and "not a committed file" in done.stderr, done.stderr


def test_steps_import_the_clone_and_log_to_the_checkouts_mlflow_store(tmp_path, monkeypatch):
    from pipeline.study import step_environment

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tracking": {"uri": None}}))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = step_environment(tmp_path, tmp_path / "clone")
    assert env["PYTHONPATH"].split(":") == [str(tmp_path / "clone"), "/elsewhere"]  # the clone's code first, also in Ray's workers
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"  # the clone is deleted; its runs are not
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tracking": {"uri": "http://127.0.0.1:5000"}}))
    assert "MLFLOW_TRACKING_URI" not in step_environment(tmp_path, tmp_path / "clone")  # params' server is used as it is
