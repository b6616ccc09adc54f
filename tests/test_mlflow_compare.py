"""The compare page `make mlflow-ui` prints (pipeline/mlflow_compare.py): the newest FINISHED
linear_eval and train_ce run of each seed, in MLflow 3's own compare route, on a real sqlite
store with runs that must be left out (older, failed, reduced-data cells, sweeps); and the page the
report links, built from the run and experiment ids the metrics files record."""

import json
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from pipeline.mlflow_compare import compare_page, newest_comparison_runs, recorded_comparison


@pytest.fixture
def store(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, client.create_experiment("supcon-pipeline")


def logged(client, experiment_id: str, stage: str, seed: str, status: str = "FINISHED") -> str:
    run = client.create_run(experiment_id, tags={"stage": stage, "seed": seed})
    client.set_terminated(run.info.run_id, status=status)
    time.sleep(0.01)  # distinct start times: "newest" is by start time
    return run.info.run_id


def test_the_newest_finished_probe_and_ce_run_of_each_seed_supcon_first(store):
    client, experiment = store
    logged(client, experiment, "linear_eval", "0")  # superseded below
    newest = {key: logged(client, experiment, *key) for key in (("train_ce", "1"), ("linear_eval", "0"), ("train_ce", "0"), ("linear_eval", "1"))}
    logged(client, experiment, "linear_eval", "0", status="FAILED")  # newer, but failed
    logged(client, experiment, "reduced_data", "0")
    logged(client, experiment, "sweep", "0")

    found = newest_comparison_runs(client, experiment)

    expected = [newest[("linear_eval", "0")], newest[("linear_eval", "1")], newest[("train_ce", "0")], newest[("train_ce", "1")]]
    assert found == expected


def test_the_address_is_mlflows_compare_route_with_json_lists():
    page = compare_page("http://127.0.0.1:5000/", "7", ["a1", "b2"])
    parts = urlsplit(page)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:5000", "/")
    route, _, query = parts.fragment.partition("?")
    assert route == "/compare-runs"
    fields = {key: json.loads(unquote(values[0])) for key, values in parse_qs(query, keep_blank_values=True).items()}
    assert fields == {"runs": ["a1", "b2"], "experiments": ["7"]}


def recorded(run_id: str, experiment: str = "3") -> dict:
    return {"mlflow_run_id": run_id, "mlflow_experiment_id": experiment, "test/top1": 0.5}


def test_the_report_links_each_seeds_recorded_probe_then_ce_run():
    supcon, ce = {1: recorded("p1"), 0: recorded("p0")}, {0: recorded("c0"), 1: recorded("c1")}
    assert recorded_comparison("http://127.0.0.1:5000", supcon, ce) == compare_page("http://127.0.0.1:5000", "3", ["p0", "p1", "c0", "c1"])


@pytest.mark.parametrize(
    "ce",
    [
        {0: {"test/top1": 0.5}},  # tracking was off: no run recorded
        {0: {"mlflow_run_id": "c0", "test/top1": 0.5}},  # written before the experiment id was recorded
        {0: recorded("c0", experiment="4")},  # another experiment: no one compare page holds both
    ],
)
def test_no_link_when_the_files_do_not_name_runs_of_one_experiment(ce):
    assert recorded_comparison("http://127.0.0.1:5000", {0: recorded("p0")}, ce) is None
