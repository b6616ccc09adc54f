"""Sweeps (pipeline.sweep): the spaces, the CLI's bad-input lines, the Ray backend's MLflow
parent/child structure with concurrent trials, resume without rerunning trials, the Optuna
backend with a pruner, Ctrl-C, and the CLI end to end with the report refreshed.

Trials train a width-2 ResNet on a 300-image Fashion-MNIST (written in the real IDX format, 8x8
after preparation) whose classes differ in brightness, so trials with different values score
differently.
"""

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures_data import balanced, write_idx
from pipeline.config import parse_params
from pipeline.data import prepare_dataset
from pipeline.sweep.driver import SweepSpec, run_sweep
from pipeline.sweep.spaces import BATCH_SIZES, LR_RANGES, MEMORY_MOMENTA, MEMORY_SIZES, SPACES, TEMPERATURE, DefineByRun, spaces_for
from pipeline.sweep.trial import trial_params
from stages.preset import merged_params

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"finished": "FINISHED", "stopped early": "KILLED", "failed": "FAILED"}


def write_brightness_mnist(folder: Path) -> None:
    """Fashion-MNIST's four IDX files: 10 classes of noise whose mean brightness grows with the class."""
    folder.mkdir(parents=True)
    for split, per_class, seed in (("train", 30, 1), ("t10k", 5, 2)):
        labels, rng = balanced(10, per_class, seed)
        images = np.clip(rng.normal(20 + 22 * labels[:, None, None], 30, (len(labels), 28, 28)), 0, 255).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images, gz=True)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels.astype(np.uint8), gz=True)


def tiny_raw(raw: Path) -> dict:
    tiny = {
        "run": {"seed": 0, "device": "cpu", "threads": 1},
        "data": {"root": str(raw), "val_fraction": 0.2, "train_fraction": 1.0, "image_size": 8},
        "model": {"width": 2, "depth": 2, "blocks": 1, "head": "mlp", "feat_dim": 8},
        "supcon": {"epochs": 2, "batch_size": 32, "knn_every": 1, "knn_k": 5, "optimizer": {"lr": 0.05, "scale_lr": False, "warmup_epochs": 0}},
        "ce": {"epochs": 2, "batch_size": 32, "optimizer": {"lr": 0.05, "scale_lr": False, "warmup_epochs": 0}},
        "linear": {"epochs": 2, "batch_size": 32, "augmentation": {"policy": "none"}, "optimizer": {"lr": 0.5}},
    }  # fmt: skip
    return merged_params(yaml.safe_load((REPO / "params.yaml").read_text()), tiny)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A prepared store (240 train, 60 val, 50 test images of 8x8) and tiny params."""
    root = tmp_path_factory.mktemp("sweep")
    write_brightness_mnist(root / "raw")
    raw_params = tiny_raw(root / "raw")
    params = parse_params(raw_params)
    prepared = root / "data/prepared/fashion_mnist"
    prepare_dataset("fashion_mnist", root=str(root / "raw"), download=False, image_size=8, val_fraction=0.2, fractions=[1.0], seed=0, out_dir=prepared)
    return {"root": root, "params": params, "raw_params": raw_params, "prepared": prepared}


def spec(tiny: dict, tmp_path: Path, name: str = "temperature", **settings) -> SweepSpec:
    defaults = dict(space="temperature", method="supcon", num_samples=3, max_concurrent=1, epochs=2, backend="optuna")
    return SweepSpec(
        folder=tmp_path / "sweeps" / name, prepared=tiny["prepared"], tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment="sweep-test", **{**defaults, **settings},
    )  # fmt: skip


def runs_of(s: SweepSpec) -> tuple:
    """(parent runs, child runs) in the sweep's MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=s.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(s.experiment).experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def check_children(client, children: list, parent_id: str, objective: str, epochs: int) -> None:
    """Each child: under the parent, its params, one objective point per epoch it trained, its end state."""
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        state = child.data.tags["sweep.end_state"]
        assert child.info.status == TERMINAL[state], (state, child.info.status)
        assert "supcon.temperature" in child.data.params
        steps = [m.step for m in client.get_metric_history(child.info.run_id, objective)]
        assert steps == list(range(1, len(steps) + 1)) and steps, steps
        assert len(steps) == (epochs if state == "finished" else len(steps)) and len(steps) <= epochs


