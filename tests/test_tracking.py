"""MLflow tracking: where runs go, what one run holds, and reopening a run after a restart."""

import re
import subprocess
from pathlib import Path

import pytest

from pipeline import tracking


def test_tracking_uri_prefers_the_environment_then_the_config_then_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri(None, "mlflow.db") == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.tracking_uri("http://configured:5000", "mlflow.db") == "http://configured:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert tracking.tracking_uri("http://configured:5000", "mlflow.db") == "http://from-env:5000"
    assert tracking.tracking_uri(None, tmp_path / "x.db") == "http://from-env:5000"


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One sqlite store for the module (creating its tables takes seconds)."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    yield uri, mlflow.MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture
def store(database, request, monkeypatch):
    """(uri, client, experiment): the shared store, with an experiment of this test's own."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield (*database, request.node.name)
    while mlflow.active_run() is not None:
        mlflow.end_run()


PARAMS = {"run": {"seed": 3}, "supcon": {"optimizer": {"lr": 0.5}, "crop": [0.2, 1.0]}, "data": {"root": None}}
TAGS = {"stage": "pretrain_supcon", "method": "supcon", "seed": "3"}


def _open(uri, experiment, **kwargs):
    return tracking.start_run(uri=uri, experiment=experiment, run_name="pretrain_supcon-supcon", tags=TAGS, params=PARAMS, **kwargs)


def test_run_logs_flat_params_tags_metrics_per_step_and_artifacts(store, tmp_path):
    uri, client, experiment = store
    artifact = tmp_path / "metrics.json"
    artifact.write_text('{"test/top1": 0.5}\n')

    with _open(uri, experiment) as run:
        run.log_metrics({"train/loss": 2.0, "val/knn_top1": 0.25}, step=1)
        run.log_metrics({"train/loss": 1.5}, step=2)
        run.log_artifact(artifact, "metrics")
        run_id = run.run_id

    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "pretrain_supcon-supcon"
    assert client.get_experiment(logged.info.experiment_id).name == experiment
    assert logged.data.params == {"run.seed": "3", "supcon.optimizer.lr": "0.5", "supcon.crop": "[0.2, 1.0]", "data.root": "null"}
    assert {k: logged.data.tags[k] for k in TAGS} == TAGS
    losses = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in losses) == [(1, 2.0), (2, 1.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val/knn_top1")] == [(1, 0.25)]
    assert [a.path for a in client.list_artifacts(run_id, "metrics")] == ["metrics/metrics.json"]



def test_log_epochs_logs_every_row_at_its_epoch_in_batches_of_at_most_1000(store, monkeypatch):
    import mlflow

    uri, client, experiment = store
    rows = [{"epoch": epoch, "train/loss": 1.0 / epoch, "train/steps": epoch, "train/lr": 0.1, "val/top1": 0.5} for epoch in range(1, 301)]
    requests = []
    log_batch = mlflow.MlflowClient.log_batch

    def counting(self, run_id, metrics=(), **others):
        if metrics:
            requests.append(len(metrics))
        return log_batch(self, run_id, metrics=metrics, **others)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", counting)

    with _open(uri, experiment) as run:
        run.log_epochs(rows, prefix="probe/")
        run_id = run.run_id

    assert requests == [1000, 200]  # 300 epochs x 4 metrics
    losses = client.get_metric_history(run_id, "probe/train/loss")
    assert sorted((m.step, m.value) for m in losses) == [(epoch, 1.0 / epoch) for epoch in range(1, 301)]
    assert "probe/epoch" not in client.get_run(run_id).data.metrics

def test_more_than_100_params_are_logged(store):
    uri, client, experiment = store
    many = {"grid": {f"p{i:03d}": i for i in range(230)}}
    with tracking.start_run(uri=uri, experiment=experiment, run_name="many", tags={}, params=many) as run:
        run_id = run.run_id
    assert len(client.get_run(run_id).data.params) == 230


def test_reopening_continues_the_same_run(store):
    uri, client, experiment = store
    with _open(uri, experiment) as first:
        experiment_id = client.get_run(first.run_id).info.experiment_id
    # What a `kill -9` leaves behind: a run still RUNNING, with the epochs done so far.
    killed = client.create_run(experiment_id, run_name="pretrain_supcon-supcon")
    run_id = killed.info.run_id
    client.log_metric(run_id, "train/loss", 2.0, step=1)

    with _open(uri, experiment, resume_run_id=run_id) as again:
        assert again.run_id == run_id
        again.log_metrics({"train/loss": 1.0}, step=2)

    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["stage"] == "pretrain_supcon"
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")) == [(1, 2.0), (2, 1.0)]
    assert len(client.search_runs([experiment_id])) == 2  # the first run and the continued one, no third


def test_unknown_resume_id_starts_a_fresh_run(store):
    uri, client, experiment = store
    with _open(uri, experiment, resume_run_id="0123456789abcdef0123456789abcdef") as run:
        run_id = run.run_id
    assert run_id != "0123456789abcdef0123456789abcdef"
    assert client.get_run(run_id).data.params["run.seed"] == "3"


def test_an_exception_marks_the_run_failed(store):
    uri, client, experiment = store
    with pytest.raises(RuntimeError), _open(uri, experiment) as run:
        run_id = run.run_id
        raise RuntimeError("boom")
    assert client.get_run(run_id).info.status == "FAILED"


def test_only_the_main_process_logs(store, monkeypatch, tmp_path):
    uri, client, experiment = store
    monkeypatch.setattr(tracking.dist, "is_main_process", lambda: False)
    artifact = tmp_path / "metrics.json"
    artifact.write_text("{}")

    with _open(uri, experiment) as run:
        run.log_metrics({"train/loss": 1.0}, step=1)
        run.log_artifact(artifact, "metrics")
        run.set_tags({"x": "y"})

    assert run.run_id == ""
    assert client.get_experiment_by_name(experiment) is None  # nothing created, nothing logged


def test_git_commit_is_a_hash_inside_git_and_unknown_outside(tmp_path):
    repo = Path(__file__).resolve().parent
    inside = tracking.git_commit(repo)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", inside), inside
    assert inside.split("-")[0] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert tracking.git_commit(tmp_path) == "unknown"
