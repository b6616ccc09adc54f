"""Stage smoke tests: the real CLIs (`python -m stages.<name>`, `dvc repro`, torchrun) on a tiny config.

One module-scoped project runs the whole pipeline through `dvc repro` once (a width-4 ResNet on
a 250-image Fashion-MNIST written in the real IDX format); the other tests copy its prepared
data and run single stages in their own folders: SimCLR, `kill -9` and resume, two processes
under torchrun, and a diverging config.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures_data import write_fashion_mnist
from stages.preset import merged_params

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6  # SupCon and CE (the same budget); the linear probe trains 2
TIMING = ("train/images_per_s", "train/epoch_time_s", "train/time_s")
TRAINING_STAGES = {"pretrain_supcon": "supcon", "train_ce": "ce", "linear_eval": "supcon"}


def tiny_params(raw_root: Path, **sections: dict) -> dict:
    """The project's params.yaml made tiny (seconds per stage); `sections` are merged on top."""
    tiny = {
        "run": {"seed": 0, "device": "cpu", "threads": 1, "checkpoint_every_steps": 1},  # every epoch: interrupt tests
        "data": {"root": str(raw_root), "val_fraction": 0.2, "train_fraction": 1.0},
        "model": {"width": 4, "depth": 2, "blocks": 1, "head": "mlp", "feat_dim": 8},
        "supcon": {"epochs": EPOCHS, "batch_size": 16, "knn_every": 1, "knn_k": 5,
                   "optimizer": {"lr": 0.05, "scale_lr": False, "warmup_epochs": 1}},
        "ce": {"epochs": EPOCHS, "batch_size": 16, "optimizer": {"lr": 0.05, "scale_lr": False}},
        "linear": {"epochs": 2, "batch_size": 16, "augmentation": {"policy": "none"}, "optimizer": {"lr": 0.5}},
        "reduced": {"fractions": [0.5], "steps": 12, "min_epochs": 1},
        "long_tail": {"factors": [4]},  # 16 train images a class: down to 4 in the tail
        "robustness": {"corruptions": ["gaussian_noise", "glass_blur", "fog"], "max_images": 20, "batch_size": 8},
    }  # fmt: skip
    project = yaml.safe_load((REPO / "params.yaml").read_text())
    return merged_params(merged_params(project, tiny), sections)


def env() -> dict[str, str]:
    """The stages' environment: this venv first on PATH, one thread, the default MLflow store."""
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environment.update(
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
    )  # fmt: skip
    return environment


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
    return done


def stage(name: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", f"stages.{name}"], cwd, check=check)


SEEDED = ("pretrain_supcon", "train_ce", "linear_eval", "robustness")
"""Stages of the main comparison: one run per training seed (tiny params: run.seeds [0])."""


def metrics(folder: Path, stage_name: str, seed: int = 0) -> dict:
    """metrics/seeds/<seed>/<stage>.json for the main comparison, metrics/<stage_name>.json otherwise."""
    name = f"seeds/{seed}/{stage_name}" if stage_name in SEEDED else stage_name
    return json.loads((folder / "metrics" / f"{name}.json").read_text())


def mlflow_client(folder: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder.resolve()}/mlflow.db")


def all_runs(folder: Path) -> list:
    client = mlflow_client(folder)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments)


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def rescored_ce_top1(repo: Path) -> float:
    """test top-1 of the CE model selected on val (models/ce/best.pt, spec from last.pt), on the prepared test split."""
    from pipeline.data import load_prepared
    from pipeline.evaluate import topk_accuracy
    from pipeline.models import build_ce_model
    from pipeline.preprocess import eval_preprocess, predict

    state = torch.load(repo / "models/seeds/0/ce/last.pt", weights_only=True)
    model = build_ce_model(**{k: v for k, v in state["spec"].items() if k != "kind"})
    model.load_state_dict(torch.load(repo / "models/seeds/0/ce/best.pt", weights_only=True)["model"])
    data = load_prepared(repo / "data/prepared/fashion_mnist")
    preprocess = eval_preprocess(data.image_size, data.channels, data.mean, data.std)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage ran (run.threads 1): the same kernels, the same logits
    try:
        logits = predict(model.eval(), data.test.images, preprocess=preprocess, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    return topk_accuracy(logits, data.test.labels)


def workdir(project: dict, name: str, **sections: dict) -> Path:
    """A fresh folder holding the project's prepared data and a tiny params.yaml."""
    folder = project["root"] / name
    shutil.copytree(project["repo"] / "data" / "prepared", folder / "data" / "prepared")
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(project["raw"], **sections)))
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A git + DVC repository with the project's code and a tiny params.yaml, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("stages")
    raw = root / "raw"
    write_fashion_mnist(raw, train_per_class=20, test_per_class=5)
    repo = root / "repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo)
    for package in ("stages", "pipeline"):
        shutil.copytree(REPO / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(raw)))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny project"], repo)
    started = time.time()
    first = run(["dvc", "repro"], repo, timeout=600)
    return {"root": root, "raw": raw, "repo": repo, "repro": first, "repro_s": time.time() - started}