# --- spaces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["supcon", "ce"])
def test_every_space_samples_within_its_bounds_and_gives_valid_params(tiny, method):
    import optuna

    base = tiny["params"]
    assert spaces_for("ce") == ["optimizer", "augmentation", "lr", "batch_size"]
    assert set(spaces_for("supcon")) == set(SPACES) == {"temperature", "optimizer", "augmentation", "lr", "batch_size", "head", "variant", "memory"}
    for name in spaces_for(method):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
        seen = set()
        for _ in range(25):
            trial = study.ask()
            DefineByRun(name, method, base)(trial)
            values = dict(trial.params)
            params = trial_params(base, values, section=method, epochs=3)  # validated as params.yaml is
            section = getattr(params, method)
            assert section.epochs == 3
            assert all(key.split(".")[0] in (method, "model") for key in values), values
            if name == "temperature":
                assert TEMPERATURE[0] <= section.temperature <= TEMPERATURE[1]
                seen.add(round(np.log10(section.temperature)))
            elif name in ("optimizer", "lr"):
                low, high = LR_RANGES[section.optimizer.name]
                assert low <= section.optimizer.lr <= high and values[f"{method}.optimizer.lr"] == section.optimizer.lr
                seen.add(section.optimizer.name if name == "optimizer" else round(float(np.log10(section.optimizer.lr)), 1))
            elif name == "augmentation":
                seen.add(section.augmentation.policy)
            elif name == "batch_size":
                assert section.batch_size in BATCH_SIZES
                seen.add(section.batch_size)
            elif name == "head":
                seen.add((params.model.head, params.model.feat_dim))
            elif name == "memory":
                assert section.memory.size in MEMORY_SIZES and section.memory.momentum in MEMORY_MOMENTA
                assert (f"{method}.memory.momentum" in values) == (section.memory.size > 0)  # no momentum without a queue
                seen.add((section.memory.size, section.memory.momentum))
            else:
                seen.add(section.variant)
            study.tell(trial, 0.5)
        assert len(seen) > 1, (name, seen)  # the space is really explored
        # The repository's params.yaml values lie in every space: a new sweep measures them first.
        from pipeline.config_schema import as_dict
        from pipeline.sweep.study import enqueue_configured

        project = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
        study = optuna.create_study(direction="maximize")
        configured = enqueue_configured(study, DefineByRun(name, method, project), as_dict(project))
        first = study.ask()
        DefineByRun(name, method, project)(first)
        assert configured and first.params == configured, name
    if method == "supcon":  # log-uniform over 0.03-1.0 reaches both decades
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        temps = []
        for _ in range(40):
            trial = study.ask()
            DefineByRun("temperature", "supcon", base)(trial)
            temps.append(trial.params["supcon.temperature"])
        assert min(temps) < 0.1 < max(temps)


def test_a_value_outside_a_keys_rule_is_refused_like_params_yaml(tiny):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="supcon.temperature"):
        trial_params(tiny["params"], {"supcon.temperature": -1.0}, section="supcon", epochs=1)


def test_sweep_train_fraction_is_a_nested_subset_and_a_fraction_that_empties_a_class_is_refused(tiny, tmp_path):
    from pipeline.data import load_prepared
    from pipeline.errors import ConfigError
    from pipeline.sweep.trial import train_images

    data, params = load_prepared(tiny["prepared"]), tiny["params"]
    half = train_images(data, params, 0.5)
    assert len(half) == len(data.train) // 2 and sorted(half.labels.bincount().tolist()) == [12] * 10
    assert len(train_images(data, params, None)) == len(data.train)  # null: data.train_fraction (1.0 here)
    small = parse_params(merged_params(tiny["raw_params"], {"sweep": {"train_fraction": 0.01}}))
    with pytest.raises(ConfigError, match="sweep.train_fraction"):
        run_sweep(small, spec(tiny, tmp_path), echo=lambda line: None)
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was opened


