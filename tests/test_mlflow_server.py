"""The README's tracking server ("A tracking server for several machines"): the tiny pipeline and
a sweep with two trials at once log over HTTP to `mlflow server`, and everything arrives.

The project (tests/served_project.py, shared with test_dvc_remote.py) ran `make repro`, the sweep
and `dvc exp run` with MLFLOW_TRACKING_URI pointing at the server. Here, through the server only:
one FINISHED run per stage with its per-epoch curves, the report's run, the sweep's parent with
exactly its two children (nothing lost while two trials logged concurrently), the dataset inputs,
the logged models, which load from `runs:/<id>/model` and score the test split as the stage
said, the experiment's name on the run `dvc exp run` made, and the report's compare link naming
the server's runs. Artifacts sit in the server's own artifact root, and the project has no local store.
"""

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from test_stages import TRAINING_STAGES, metrics
from test_sweep import check_children

pytestmark = pytest.mark.slow

EXPERIMENT = "supcon-pipeline"


def all_runs(url: str) -> tuple:
    """(client, every run of the project's experiment on the server)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def by_stage(runs: list) -> dict[str, list]:
    staged: dict[str, list] = {}
    for found in runs:
        if "stage" in found.data.tags:
            staged.setdefault(found.data.tags["stage"], []).append(found)
    return staged


@contextmanager
def tracking_uri(url: str):
    """This process pointed at the server for `runs:/` URIs, then back as it was."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(url)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def test_every_stage_logged_one_finished_run_with_its_curves(served_project):
    repo = served_project["repo"]
    client, runs = all_runs(served_project["url"])
    staged = by_stage(runs)
    assert sorted(staged) == sorted([*TRAINING_STAGES, "robustness", "reduced_data", "long_tail", "report", "sweep"])
    for name in (*TRAINING_STAGES, "robustness"):
        (logged,) = staged[name]
        assert logged.info.status == "FINISHED" and logged.info.run_id == metrics(repo, name)["mlflow_run_id"]
    for name in TRAINING_STAGES:
        history = client.get_metric_history(staged[name][0].info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(1, served_project["epochs"] + 1))
    assert [r.data.tags["method"] for r in staged["reduced_data"]] == ["ce"]  # the one cell of the tiny params
    assert sorted(r.data.tags["method"] for r in staged["long_tail"]) == ["ce", "supcon"]  # params.yaml's one factor, both methods
    # The report ran three times: `make repro`, the sweep's refresh, and `dvc exp run` after it.
    assert len(staged["report"]) == 3 and {r.info.status for r in staged["report"]} == {"FINISHED"}


def test_the_sweep_is_one_parent_with_both_concurrent_trials_complete(served_project):
    client, runs = all_runs(served_project["url"])
    parents = [r for r in runs if r.data.tags.get("sweep.space") == "temperature" and "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent_id = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(children) == 2, [c.info.run_name for c in children]
    assert len([r for r in runs if r.data.tags.get("stage") == "sweep"]) == 3  # no stray run of a trial
    check_children(client, children, parent_id, "val/knn_top1", epochs=1)
    summary = json.loads((served_project["repo"] / "sweeps/temperature/summary.json").read_text())
    assert summary["mlflow_run_id"] == parent_id and len(summary["trials"]) == 2
    assert {"results.csv", "summary.json"} <= artifact_names(client, parent_id)


def artifact_names(client, run_id: str) -> set[str]:
    """File names one folder down too (the parent may file its results under a folder)."""
    names = set()
    for entry in client.list_artifacts(run_id):
        names |= {Path(a.path).name for a in client.list_artifacts(run_id, entry.path)} if entry.is_dir else {Path(entry.path).name}
    return names


def test_training_runs_record_their_dataset_input(served_project):
    _, runs = all_runs(served_project["url"])
    staged = by_stage(runs)
    for name in ("train_ce", "linear_eval"):
        (dataset,) = staged[name][0].inputs.dataset_inputs
        assert dataset.dataset.name == "fashion_mnist" and dataset.dataset.digest
        assert {(t.key, t.value) for t in dataset.tags} >= {("mlflow.data.context", "training")}


def logits_of(model, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(batch) for batch in images.split(16)])