def test_dvc_repro_runs_every_stage_and_writes_the_declared_outputs(project):
    repo, output = project["repo"], project["repro"].stdout
    for name in ("prepare", "pretrain_supcon@0", "train_ce@0", "linear_eval@0", "robustness@0", "compare", "report"):
        assert f"Running stage '{name}'" in output
    summary = (repo / "reports/summary.md").read_text()
    # One seed: every claim the report can test is "not enough evidence", and it says so.
    assert "not enough evidence" in summary and f"{metrics(repo, 'train_ce')['test/top1'] * 100:.2f}" in summary
    manifest = json.loads((repo / "data/prepared/fashion_mnist/manifest.json").read_text())
    assert manifest["split_sizes"] == {"train": 160, "val": 40, "test": 50}

    pretrain = metrics(repo, "pretrain_supcon")
    assert pretrain["method"] == "supcon" and pretrain["epochs"] == EPOCHS and pretrain["train_images"] == 160
    for name, epochs in (("train_ce", EPOCHS), ("linear_eval", 2)):
        scored = metrics(repo, name)
        assert "test/ece" in scored and "val/top1" in scored and scored["epochs"] == epochs
    # The reported test top-1 is what the saved model scores on the test split, recomputed here.
    assert metrics(repo, "train_ce")["test/top1"] == rescored_ce_top1(repo)
    assert metrics(repo, "linear_eval")["best_epoch"] in (1, 2)
    compare = metrics(repo, "compare")
    assert compare["test/top1/supcon/mean"] == metrics(repo, "linear_eval")["test/top1"] and compare["test/top1/supcon/n"] == 1
    assert compare["test/top1/ce/per_seed"] == {"0": metrics(repo, "train_ce")["test/top1"]}
    assert "supcon (linear eval) vs cross-entropy" in output
    # A log, not a terminal: one line per epoch, no progress-bar refreshes.
    assert "\r" not in output + project["repro"].stderr
    assert f"supcon epoch {EPOCHS}/{EPOCHS}: train/loss" in output and "ce epoch 1/" in output

    curves = {
        "pretrain_supcon": (EPOCHS, "val_knn_top1"),
        "train_ce": (EPOCHS, "val_top1"),
        "linear_eval": (2, "val_top1"),
    }
    for name, (epochs, monitored) in curves.items():
        rows = list(csv.DictReader((repo / "plots/seeds/0" / f"{name}.csv").open()))
        assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
        assert all(float(row["train_loss"]) > 0 and row[monitored] != "" for row in rows), rows
    for method, epochs in (("supcon", EPOCHS), ("ce", EPOCHS), ("linear", 2)):
        state = torch.load(repo / "models/seeds/0" / method / "last.pt", weights_only=False)
        assert state["epoch"] == epochs and len(state["history"]) == epochs
    assert torch.load(repo / "models/seeds/0/linear/best.pt", weights_only=False)["epoch"] == metrics(repo, "linear_eval")["best_epoch"]


def test_each_training_stage_is_one_mlflow_run_with_tags_params_curves_and_artifacts(project):
    repo = project["repo"]
    client = mlflow_client(repo)
    runs = {r.data.tags["stage"]: r for r in all_runs(repo)}
    assert sorted(runs) == sorted([*TRAINING_STAGES, "robustness", "reduced_data", "long_tail", "report"])
    commit = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    for name, method in TRAINING_STAGES.items():
        logged = runs[name]
        assert logged.info.status == "FINISHED"
        assert logged.info.run_id == metrics(repo, name)["mlflow_run_id"]
        tags = logged.data.tags
        assert (tags["method"], tags["dataset"], tags["encoder"], tags["seed"]) == (method, "fashion_mnist", "small_resnet", "0")
        assert tags["git_commit"].split("-")[0] == commit
        params = logged.data.params
        assert params["model.width"] == "4" and params["supcon.temperature"] == "0.1" and params["data.root"] == str(project["raw"])
        history = client.get_metric_history(logged.info.run_id, "train/loss")
        epochs = 2 if name == "linear_eval" else EPOCHS
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))  # one point per epoch, no summary at 0
        artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
        assert {"metrics", "curves"} <= artifacts
        assert [a.path for a in client.list_artifacts(logged.info.run_id, "metrics")] == [f"metrics/{name}.json"]  # logged by file name
    assert "val/knn_top1" in runs["pretrain_supcon"].data.metrics
    assert runs["train_ce"].data.metrics["test/top1"] == metrics(repo, "train_ce")["test/top1"]
    for name in ("pretrain_supcon", "train_ce"):
        assert [a.path for a in client.list_artifacts(runs[name].info.run_id, "checkpoint")] == ["checkpoint/last.pt"]
    assert any(a.path.startswith("confusion/") for a in client.list_artifacts(runs["train_ce"].info.run_id, "confusion"))


def test_second_dvc_repro_has_nothing_to_do(project):
    repo = project["repo"]
    outputs = sorted((repo / "metrics").rglob("*.json")) + [repo / "models/seeds/0/supcon/last.pt", repo / "models/seeds/0/ce/last.pt"]
    before = {path: path.stat().st_mtime_ns for path in outputs}
    runs_before = len(all_runs(repo))

    again = run(["dvc", "repro"], repo)

    assert "Data and pipelines are up to date." in again.stdout, again.stdout
    assert "Running stage" not in again.stdout
    assert {path: path.stat().st_mtime_ns for path in outputs} == before
    assert len(all_runs(repo)) == runs_before
    status = run(["dvc", "status"], repo)
    assert "up to date" in status.stdout, status.stdout


