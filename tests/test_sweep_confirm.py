"""`python -m pipeline.sweep --space temperature --confirm K` (pipeline/sweep/confirm.py): the top K
temperatures of a finished sweep (never a trial the scheduler stopped) plus 0.1, each trained at
full length with every training seed and scored by the linear probe's best val top-1, written
into the sweep's summary.json under "confirmation"; a rerun or an interrupted run continues
without retraining; bad setups are one line and exit 2.

The project is test_sweep.py's: a width-2 ResNet on a 300-image Fashion-MNIST of 8x8 images, with
2 SupCon and 2 probe epochs as the full length, and a sweep written by the sweep's own
results.write.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_params
from pipeline.data import prepare_dataset
from pipeline.sweep import results
from pipeline.sweep.ledger import FINISHED, STOPPED, Ledger, TrialRecord
from stages.preset import merged_params
from test_sweep import cli, tiny_raw, write_brightness_mnist

SEEDS = [0, 1, 2]
# (temperature, end state, epochs, objective): 0.2 has the best objective of all, but the
# scheduler stopped it after one epoch, so it must never be chosen.
SWEEP = [(0.1, FINISHED, 2, 0.50), (0.35, FINISHED, 2, 0.62), (0.05, FINISHED, 2, 0.41), (0.2, STOPPED, 1, 0.95)]
CHOSEN_K1 = {"0.35", "0.1"}  # the top finished one, plus the paper's 0.1
LINE = r"^T=(\S+) seed (\d): val top-1 (\d\.\d{4}), (\d+\.\d) s"


def write_sweep(folder: Path, trials=SWEEP, samples: int = len(SWEEP)) -> Path:
    """sweeps/temperature/ as a finished optuna-backend sweep leaves it (results.csv, summary.json, figure)."""
    ledger = Ledger(folder, "temperature", "supcon", "supcon", "optuna", 2, "val/knn_top1", mlflow_run_id="sweep-parent")
    for number, (temperature, state, epochs, objective) in enumerate(trials):
        metrics = {"val/knn_top1": objective, **({"val/probe_top1": objective - 0.1} if state == FINISHED else {})}
        ledger.trials.append(TrialRecord(number, {"supcon.temperature": temperature}, state, epochs, objective, metrics))
    folder.mkdir(parents=True, exist_ok=True)
    return results.write(ledger, commit="test", settings={"num_samples": samples, "epochs": 2, "backend": "optuna"})["summary"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder: params.yaml with three training seeds, the prepared store, the sweep."""
    root = tmp_path_factory.mktemp("confirm")
    write_brightness_mnist(root / "raw")
    project = root / "project"
    prepare_dataset("fashion_mnist", root=str(root / "raw"), download=False, image_size=8, val_fraction=0.2, fractions=[1.0], seed=0, out_dir=project / "data/prepared/fashion_mnist")
    (project / "params.yaml").write_text(yaml.safe_dump(merged_params(tiny_raw(root / "raw"), {"run": {"seeds": SEEDS}})))
    write_sweep(project / "sweeps/temperature")
    return project


def write_params(project: Path, changes: dict) -> None:
    """The project's params.yaml with `changes` merged in."""
    raw = merged_params(yaml.safe_load((project / "params.yaml").read_text()), changes)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def copy_of(project: Path, tmp_path: Path) -> Path:
    shutil.copytree(project, tmp_path / "project")
    return tmp_path / "project"


def summary_of(project: Path) -> dict:
    return json.loads((project / "sweeps/temperature/summary.json").read_text())