def checkpoint_model(repo: Path, name: str, data):
    """The stage's own selected model, rebuilt from its DVC checkpoints (uint8 images -> logits)."""
    from pipeline.saved_models import load_ce_classifier, load_probe_classifier

    models, cpu = repo / "models/seeds/0", torch.device("cpu")
    if name == "train_ce":
        return load_ce_classifier(models / "ce", data, cpu)
    return load_probe_classifier(models / "supcon/last.pt", models / "linear", data, cpu)


def test_logged_models_load_through_the_server_and_score_as_reported(served_project, tmp_path):
    """`runs:/<id>/model` from the server is the stage's selected model: the same logits as its
    checkpoint, and the test top-1 the stage reported (tiny random data: near chance, so the logits
    are the sharp check)."""
    import mlflow.pytorch

    from pipeline.data import load_prepared
    from pipeline.evaluate import topk_accuracy

    repo = served_project["repo"]
    data = load_prepared(repo / "data/prepared/fashion_mnist")
    staged = by_stage(all_runs(served_project["url"])[1])
    with tracking_uri(served_project["url"]):
        for name in ("train_ce", "linear_eval"):
            model = mlflow.pytorch.load_model(f"runs:/{staged[name][0].info.run_id}/model", dst_path=str(tmp_path / name))
            logits = logits_of(model, data.test.images)
            torch.testing.assert_close(logits, logits_of(checkpoint_model(repo, name, data), data.test.images), atol=1e-4, rtol=1e-4)
            reported = metrics(repo, name)["test/top1"]
            assert topk_accuracy(logits, data.test.labels) == pytest.approx(reported, abs=1 / len(data.test.labels) + 1e-9)


def test_artifacts_live_in_the_servers_artifact_root_and_the_project_has_no_store(served_project):
    served, repo = served_project["server_folder"] / "mlartifacts", served_project["repo"]
    _, runs = all_runs(served_project["url"])
    staged = by_stage(runs)
    for name in TRAINING_STAGES:
        logged = staged[name][0]
        assert logged.info.artifact_uri.startswith("mlflow-artifacts:"), logged.info.artifact_uri  # proxied by the server
        stored = served / logged.info.experiment_id / logged.info.run_id / "artifacts/metrics" / f"{name}.json"
        assert stored.is_file(), stored
    assert len(list(served.rglob("MLmodel"))) == 2  # train_ce's and linear_eval's models
    assert not [p for p in ("mlflow.db", "mlruns", "mlartifacts") if (repo / p).exists()]


def test_the_run_dvc_exp_run_made_carries_the_experiments_name_and_baseline(served_project):
    """`dvc exp run` reran only the report: that run, and no other, is tagged with the name
    `dvc exp list` shows and the commit the experiment started from."""
    (name,) = served_project["dvc_experiments"]
    _, runs = all_runs(served_project["url"])
    tagged = [r for r in runs if "dvc_exp_name" in r.data.tags]
    assert [r.data.tags["stage"] for r in tagged] == ["report"], [r.data.tags.get("stage") for r in tagged]
    assert tagged[0].data.tags["dvc_exp_name"] == name and tagged[0].data.tags["dvc_exp_baseline_rev"] == served_project["baseline"]
    assert "Running stage 'report'" in served_project["dvc_exp_run"]


def test_the_reports_compare_link_names_the_servers_probe_and_ce_runs(served_project):
    from pipeline.mlflow_compare import compare_page
    from stages.report import MLFLOW_UI

    repo = served_project["repo"]
    staged = by_stage(all_runs(served_project["url"])[1])
    probe, ce = staged["linear_eval"][0].info, staged["train_ce"][0].info
    assert probe.experiment_id == ce.experiment_id == metrics(repo, "linear_eval")["mlflow_experiment_id"]
    link = compare_page(MLFLOW_UI, probe.experiment_id, [probe.run_id, ce.run_id])
    assert link in (repo / "reports/summary.md").read_text()