def interrupt(folder: Path, stage_name: str, method: str, signum: int) -> tuple[dict, int, str]:
    """Start a stage, send `signum` once its checkpoint records epoch >= 2; returns the
    checkpoint then on disk, the exit code and stderr."""
    checkpoint_path = folder / "models/seeds/0" / method / "last.pt"
    with (folder / "stderr.txt").open("w") as stderr:
        # A shell's background job (`bash .ci/run &`) ignores SIGINT, and children inherit that:
        # the stage is started with the default action back, as a terminal's Ctrl-C would find it.
        child = subprocess.Popen(
            [sys.executable, "-m", f"stages.{stage_name}"], cwd=folder, env=env(), stdout=subprocess.DEVNULL, stderr=stderr,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        seen, deadline = None, time.time() + 240
        try:
            while True:
                assert child.poll() is None, "the stage finished before it could be interrupted"
                assert time.time() < deadline, "no checkpoint appeared"
                mtime = checkpoint_path.stat().st_mtime_ns if checkpoint_path.exists() else None
                if mtime is not None and mtime != seen:
                    seen = mtime
                    # Paused while the checkpoint is read: a tiny epoch takes milliseconds, and the
                    # stage must not run on to its end between the read and the signal.
                    child.send_signal(signal.SIGSTOP)
                    due = torch.load(checkpoint_path, weights_only=False)["epoch"] >= 2  # written atomically: always whole
                    if due:
                        child.send_signal(signum)
                    child.send_signal(signal.SIGCONT)
                    if due:
                        break
                time.sleep(0.02)
            returncode = child.wait(timeout=120)
        finally:
            child.kill()
            child.wait()
    state = torch.load(checkpoint_path, weights_only=False)
    assert 2 <= state["epoch"] < EPOCHS, "interrupted too late to test resuming"
    return state, returncode, (folder / "stderr.txt").read_text()


def test_kill_9_then_rerun_gives_the_uninterrupted_result(project):
    folder = workdir(project, "killed")
    interrupted, returncode, _ = interrupt(folder, "pretrain_supcon", "supcon", signal.SIGKILL)
    assert returncode == -signal.SIGKILL

    rerun = stage("pretrain_supcon", folder)

    assert f"resuming after epoch {interrupted['epoch']}" in rerun.stdout
    resumed, reference = metrics(folder, "pretrain_supcon"), metrics(project["repo"], "pretrain_supcon")
    assert resumed["train/loss"] == reference["train/loss"]
    assert resumed["val/knn_top1"] == reference["val/knn_top1"]
    assert resumed["epochs"] == reference["epochs"] == EPOCHS
    final = torch.load(folder / "models/seeds/0/supcon/last.pt", weights_only=False)
    expected = torch.load(project["repo"] / "models/seeds/0/supcon/last.pt", weights_only=False)
    assert without_timing(final["history"]) == without_timing(expected["history"])
    for name, tensor in expected["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    # One stage run stays one MLflow run across the restart, with every epoch's curve point.
    (logged,) = all_runs(folder)
    assert logged.info.run_id == interrupted["mlflow_run_id"] == resumed["mlflow_run_id"]
    assert logged.info.status == "FINISHED"
    steps = {m.step for m in mlflow_client(folder).get_metric_history(logged.info.run_id, "val/knn_top1")}
    assert set(range(1, EPOCHS + 1)) <= steps


def test_ctrl_c_exits_130_and_the_rerun_gives_the_uninterrupted_result(project):
    folder = workdir(project, "interrupted")
    interrupted, returncode, stderr = interrupt(folder, "train_ce", "ce", signal.SIGINT)
    assert returncode == 130
    assert "Traceback" not in stderr
    assert "interrupted; rerun `dvc repro` to resume from the last checkpoint" in stderr
    (logged,) = all_runs(folder)
    assert logged.info.run_id == interrupted["mlflow_run_id"] and logged.info.status != "RUNNING"

    rerun = stage("train_ce", folder)

    assert f"resuming after epoch {interrupted['epoch']}" in rerun.stdout
    resumed, reference = metrics(folder, "train_ce"), metrics(project["repo"], "train_ce")
    for key in ("train/loss", "val/top1", "test/top1", "test/ece"):
        assert resumed[key] == reference[key], key
    (logged,) = all_runs(folder)
    assert logged.info.run_id == resumed["mlflow_run_id"] == interrupted["mlflow_run_id"]
    assert logged.info.status == "FINISHED"


def test_simclr_pretraining_and_its_linear_evaluation(project):
    folder = workdir(project, "simclr", supcon={"method": "simclr", "epochs": 2})

    stage("pretrain_supcon", folder)
    stage("linear_eval", folder)

    pretrain, linear = metrics(folder, "pretrain_supcon"), metrics(folder, "linear_eval")
    assert pretrain["method"] == linear["method"] == "simclr"
    assert torch.load(folder / "models/seeds/0/supcon/last.pt", weights_only=True)["config"]["supcon"]["method"] == "simclr"
    assert "test/top1" in linear
    runs = all_runs(folder)
    assert sorted(r.data.tags["stage"] for r in runs) == ["linear_eval", "pretrain_supcon"]
    assert {r.data.tags["method"] for r in runs} == {"simclr"}
    assert {r.data.params["supcon.method"] for r in runs} == {"simclr"}


def test_torchrun_with_two_processes_writes_one_checkpoint_one_metrics_file_one_run(project):
    folder = workdir(project, "ddp", supcon={"epochs": 2})

    done = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "stages.pretrain_supcon"], folder)

    assert sorted(p.name for p in (folder / "models/seeds/0/supcon").iterdir()) == ["last.pt"]
    assert sorted(p.relative_to(folder).as_posix() for p in (folder / "metrics").rglob("*.json")) == ["metrics/seeds/0/pretrain_supcon.json"]
    state = torch.load(folder / "models/seeds/0/supcon/last.pt", weights_only=False)
    assert state["epoch"] == 2 and state["config"]["world_size"] == 2
    result = metrics(folder, "pretrain_supcon")
    assert result["epochs"] == 2 and result["train/loss"] > 0 and 0 <= result["val/knn_top1"] <= 1
    (logged,) = all_runs(folder)
    assert logged.info.status == "FINISHED" and logged.info.run_id == result["mlflow_run_id"]
    losses = mlflow_client(folder).get_metric_history(logged.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == [1, 2]  # logged by rank zero only
    assert done.stdout.count("pretrain_supcon: method supcon") == 1


def test_an_image_tree_read_from_its_files_on_the_paper_protocol(tmp_path):
    """A JPEG ImageFolder with data.storage files and no val split (val_fraction 0, as the presets
    run): every stage through the CLI, SupCon under torchrun with synchronised BatchNorm."""
    from fixtures_data import write_image_tree

    folder = tmp_path
    tree = folder / "raw"
    write_image_tree(tree, {"train": {"a": 12, "b": 12, "c": 12}, "test": {"a": 4, "b": 4, "c": 4}}, sizes=((48, 36), (30, 60)), fmt="JPEG")
    params = tiny_params(
        tree, data={"dataset": "imagefolder", "root": str(tree), "image_size": 16, "storage": "files", "val_fraction": 0.0, "loader_workers": 1},
        model={"sync_batchnorm": True}, supcon={"epochs": 2, "batch_size": 8}, ce={"epochs": 2, "batch_size": 8},
        linear={"augmentation": {"policy": "basic", "crop_scale": [0.5, 1.0]}, "batch_size": 8},
    )  # fmt: skip
    (folder / "params.yaml").write_text(yaml.safe_dump(params))

    prepared = stage("prepare", folder)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "stages.pretrain_supcon"]
    pretrain = run(torchrun, folder)
    for name in ("linear_eval", "train_ce", "corrupt"):  # corrupt: its test images are eval views of the files
        stage(name, folder)

    assert "(file index (images read while training))" in prepared.stdout
    assert not list((folder / "data/prepared/imagefolder").glob("*_images.npy"))
    supcon = metrics(folder, "pretrain_supcon")
    assert 0 <= supcon["train/knn_top1_loo"] <= 1 and "val/knn_top1" not in supcon
    assert pretrain.stdout.count("the kNN monitor reports train/knn_top1_loo") == 1  # rank zero says what it measures
    assert torch.load(folder / "models/seeds/0/supcon/last.pt", weights_only=False)["config"]["world_size"] == 2
    for name in ("linear_eval", "train_ce"):
        result = metrics(folder, name)
        assert "best_epoch" not in result and result["epochs"] == 2, result  # the last epoch is the model
        assert 0 <= result["test/top1"] <= 1 and result["train_images"] == 36
    clean = np.load(folder / "data/corrupted/imagefolder/clean.npy")
    assert clean.shape == (12, 3, 16, 16) and clean.dtype == np.uint8