def mlflow_runs(project: Path) -> tuple:
    """(client, parent runs, child runs) in the project's default MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("supcon-pipeline").experiment_id], max_results=100)
    return client, [r for r in runs if "mlflow.parentRunId" not in r.data.tags], [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.fixture(scope="module")
def confirmed(project, tmp_path_factory) -> tuple[Path, object]:
    """The real CLI's `--confirm 1` on a copy of the project: (its folder, the finished process)."""
    folder = copy_of(project, tmp_path_factory.mktemp("confirmed"))
    done = cli(["--space", "temperature", "--confirm", "1"], folder, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, done


def test_confirm_trains_the_top_finished_temperatures_and_0_1_for_every_seed(confirmed, project):
    import re

    folder, done = confirmed
    before, after = summary_of(project), summary_of(folder)
    confirmation = after.pop("confirmation")
    assert after == before  # the sweep's own summary is kept as it was
    assert set(confirmation["val_top1"]) == CHOSEN_K1  # 0.2's best objective never counts: it was stopped
    for temperature, by_seed in confirmation["val_top1"].items():
        assert sorted(by_seed) == ["0", "1", "2"], temperature
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in by_seed.values()), by_seed
    assert confirmation["stopped"] == [0.2] and confirmation["failed"] == {}
    assert confirmation["epochs"] == 2 and confirmation["seeds"] == SEEDS and confirmation["k"] == 1
    assert confirmation["chosen_from"] == "sweeps/temperature/summary.json"
    assert [r["temperature"] for r in confirmation["ranked"]] == [0.35]
    assert confirmation["val_images"] == 60  # val, never test (50 images)

    printed = [re.match(LINE, line) for line in done.stdout.splitlines()]
    finished = {(m[1], m[2]): float(m[3]) for m in printed if m}
    assert len(finished) == 6 and "not rerun" not in done.stdout
    for (temperature, seed), value in finished.items():
        assert abs(confirmation["val_top1"][temperature][seed] - value) < 1e-4
    assert "(the paper's)" in done.stdout and "mean val top-1 over seeds [0, 1, 2]" in done.stdout
    assert not (folder / "sweeps/temperature/confirm").exists()  # recorded runs' checkpoints are removed

    client, parents, children = mlflow_runs(folder)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["sweep.space"] == "temperature" and parents[0].data.tags["confirm.k"] == "1"
    assert parents[0].info.run_id == confirmation["mlflow_run_id"]
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        temperature, seed = child.data.params["supcon.temperature"], child.data.params["seed"]
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.metrics["val/top1_best"] == pytest.approx(confirmation["val_top1"][temperature][seed])
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")] == [1, 2]  # the SupCon curve
        assert [m.step for m in client.get_metric_history(child.info.run_id, "probe/val/top1")] == [1, 2]  # the probe's