def test_a_store_without_val_is_refused_before_any_trial(tiny, tmp_path):
    from pipeline.errors import UserError

    no_val = tmp_path / "data/prepared/fashion_mnist"
    prepare_dataset("fashion_mnist", root=str(tiny["root"] / "raw"), download=False, image_size=8, val_fraction=0.0, fractions=[1.0], seed=0, out_dir=no_val)
    with pytest.raises(UserError, match="data.val_fraction = 0: a sweep scores its trials on the val split"):
        run_sweep(tiny["params"], dataclasses.replace(spec(tiny, tmp_path), prepared=no_val), echo=lambda line: None)
    assert not (tmp_path / "mlflow.db").exists()


# --- the CLI's bad input ---------------------------------------------------------------------------


def cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pipeline.sweep", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args, named, allowed",
    [
        (["--space", "temprature"], "--space", "temperature"),
        (["--space", "temperature", "--samples", "0"], "--samples", "integer >= 1"),
        (["--space", "temperature", "--samples", "many"], "--samples", "integer >= 1"),
        (["--space", "temperature", "--tempreature", "0.1"], "--tempreature", "--help"),
        (["--space", "temperature", "--backend", "slurm"], "--backend", "ray"),
        (["--space", "temperature", "--method", "ce"], "--space", "optimizer, augmentation, lr, batch_size"),
        (["--space", "head", "--method", "ce"], "--space", "optimizer, augmentation, lr, batch_size"),
        ([], "--space", "temperature, optimizer"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_and_what_is_allowed(tmp_path, args, named, allowed):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    done = cli(args, tmp_path)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert named in lines[0] and allowed in lines[0], lines[0]
    assert not (tmp_path / "sweeps").exists()


def test_help_and_list_name_every_space(tmp_path):
    for flag in ("--help", "--list"):
        done = cli([flag], tmp_path)
        assert done.returncode == 0
        assert all(f"  {name} " in done.stdout for name in SPACES), done.stdout


# --- the Ray backend -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (starting one takes seconds)."""
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    except Exception as err:  # pragma: no cover - only where Ray cannot start at all
        pytest.skip(f"Ray cannot start here: {err}")
    yield ray
    ray.shutdown()


def test_ray_six_trials_two_at_once_are_six_child_runs_under_one_parent(tiny, tmp_path, ray_session):
    s = spec(tiny, tmp_path, num_samples=6, max_concurrent=2, backend="ray")
    outcome = run_sweep(tiny["params"], s, echo=lambda line: None)

    assert not outcome.interrupted and len(outcome.ledger.trials) == 6
    client, parents, children = runs_of(s)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and parents[0].data.tags["sweep.space"] == "temperature"
    assert parents[0].info.run_id == outcome.ledger.mlflow_run_id
    assert len(children) == 6
    check_children(client, children, parents[0].info.run_id, "val/knn_top1", epochs=2)
    assert {c.info.run_id for c in children} == {t.mlflow_run_id for t in outcome.ledger.trials}
    assert any(c.data.tags["sweep.end_state"] == "finished" for c in children)
    finished = [t for t in outcome.ledger.trials if t.state == "finished"]
    assert all("val/probe_top1" in t.metrics for t in finished)  # the probe ran at the end
    # Every trial ran with its own value, proposed by TPE within the space.
    temps = [t.params["supcon.temperature"] for t in outcome.ledger.trials]
    assert len(set(temps)) == 6 and all(TEMPERATURE[0] <= t <= TEMPERATURE[1] for t in temps)
    assert tiny["params"].supcon.temperature in temps  # params.yaml's own value is always measured

    rows = list(csv.DictReader((s.folder / "results.csv").open()))
    assert len(rows) == 6 and {r["state"] for r in rows} <= {"finished", "stopped early"}
    summary = json.loads((s.folder / "summary.json").read_text())
    assert summary["space"] == "temperature" and summary["objective"] == "val/knn_top1" and summary["mlflow_run_id"] == parents[0].info.run_id
    assert summary["date"].endswith("+00:00") and summary["commit"]
    assert len(summary["trials"]) == 6
    for trial in summary["trials"]:
        assert set(trial) >= {"params", "objective", "state", "epochs"} and 0.0 <= trial["objective"] <= 1.0
    best = max((t for t in summary["trials"] if t["state"] == "finished"), key=lambda t: t["objective"])
    assert summary["best"]["objective"] == best["objective"] and summary["best"]["params"] == best["params"]
    assert (s.folder / "objective.png").stat().st_size > 1000
    assert outcome.dvc_line == f"dvc exp run -S 'supcon.temperature={best['params']['supcon.temperature']}'"
    # The report reads it as it reads any sweep.
    from pipeline.report.inputs import best_value, swept_key

    assert swept_key(summary) == "supcon.temperature" and best_value(summary, "supcon.temperature") == best["params"]["supcon.temperature"]


def test_ray_resume_runs_only_the_missing_trials_under_the_same_parent(tiny, tmp_path, ray_session):
    import optuna

    first = run_sweep(tiny["params"], spec(tiny, tmp_path, num_samples=3, max_concurrent=2, backend="ray"), echo=lambda line: None)
    s = spec(tiny, tmp_path, num_samples=5, max_concurrent=2, backend="ray")
    resumed = run_sweep(tiny["params"], s, resume=True, echo=lambda line: None)

    assert len(first.ledger.trials) == 3 and len(resumed.new_trials) == 2 and len(resumed.ledger.trials) == 5
    assert sorted(t.number for t in resumed.ledger.trials) == [0, 1, 2, 3, 4]  # ledger order: the order they ended
    client, parents, children = runs_of(s)
    assert len(parents) == 1 and len(children) == 5
    check_children(client, children, parents[0].info.run_id, "val/knn_top1", epochs=2)
    # TPE continued one study: it holds all five trials (not a second, blind search).
    study = optuna.load_study(study_name="temperature", storage=f"sqlite:///{s.folder / 'optuna.db'}")
    assert len(study.trials) == 5
    # Asking for what is already done runs nothing.
    again = run_sweep(tiny["params"], s, resume=True, echo=lambda line: None)
    assert again.new_trials == [] and len(runs_of(s)[2]) == 5


# --- the Optuna backend ----------------------------------------------------------------------------


def test_optuna_backend_prunes_and_resumes_from_its_study(tiny, tmp_path):
    import optuna

    s = spec(tiny, tmp_path, num_samples=3, backend="optuna")
    first = run_sweep(tiny["params"], s, echo=lambda line: None)
    assert first.ledger.trials[0].state == "finished"  # successive halving never stops the first trial
    assert first.ledger.trials[0].params == {"supcon.temperature": tiny["params"].supcon.temperature}  # the configured value first
    assert {t.state for t in first.ledger.trials} <= {"finished", "stopped early"}

    # Resumed with a pruner that stops every trial after its first report: two new trials only.
    more = spec(tiny, tmp_path, num_samples=5, backend="optuna")
    resumed = run_sweep(tiny["params"], more, resume=True, pruner=optuna.pruners.ThresholdPruner(lower=1.01), echo=lambda line: None)
    assert [(t.state, t.epochs) for t in resumed.new_trials] == [("stopped early", 1)] * 2
    study = optuna.load_study(study_name="temperature", storage=f"sqlite:///{s.folder / 'optuna.db'}")
    assert [t.state.name for t in study.trials][3:] == ["PRUNED", "PRUNED"] and len(study.trials) == 5
    client, parents, children = runs_of(s)
    assert len(parents) == 1 and len(children) == 5
    check_children(client, children, parents[0].info.run_id, "val/knn_top1", epochs=2)
    assert sorted(c.data.tags["sweep.end_state"] for c in children).count("stopped early") >= 2


class InterruptSecondTrial:
    """A pruner that presses Ctrl-C during the second trial."""

    def prune(self, study, trial) -> bool:
        if trial.number == 1:
            raise KeyboardInterrupt
        return False


def test_ctrl_c_keeps_the_finished_trials_and_resume_completes_the_sweep(tiny, tmp_path):
    s = spec(tiny, tmp_path, num_samples=2, epochs=2, backend="optuna")
    stopped = run_sweep(tiny["params"], s, pruner=InterruptSecondTrial(), echo=lambda line: None)

    assert stopped.interrupted and [t.state for t in stopped.ledger.trials] == ["finished"]
    client, parents, children = runs_of(s)
    assert parents[0].info.status == "KILLED" and len(children) == 2
    assert sorted(c.data.tags["sweep.end_state"] for c in children) == ["finished", "interrupted"]
    assert len(json.loads((s.folder / "summary.json").read_text())["trials"]) == 1

    done = run_sweep(tiny["params"], s, resume=True, echo=lambda line: None)
    assert not done.interrupted and len(done.new_trials) == 1 and len(done.ledger.trials) == 2
    client, parents, children = runs_of(s)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 3


# --- the CLI end to end ----------------------------------------------------------------------------


def test_cli_sweeps_ce_prints_the_dvc_line_and_refreshes_the_report(tiny, tmp_path):
    shutil.copytree(tiny["prepared"], tmp_path / "data/prepared/fashion_mnist")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny["raw_params"]))
    # The report's required inputs: the main comparison of every training seed (metrics/seeds/<seed>/).
    for name, data in (("linear_eval", {"test/top1": 0.86, "test/ece": 0.01, "method": "supcon", "mlflow_run_id": "p"}), ("train_ce", {"test/top1": 0.85, "test/ece": 0.03, "mlflow_run_id": "c"})):
        for folder in (tmp_path / f"metrics/seeds/{seed}" for seed in tiny["params"].run.seeds):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.json").write_text(json.dumps(data))

    done = cli(["--space", "lr", "--method", "ce", "--samples", "2", "--epochs", "1", "--backend", "optuna"], tmp_path, timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "dvc exp run -S 'ce.optimizer.lr=" in done.stdout
    summary = json.loads((tmp_path / "sweeps/lr-ce/summary.json").read_text())
    assert summary["method"] == "ce" and summary["objective"] == "val/top1" and len(summary["trials"]) == 2
    assert (tmp_path / "mlflow.db").is_file()  # the default store, at an absolute path in the project
    report = (tmp_path / "reports/summary.md").read_text()
    assert "sweeps/lr-ce" in report and "report: reports/summary.md" in done.stdout


def test_ctrl_c_on_the_ray_cli_keeps_what_ended_and_resume_finishes(tiny, tmp_path):
    """The real CLI on Ray: SIGINT once a trial has ended -> exit 130, the ended trials kept, the
    parent run KILLED, the resume command printed; --resume then runs only what is missing."""
    import signal
    import time

    shutil.copytree(tiny["prepared"], tmp_path / "data/prepared/fashion_mnist")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged_params(tiny["raw_params"], {"supcon": {"epochs": 2}})))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "pipeline.sweep", "--space", "temperature", "--samples", "4", "--epochs", "3"]
    state = tmp_path / "sweeps/temperature/state.json"
    # A background job ignores SIGINT and children inherit that: give the CLI the default back.
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text())["trials"]:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stdout[-2000:] + stderr[-3000:]
    assert "--resume" in stderr.strip().splitlines()[-1]
    kept = json.loads(state.read_text())["trials"]
    assert 1 <= len(kept) < 4
    summary = json.loads((tmp_path / "sweeps/temperature/summary.json").read_text())
    assert len(summary["trials"]) == len(kept)
    s = spec(tiny, tmp_path, num_samples=4, epochs=3, backend="ray")
    s = SweepSpec(**{**s.__dict__, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": tiny["params"].tracking.experiment})
    _, parents, _ = runs_of(s)
    assert [p.info.status for p in parents] == ["KILLED"]

    done = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ended = json.loads(state.read_text())["trials"]
    assert ended[: len(kept)] == kept and sum(t["state"] != "failed" for t in ended) == 4
    client, parents, children = runs_of(s)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sum(c.data.tags.get("sweep.end_state") != "interrupted" for c in children) == len(ended)


def test_import_pipeline_stays_light_ray_and_optuna_load_only_with_a_backend():
    probe = (
        "import sys, pipeline, pipeline.training, pipeline.sweep.driver, pipeline.sweep.spaces, stages.common, stages.report\n"
        "heavy = sorted(m for m in ('ray', 'optuna') if m in sys.modules)\n"
        "import pipeline.sweep.tune_backend, pipeline.sweep.optuna_backend\n"
        "print(heavy, 'ray' in sys.modules, 'optuna' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[0] == "[] False False", done.stdout  # even the backends import them only when a sweep runs