def test_diverging_run_exits_2_with_one_line_naming_epoch_and_step(project):
    folder = workdir(project, "diverging", supcon={"optimizer": {"lr": 1.0e6, "scale_lr": False, "warmup_epochs": 0}})

    done = stage("pretrain_supcon", folder, check=False)

    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    # What a terminal shows: the text after the last carriage return of each line.
    visible = [line.split("\r")[-1] for line in done.stderr.split("\n")]
    errors = [line for line in visible if "error" in line.lower()]
    assert len(errors) == 1, done.stderr[-2000:]
    assert re.fullmatch(r"error: supcon: loss became NaN/inf at epoch 1, step \d+ of 10; no checkpoint was written\. .+", errors[0])
    assert not (folder / "metrics").exists()
    (logged,) = all_runs(folder)
    assert logged.info.status == "FAILED"


def write_study(folder: Path) -> Path:
    """A reports/study/ as pipeline.study writes it, with hand-picked per-seed values."""
    top1 = {"supcon": {"0": 0.89, "1": 0.90, "2": 0.91}, "ce": {"0": 0.88, "1": 0.88, "2": 0.88}}
    compare = {"seeds": [0, 1, 2]}
    for metric, values in (("test/top1", top1), ("test/ece", {"supcon": {"0": 0.01, "1": 0.01, "2": 0.01}, "ce": {"0": 0.04, "1": 0.04, "2": 0.04}})):
        for side in ("supcon", "ce"):
            compare[f"{metric}/{side}/mean"] = sum(values[side].values()) / 3
        compare[f"{metric}/difference/per_seed"] = {seed: values["supcon"][seed] - values["ce"][seed] for seed in values["ce"]}
    (folder / "metrics").mkdir(parents=True)
    (folder / "metrics/compare.json").write_text(json.dumps(compare))
    record = {"commit": "abcdef0123456789", "preset": "configs/study_fashion_mnist.yaml", "total_seconds": 4800, "machine": {"cpus": 2, "cpu_model": "Test CPU"}}
    (folder / "study.json").write_text(json.dumps(record))
    (folder / "summary.md").write_text("# Report\n\n## Claims\n\n| claim | verdict |\n|---|---|\n| top-1 | held |\n\n## Main comparison\n")
    return folder