def test_running_it_again_trains_only_a_run_whose_code_changed(confirmed, tmp_path):
    folder = copy_of(confirmed[0], tmp_path)
    ledger_path = folder / "sweeps/temperature/confirm.json"
    ledger_before = json.loads(ledger_path.read_text())

    done = cli(["--space", "temperature", "--confirm", "1"], folder, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("(trained earlier; not rerun)") == 6 and "(0 run(s) trained now)" in done.stdout
    assert "epoch 1/2" not in done.stdout  # no training loop ran
    assert json.loads(ledger_path.read_text())["runs"] == ledger_before["runs"]
    assert summary_of(folder)["confirmation"]["val_top1"] == summary_of(confirmed[0])["confirmation"]["val_top1"]
    _, parents, children = mlflow_runs(folder)
    assert len(parents) == 1 and len(children) == 6  # the same parent run, no new child

    # As if pipeline.losses had been edited since T = 0.1 with seed 1 trained: that run alone trains again.
    ledger_before["runs"]["0.1"]["1"]["key"]["code"]["pipeline.losses"] = "0" * 16
    ledger_path.write_text(json.dumps(ledger_before))
    again = cli(["--space", "temperature", "--confirm", "1"], folder, timeout=300)

    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "T=0.1 seed 1: trained earlier with other code (pipeline.losses); training again" in again.stdout
    assert again.stdout.count("(trained earlier; not rerun)") == 5 and "(1 run(s) trained now)" in again.stdout
    assert summary_of(folder)["confirmation"]["val_top1"]["0.1"]["1"] == summary_of(confirmed[0])["confirmation"]["val_top1"]["0.1"]["1"]


def test_an_interrupted_confirmation_keeps_the_old_summary_and_continues(project, tmp_path, monkeypatch):
    """Ctrl-C during the third run: summary.json is untouched, two runs are kept; the next run
    trains only the four missing ones under the same MLflow parent."""
    from pipeline.sweep import confirm_train
    from pipeline.sweep.confirm import ConfirmSpec, run_confirmation

    folder = copy_of(project, tmp_path)
    monkeypatch.chdir(folder)
    summary_bytes = (folder / "sweeps/temperature/summary.json").read_bytes()
    params = parse_params(yaml.safe_load((folder / "params.yaml").read_text()))
    spec = ConfirmSpec(
        folder=folder / "sweeps/temperature", prepared=folder / "data/prepared/fashion_mnist",
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="supcon-pipeline", k=1,
    )  # fmt: skip
    real, calls = confirm_train.train_at_full_length, []

    def train_until_ctrl_c(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(confirm_train, "train_at_full_length", train_until_ctrl_c)
    stopped = run_confirmation(params, spec, echo=lambda line: None)

    assert stopped.interrupted and len(stopped.trained) == 2
    assert (folder / "sweeps/temperature/summary.json").read_bytes() == summary_bytes
    _, parents, children = mlflow_runs(folder)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert sorted(c.data.tags["sweep.end_state"] for c in children) == ["finished", "finished", "interrupted"]

    calls.clear()
    monkeypatch.setattr(confirm_train, "train_at_full_length", lambda *args, **kwargs: calls.append(args[1]) or real(*args, **kwargs))
    lines: list[str] = []
    done = run_confirmation(params, spec, echo=lines.append)

    assert len(calls) == 4 and len(done.trained) == 4 and sum("not rerun" in line for line in lines) == 2
    assert done.trained == [(0.35, 2), (0.1, 0), (0.1, 1), (0.1, 2)]  # the interrupted one first, nothing before it
    assert set(summary_of(folder)["confirmation"]["val_top1"]) == CHOSEN_K1
    _, parents, children = mlflow_runs(folder)
    assert [p.info.status for p in parents] == ["FINISHED"] and parents[0].info.run_id == stopped.ledger.mlflow_run_id
    assert sum(c.data.tags["sweep.end_state"] == "finished" for c in children) == 6


def test_the_main_comparisons_runs_at_params_temperature_are_taken_when_dvc_says_they_are_up_to_date(project, tmp_path, monkeypatch):
    """T = params' 0.1: seeds 0 and 1 come from metrics/seeds/<seed>/ (DVC: up to date), seed 2
    (DVC: stale) is trained, as is every run of 0.35; a folder without DVC is never up to date."""
    from pipeline.sweep import confirm_reuse, confirm_train
    from pipeline.sweep.confirm import ConfirmSpec, run_confirmation

    folder = copy_of(project, tmp_path)
    monkeypatch.chdir(folder)
    for seed, value in ((0, 0.777), (1, 0.755), (2, 0.744)):
        (folder / f"metrics/seeds/{seed}").mkdir(parents=True)
        (folder / f"metrics/seeds/{seed}/linear_eval.json").write_text(json.dumps({"val/top1_best": value, "best_epoch": 2, "train/time_s": 1.5, "mlflow_run_id": f"probe{seed}"}))
        (folder / f"metrics/seeds/{seed}/pretrain_supcon.json").write_text(json.dumps({"train/time_s": 10.0}))
    assert not confirm_reuse.up_to_date(folder, confirm_reuse.stages_of(0))  # no dvc.yaml here
    checked = []
    monkeypatch.setattr(confirm_reuse, "up_to_date", lambda where, stages: checked.append(stages) or stages[0] != "pretrain_supcon@2")
    real, calls = confirm_train.train_at_full_length, []
    monkeypatch.setattr(confirm_train, "train_at_full_length", lambda *args, **kwargs: calls.append(args[1]) or real(*args, **kwargs))
    params = parse_params(yaml.safe_load((folder / "params.yaml").read_text()))
    spec = ConfirmSpec(
        folder=folder / "sweeps/temperature", prepared=folder / "data/prepared/fashion_mnist",
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="supcon-pipeline", k=1, project=folder,
    )  # fmt: skip
    lines: list[str] = []
    done = run_confirmation(params, spec, echo=lines.append)

    assert done.trained == [(0.35, 0), (0.35, 1), (0.35, 2), (0.1, 2)] and len(calls) == 4
    assert checked == [["pretrain_supcon@0", "linear_eval@0"], ["pretrain_supcon@1", "linear_eval@1"], ["pretrain_supcon@2", "linear_eval@2"]]
    values = summary_of(folder)["confirmation"]["val_top1"]["0.1"]
    assert values["0"] == 0.777 and values["1"] == 0.755 and values["2"] != 0.744
    assert sum("linear_eval@" in line and "not trained twice" in line for line in lines) == 2
    _, _, children = mlflow_runs(folder)
    assert sorted(c.data.tags.get("confirm.reused_from", "") for c in children) == ["", "", "", "", "probe0", "probe1"]


def test_choice_ranks_finished_trials_only_and_adds_0_1_once():
    from pipeline.sweep.confirm import choose

    summary = {"trials": [{"params": {"supcon.temperature": t}, "state": s, "epochs": e, "objective": o, "trial": n} for n, (t, s, e, o) in enumerate(SWEEP)]}
    where = Path("sweeps/temperature/summary.json")
    assert choose(summary, 1, where=where).temperatures == [0.35, 0.1]
    assert choose(summary, 2, where=where).temperatures == [0.35, 0.05, 0.1]  # 0.1 ranked second: it is not a challenger
    assert choose(summary, 9, where=where).temperatures == [0.35, 0.05, 0.1]  # every finished one, never the stopped 0.2
    assert choose(summary, 9, where=where).stopped == [0.2]
    first = {"trials": [{**trial, "objective": 0.99} if trial["params"]["supcon.temperature"] == 0.1 else trial for trial in summary["trials"]]}
    assert choose(first, 1, where=where).temperatures == [0.35, 0.1]  # 0.1 ranked first: K = 1 still confirms a challenger


def one_error_line(done) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_fewer_than_three_seeds_is_one_line_naming_run_seeds(project, tmp_path):
    folder = copy_of(project, tmp_path)
    write_params(folder, {"run": {"seeds": [0, 1]}})
    line = one_error_line(cli(["--space", "temperature", "--confirm", "1"], folder))
    assert "run.seeds" in line and "at least 3" in line, line
    assert not (folder / "mlflow.db").exists() and "confirmation" not in summary_of(folder)


@pytest.mark.parametrize("sweep", ["none", "unfinished"])
def test_no_finished_sweep_is_one_line_saying_to_run_it_first(project, tmp_path, sweep):
    folder = copy_of(project, tmp_path)
    shutil.rmtree(folder / "sweeps")
    if sweep == "unfinished":  # interrupted after 2 of 4 trials
        write_sweep(folder / "sweeps/temperature", trials=SWEEP[:2], samples=4)
    line = one_error_line(cli(["--space", "temperature", "--confirm", "1"], folder))
    expected = "run the sweep first: python -m pipeline.sweep --space temperature" if sweep == "none" else "2 of 4 trials ended"
    assert expected in line and "sweeps/temperature/summary.json" in line, line
    assert not (folder / "mlflow.db").exists()


def test_no_val_split_is_one_line_naming_data_val_fraction(project, tmp_path):
    folder = copy_of(project, tmp_path)
    write_params(folder, {"data": {"val_fraction": 0.0}})
    line = one_error_line(cli(["--space", "temperature", "--confirm", "1"], folder))
    assert "data.val_fraction" in line and "> 0" in line and "test" in line, line
    assert not (folder / "mlflow.db").exists() and "confirmation" not in summary_of(folder)


@pytest.mark.parametrize(
    "args, named",
    [
        (["--confirm", "0"], "integer >= 1"),
        (["--confirm", "1", "--samples", "4"], "--samples does not apply"),
        (["--confirm", "1", "--resume"], "--resume does not apply"),
        (["--confirm", "1", "--backend", "optuna"], "--backend does not apply"),
    ],
)
def test_confirm_flags_that_cannot_apply_are_one_line(project, tmp_path, args, named):
    line = one_error_line(cli(["--space", "temperature", *args], project))
    assert "--confirm" in line and named in line, line


def test_confirm_applies_to_the_temperature_space_only(project):
    line = one_error_line(cli(["--space", "lr", "--confirm", "1"], project))
    assert "--confirm" in line and "--space temperature" in line, line


def test_help_says_the_confirmation_runs_in_this_process_without_ray(tmp_path):
    done = cli(["--help"], tmp_path)
    assert done.returncode == 0 and "--confirm K" in done.stdout
    assert "in this process (no Ray)" in " ".join(done.stdout.split())