def test_comparison_notebook_runs_on_the_pipeline_outputs(project):
    import nbclient
    import nbformat

    notebook = nbformat.read(REPO / "notebooks" / "compare_supcon_ce.ipynb", as_version=4)
    os.environ["SUPCON_REPO"] = str(project["repo"])
    study = write_study(project["repo"] / "reports/study")
    try:
        nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3").execute()
    finally:
        del os.environ["SUPCON_REPO"]
        shutil.rmtree(study)
    shown = [out.get("text", "") + str(out.get("data", {}).get("text/plain", "")) for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    outputs = "".join(shown)
    assert "supcon (linear eval)" in outputs and "test/top1" in outputs and "training seeds: [0]" in outputs
    assert "pretrain_supcon" in outputs and "train_ce" in outputs
    assert "generated, 20 images per cell" in outputs  # robustness
    fraction_table = next(text for text in shown if "side" in text and "count" in text)
    assert "0.5" in fraction_table and "supcon" in fraction_table and "ce" in fraction_table
    assert "no sweep yet: `python -m pipeline.sweep --space temperature`" in outputs
    # The study's table: top-1 differences 0.01, 0.02, 0.03 -> mean 0.02, s 0.01, 4.3027 x 0.01 / sqrt(3) = 0.02484
    study_table = next(text for text in shown if "95% low" in text)
    assert re.search(r"test/top1\s+0\.90*\s+0\.880*\s+0\.020*\s+-0\.00484\d*\s+0\.04484\d*\s+3", study_table), study_table
    assert "study of commit abcdef012345 (configs/study_fashion_mnist.yaml): 80 min on 2 x Test CPU" in outputs
    assert any("| top-1 | held |" in str(out.get("data", {}).get("text/markdown", "")) for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "accuracy vs imbalance factor: no long-tailed cells yet" not in outputs  # the long_tail cells ran
    assert "small batches: no small-batch cells; small_batch.queues lists none" in outputs  # the default lists none
    assert sum(out.get("output_type") == "display_data" and "image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs) == 4  # no sweep


def test_a_code_change_trains_again_and_an_unchanged_rerun_reports_the_same_run(project):
    folder = workdir(project, "stale", supcon={"epochs": 2})
    for package in ("stages", "pipeline"):  # the stages run this copy (the working directory comes first on sys.path)
        shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    first = stage("pretrain_supcon", folder)
    stage("linear_eval", folder)
    assert "supcon epoch 2/2" in first.stdout
    first_id = metrics(folder, "pretrain_supcon")["mlflow_run_id"]

    # Settings that cannot change the model: the same run is reported again, saying so, untrained.
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["run"]["threads"], params["supcon"]["knn_every"], params["data"]["root"] = 2, 2, str(folder)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    again = stage("pretrain_supcon", folder)
    assert f"already finished by MLflow run {first_id}" in again.stdout and "epoch 1/2" not in again.stdout
    assert metrics(folder, "pretrain_supcon")["mlflow_run_id"] == first_id

    # An edit to the loss: the old checkpoint belongs to other code, so the stage trains anew.
    losses = folder / "pipeline" / "losses.py"
    losses.write_text(losses.read_text() + "\n# an edit\n")
    edited = stage("pretrain_supcon", folder)
    assert "written by a run with other code (pipeline.losses); starting over" in edited.stdout
    assert "supcon epoch 1/2" in edited.stdout and "resuming" not in edited.stdout
    assert metrics(folder, "pretrain_supcon")["mlflow_run_id"] != first_id
    # The probe keys on the encoder checkpoint's bytes (its own code did not change).
    probe = stage("linear_eval", folder)
    assert "written by a run with other inputs (encoder); starting over" in probe.stdout
    assert sorted(r.data.tags["stage"] for r in all_runs(folder)) == ["linear_eval", "linear_eval", "pretrain_supcon", "pretrain_supcon"]


def test_runs_record_where_they_ran(project):
    repo = project["repo"]
    for name in TRAINING_STAGES:
        recorded = metrics(repo, name)["environment"]
        assert {"env/torch", "env/onednn", "env/cpu_model", "env/cpu_isa", "env/gpu", "env/packages_sha256"} <= set(recorded)
        tags = {r.data.tags["stage"]: r.data.tags for r in all_runs(repo)}[name]
        assert tags["env/torch"] == recorded["env/torch"] == torch.__version__
        assert tags["env/cpu_isa"] == recorded["env/cpu_isa"] and tags["machine"]


def test_the_stages_read_the_test_split_only_to_score_the_trained_model(project, monkeypatch):
    """The real stage functions, in this process, with the test split poisoned until `score_test`."""
    import dataclasses

    from fixtures_data import Poisoned
    from pipeline.data import Split
    from stages import cli, common, linear_eval, pretrain_supcon, train_ce

    folder = workdir(project, "poisoned")
    monkeypatch.chdir(folder)
    real_load, real_score = common.load_prepared, common.StageJob.score_test
    scored = []

    def load_poisoned(path, **kwargs):
        data = real_load(path, **kwargs)
        scored.append(data.test)  # kept aside; the stage sees a poisoned split until it scores
        return dataclasses.replace(data, test=Split(Poisoned(), Poisoned()))

    def score_after_training(job, predictor):
        job.data = dataclasses.replace(job.data, test=scored[-1])
        return real_score(job, predictor)

    monkeypatch.setattr(common, "load_prepared", load_poisoned)
    monkeypatch.setattr(common.StageJob, "score_test", score_after_training)
    params = cli.read_params(Path("params.yaml"))
    threads = torch.get_num_threads()
    try:
        pretrain_supcon.pretrain(params, seed=0)
        train_ce.train_baseline(params, seed=0)
        linear_eval.evaluate(params, seed=0)
    finally:
        torch.set_num_threads(threads)

    assert len(scored) == 3
    for name in ("train_ce", "linear_eval"):  # the same results as the stages' own processes
        assert metrics(folder, name)["test/top1"] == metrics(project["repo"], name)["test/top1"]


def rescored_errors(repo: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """top-1 error of the selected CE model (best.pt) on uint8 images [N, C, H, W], rebuilt independently of the stage."""
    from pipeline.data import load_prepared
    from pipeline.models import build_ce_model
    from pipeline.preprocess import eval_preprocess, predict

    state = torch.load(repo / "models/seeds/0/ce/last.pt", weights_only=True)
    model = build_ce_model(**{k: v for k, v in state["spec"].items() if k != "kind"})
    model.load_state_dict(torch.load(repo / "models/seeds/0/ce/best.pt", weights_only=True)["model"])
    data = load_prepared(repo / "data/prepared/fashion_mnist")
    preprocess = eval_preprocess(data.image_size, data.channels, data.mean, data.std)
    logits = predict(model.eval(), torch.from_numpy(np.ascontiguousarray(images)), preprocess=preprocess, device=torch.device("cpu"))
    return float((logits.argmax(1).numpy() != labels).mean())


def test_corrupt_and_robustness_stages_score_both_models_on_the_stored_corrupted_set(project):
    repo, output = project["repo"], project["repro"].stdout
    assert "Running stage 'corrupt'" in output and "Running stage 'robustness@0'" in output
    store = repo / "data/corrupted/fashion_mnist"
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["source"] == "generated" and manifest["num_images"] == 20 and manifest["image_shape"] == [1, 28, 28]
    clean, labels = np.load(store / "clean.npy"), np.load(store / "labels.npy")
    noise = np.load(store / "gaussian_noise.npy")
    assert noise.shape == (5, 20, 1, 28, 28) and noise.dtype == np.uint8
    # Stronger severities move the images further from the clean ones.
    distance = [np.abs(noise[s].astype(float) - clean).mean() for s in range(5)]
    assert distance == sorted(distance) and distance[0] > 1.0, distance

    report = metrics(repo, "robustness")
    assert report["baseline"].startswith("this pipeline's CE model") and report["images_per_cell"] == 20
    ce, supcon = report["ce"], report["supcon"]
    # What the stage reports is what the CE checkpoint scores on the stored images, recomputed here.
    assert ce["clean_error"] == pytest.approx(rescored_errors(repo, clean, labels), abs=1e-6)
    assert ce["errors"]["fog"][2] == pytest.approx(rescored_errors(repo, np.load(store / "fog.npy")[2], labels), abs=1e-6)
    assert all(value == pytest.approx(100.0) for value in ce["CE"].values()) and ce["mCE"] == pytest.approx(100.0)
    expected = {n: 100 * sum(supcon["errors"][n]) / sum(ce["errors"][n]) for n in report["corruptions"]}
    assert supcon["CE"] == pytest.approx(expected)
    assert sorted(supcon["by_severity"], key=int) == ["0", "1", "2", "3", "4", "5"]
    assert supcon["by_severity"]["0"]["top1"] == pytest.approx(1 - supcon["clean_error"])
    mean_top1 = sum(1 - e for errors in supcon["errors"].values() for e in errors) / (5 * len(supcon["errors"]))
    assert report["supcon/corrupted_top1"] == pytest.approx(mean_top1)
    rows = list(csv.DictReader((repo / "plots/seeds/0/robustness_severity.csv").open()))
    assert [row["severity"] for row in rows] == ["0", "1", "2", "3", "4", "5"]
    runs = [r for r in all_runs(repo) if r.data.tags.get("stage") == "robustness"]
    assert len(runs) == 1 and runs[0].data.tags["ce_run_id"] == metrics(repo, "train_ce")["mlflow_run_id"]
    assert "supcon/mCE" in runs[0].data.metrics


def test_corrupt_with_a_missing_released_set_exits_2_and_keeps_the_store(project):
    folder = workdir(project, "released", robustness={"released": "cifar10-c", "released_root": str(project["root"] / "nowhere")})
    shutil.copytree(project["repo"] / "data" / "corrupted", folder / "data" / "corrupted")
    before = (folder / "data/corrupted/fashion_mnist/manifest.json").read_bytes()
    done = stage("corrupt", folder, check=False)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    # Fashion-MNIST has no release: refused before any folder is read (test_robustness_stage.py: a missing CIFAR-10-C)
    assert "robustness.released = 'cifar10-c' is not allowed" in done.stderr
    assert (folder / "data/corrupted/fashion_mnist/manifest.json").read_bytes() == before
    # The ImageNet presets read the release: without its folder the stage says what to set.
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["robustness"].update(released="imagenet-c", released_root=None)
    params["data"]["dataset"] = "imagenet"  # the dataset imagenet-c belongs to
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    done = stage("corrupt", folder, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: robustness.released_root = null") and len(done.stderr.strip().splitlines()) == 1


def test_reduced_data_cells_train_on_their_fraction_under_the_budget_rule(project):
    repo = project["repo"]
    listed = run(["dvc", "stage", "list"], repo).stdout
    assert "reduced_data@0.5-supcon-0" in listed and "reduced_data@0.5-ce-0" in listed
    for method in ("supcon", "ce"):
        cell = metrics(repo, f"reduced/{method}-0.5-seed0")
        # 160 labelled train images, half of each class; batch 16 -> 5 steps/epoch; 12 steps -> 3 epochs.
        assert (cell["fraction"], cell["seed"], cell["train_images"]) == (0.5, 0, 80)
        assert cell["budget"]["epochs"] == 3 and cell["budget"]["batch_size"] == 16 and cell["epochs"] >= 2
        assert 0.0 <= cell["test/top1"] <= 1.0 and "best_epoch" in cell
    supcon = metrics(repo, "reduced/supcon-0.5-seed0")
    assert supcon["budget"]["images_seen"] == 80 * 2 * 3 and supcon["budget"]["probe_epochs"] == 3
    runs = [r for r in all_runs(repo) if r.data.tags.get("stage") == "reduced_data"]
    assert sorted((r.data.tags["method"], r.data.tags["fraction"], r.data.tags["seed"]) for r in runs) == [("ce", "0.5", "0"), ("supcon", "0.5", "0")]


def test_adding_a_fraction_or_a_seed_runs_only_the_new_cells(project):
    folder = project["root"] / "grown"
    shutil.copytree(project["repo"], folder, ignore=shutil.ignore_patterns("mlflow.db"))
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["reduced"]["fractions"] = [0.5, 0.25]
    params["run"]["seeds"] = [0, 1]
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    status = json.loads(run(["dvc", "status", "--json"], folder).stdout or "{}")
    cells = [f"reduced_data@{f}-{m}-{s}" for f in ("0.5", "0.25") for m in ("supcon", "ce") for s in (0, 1) if (f, s) != ("0.5", 0)]
    long_tail = [f"long_tail@4-{m}-1" for m in ("supcon", "ce")]  # the new seed's long-tail cells; seed 0's stay
    # the new seed's main comparison, and the two stages that summarise every seed and cell
    assert sorted(status) == sorted([*cells, *long_tail, "pretrain_supcon@1", "train_ce@1", "linear_eval@1", "robustness@1", "compare", "report"])


def test_the_main_comparison_runs_once_per_training_seed(project):
    folder = workdir(project, "second_seed", run={"seeds": [0, 1]})
    stage("train_ce", folder)  # no --seed: the first of run.seeds, as in the project
    run([sys.executable, "-m", "stages.train_ce", "--seed", "1"], folder)
    first, second = metrics(folder, "train_ce", seed=0), metrics(folder, "train_ce", seed=1)
    assert first["test/top1"] == metrics(project["repo"], "train_ce")["test/top1"]  # seed 0 is the project's run
    losses = [row["train_loss"] for row in csv.DictReader((folder / "plots/seeds/1/train_ce.csv").open())]
    assert losses != [row["train_loss"] for row in csv.DictReader((folder / "plots/seeds/0/train_ce.csv").open())]
    assert (folder / "models/seeds/1/ce/best.pt").is_file()
    assert {r.data.tags["seed"] for r in all_runs(folder) if r.data.tags["stage"] == "train_ce"} == {"0", "1"}
    assert second["mlflow_run_id"] != first["mlflow_run_id"]
    unlisted = run([sys.executable, "-m", "stages.train_ce", "--seed", "7"], folder, check=False)
    assert unlisted.returncode == 2 and unlisted.stderr.strip() == "error: --seed = 7 is not allowed: expected one of run.seeds [0, 1] (params.yaml)"


def test_a_fraction_too_small_for_a_class_exits_2_naming_the_key(project):
    folder = workdir(project, "tiny_fraction", reduced={"fractions": [0.001]})
    done = run([sys.executable, "-m", "stages.reduced_data", "--fraction", "0.001", "--method", "ce", "--seed", "0"], folder, check=False)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "reduced.fractions = 0.001" in done.stderr and "every class keeps an image" in done.stderr
    other = run([sys.executable, "-m", "stages.reduced_data", "--fraction", "0.3", "--method", "ce", "--seed", "0"], folder, check=False)
    assert other.returncode == 2 and "reduced.fractions = 0.3" in other.stderr


def _get(url: str, body: dict | None = None) -> dict | str:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if "/api/" in url else text


MAKE_SETUP_FILES = ("Makefile", "requirements.txt", "requirements-dev.txt", "constraints.txt", "pyproject.toml", "scripts/apt_install.sh")
"""What `make mlflow-ui` reads besides the project: its setup prerequisites (copied with their
times, so the venv's stamp stays newer than them and nothing is installed again)."""


def make_mlflow_ui(repo: Path, port: int) -> list[str]:
    """The README's `make mlflow-ui` in `repo`, on `port` (the Makefile's MLFLOW_UI_PORT), with
    the venv of this python (the Makefile's VENV; the project copy has no .venv of its own)."""
    from readme_commands import readme_command, words

    for name in MAKE_SETUP_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    venv = Path(sys.executable).parent.parent
    return [*words(readme_command("make mlflow-ui")), f"VENV={venv}", f"MLFLOW_UI_PORT={port}"]


def make_env() -> dict[str, str]:
    """The stages' environment as a shell gives it to make: no outer make's variables."""
    return {k: v for k, v in env().items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}


@pytest.fixture(scope="module")
def mlflow_ui(project):
    """`make mlflow-ui` (README, MLflow) on the project, on a free port of 127.0.0.1: the address it
    prints and the UI it then serves, as a user would open them."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = project["repo"]
    command = make_mlflow_ui(repo, port)
    planned = subprocess.run([*command, "--dry-run"], cwd=repo, env=make_env(), capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    if "pip install" in planned.stdout:
        pytest.fail(f"`make mlflow-ui` would install the venv again ({sys.executable}: its .installed stamp is older than a requirements file); run `make setup` first")
    log = project["root"] / "mlflow-ui.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=repo, env=make_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            if server.poll() is not None:
                pytest.fail(f"{' '.join(command)} exited {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                _get(f"{base}/health")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"`make mlflow-ui` did not answer on {base}/health within 180 s:\n{log.read_text()[-3000:]}")
        yield base, port, log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # make, the UI it started and the UI's workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        import mlflow

        mlflow.set_tracking_uri(None)  # a test may point this process at the server


def test_mlflow_ui_opens_on_the_runs_with_datasets_and_loadable_models(project, mlflow_ui):
    """`make mlflow-ui`'s address, checked through the REST API of the UI it serves."""
    import mlflow.pytorch

    from pipeline.data import load_prepared
    from pipeline.evaluate import topk_accuracy

    repo, (base, port, printed) = project["repo"], mlflow_ui
    mlflow.set_tracking_uri(base)
    experiment_id = re.search(rf"SupCon vs CE runs: http://127\.0\.0\.1:{port}/#/experiments/(\d+)/runs", printed).group(1)
    assert '<div id="root"' in _get(f"{base}/")  # the UI's page is served there
    experiment = _get(f"{base}/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}")["experiment"]
    assert experiment["name"] == "supcon-pipeline"
    assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]  # opens on training runs, not GenAI
    runs = _get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id], "max_results": 200})["runs"]
    by_stage = {tag["value"]: found for found in runs for tag in found["data"]["tags"] if tag["key"] == "stage"}
    # The compare page it prints: SupCon's probe and CE of the one seed, in MLflow's own route.
    assert compared_runs(printed, port) == ([metrics(repo, "linear_eval")["mlflow_run_id"], metrics(repo, "train_ce")["mlflow_run_id"]], [experiment_id])
    data = load_prepared(repo / "data/prepared/fashion_mnist")
    for stage_name in ("train_ce", "linear_eval"):
        found = by_stage[stage_name]
        assert {m["key"] for m in found["data"]["metrics"]} >= {"test/top1", "test/ece", "val/top1_best", "train/loss"}  # shared keys
        (dataset,) = found["inputs"]["dataset_inputs"]
        assert dataset["dataset"]["name"] == "fashion_mnist" and {"key": "mlflow.data.context", "value": "training"} in dataset["tags"]
        # the logged MLflow model scores the test split exactly as the stage reported
        model = mlflow.pytorch.load_model(f"runs:/{found['info']['run_id']}/model", dst_path=str(project["root"] / f"loaded-{stage_name}"))
        with torch.no_grad():
            logits = torch.cat([model(batch) for batch in data.test.images.split(16)])
        assert topk_accuracy(logits, data.test.labels) == pytest.approx(metrics(repo, stage_name)["test/top1"], abs=1 / len(data.test.labels) + 1e-9)


def compared_runs(printed: str, port: int) -> tuple[list[str], list[str]]:
    """The run and experiment ids in the compare page's address `make mlflow-ui` printed."""
    from urllib.parse import unquote

    url = re.search(rf"SupCon vs CE compared .*: (http://127\.0\.0\.1:{port}/#/compare-runs\?runs=(\S+)&experiments=(\S+))", printed)
    return json.loads(unquote(url.group(2))), json.loads(unquote(url.group(3)))


def test_mlflow_runs_page_renders_in_a_headless_browser(project, mlflow_ui):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium); the REST test above checks the same store")
    base, port, printed = mlflow_ui
    url = re.search(rf"http://127\.0\.0\.1:{port}/\S+/runs", printed).group(0)
    compare = re.search(rf"http://127\.0\.0\.1:{port}/#/compare-runs\S+", printed).group(0)
    for page in (url, compare):  # the runs table, and SupCon's probe beside CE on the compare page
        dumped = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000", "--dump-dom", page], capture_output=True, text=True, timeout=120)
        assert "train_ce-ce" in dumped.stdout and "linear_eval-supcon" in dumped.stdout, (page, dumped.stdout[-2000:])
