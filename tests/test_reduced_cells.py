"""Reduced-data cells and the training stages' one-line errors, through the real stages on a tiny
prepared Fashion-MNIST (160 labelled train images, 16 per class; the helpers of test_stages.py):
the budget under torchrun, what a cell records, cell names as DVC renders them, a missing best.pt
and a warm-up longer than the run.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fixtures_data import write_fashion_mnist
from test_stages import REPO, run, stage, tiny_params

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """The raw files and a folder with the prepared store, made once."""
    root = tmp_path_factory.mktemp("reduced_cells")
    write_fashion_mnist(root / "raw", train_per_class=20, test_per_class=5)
    (root / "base" / "params.yaml").parent.mkdir()
    (root / "base" / "params.yaml").write_text(yaml.safe_dump(tiny_params(root / "raw")))
    stage("prepare", root / "base")
    return {"root": root, "raw": root / "raw"}


def folder_with(prepared: dict, name: str, **sections: dict) -> Path:
    """A fresh folder holding the prepared store and tiny params with `sections` merged on top."""
    folder = prepared["root"] / name
    shutil.copytree(prepared["root"] / "base" / "data", folder / "data")
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(prepared["raw"], **sections)))
    return folder


def cell_metrics(folder: Path, name: str) -> dict:
    return json.loads((folder / "metrics" / "reduced" / f"{name}.json").read_text())


def one_error_line(done) -> str:
    """The one `error:` line a failed stage ends with (MLflow may log first, creating its database)."""
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], done.stderr[-3000:]
    return lines[-1]


def dvc_outs(folder: Path) -> dict[str, list[str]]:
    """reduced_data@<cell> -> its outputs, as DVC renders dvc.yaml's matrix from folder/params.yaml."""
    from dvc.repo import Repo

    rendered = folder / "dvc_render"
    rendered.mkdir()
    shutil.copy(REPO / "dvc.yaml", rendered)
    shutil.copy(folder / "params.yaml", rendered)
    Repo.init(rendered, no_scm=True)
    stages = Repo(rendered).index.stages
    return {s.name: [out.def_path for out in s.outs] for s in stages if s.name.startswith("reduced_data@")}


# ---- the budget under torchrun (2 gloo processes) ----


@pytest.mark.parametrize(
    ("fraction", "batch"),
    [
        (0.0625, 5),  # 10 images: 5 per process; with a budget for one process, a batch of 10 did not fit
        (0.25, 16),  # 40 images: 20 per process, 1 step per epoch; with a budget for one, 2 epochs made 2 steps
    ],
)
def test_under_torchrun_a_cell_takes_at_least_its_steps_in_every_process_and_records_them(prepared, fraction, batch):
    folder = folder_with(prepared, f"torchrun_{fraction}", reduced={"fractions": [fraction], "steps": 4, "min_epochs": 1})

    run([*TORCHRUN, "-m", "stages.reduced_data", "--fraction", str(fraction), "--method", "ce", "--seed", "0"], folder)

    budget = cell_metrics(folder, f"ce-{fraction}-seed0")["budget"]
    assert budget.pop("time_s") > 0
    assert budget == {"steps": 4, "processes": 2, "epochs": 4, "batch_size": batch, "images_seen": 4 * batch * 2}
    state = torch.load(folder / f"models/reduced/ce-{fraction}-seed0/ce/last.pt", weights_only=False)
    assert state["config"]["world_size"] == 2 and state["history"][-1]["train/steps"] == 4


# ---- one process: what a cell records, its names, one load of the store ----


def test_a_cell_writes_what_dvc_declares_loads_the_store_once_and_records_what_ran(prepared, monkeypatch):
    """fractions [0.1, 1] (YAML's int 1): the cell `--fraction 1` in this process."""
    from stages import cli, common, reduced_data

    folder = folder_with(prepared, "whole", reduced={"fractions": [0.1, 1], "steps": 4, "min_epochs": 1}, supcon={"epochs": 1})
    outs = dvc_outs(folder)["reduced_data@1-supcon-0"]
    monkeypatch.chdir(folder)
    loads = []
    real_load = common.load_prepared
    monkeypatch.setattr(common, "load_prepared", lambda *args, **kwargs: loads.append(args) or real_load(*args, **kwargs))
    threads = torch.get_num_threads()
    try:
        reduced_data.run_cell(cli.read_params(Path("params.yaml")), reduced_data._parse(["--fraction", "1", "--method", "supcon", "--seed", "0"]))
    finally:
        torch.set_num_threads(threads)

    assert len(loads) == 1
    assert all(Path(out).exists() for out in outs), outs
    result = json.loads(Path(outs[1]).read_text())
    # 160 images, batch 16: 10 steps an epoch; 4 steps -> the minimum epoch; the probe: linear.epochs 2.
    assert result["cell"] == "supcon-1-seed0" and result["fraction"] == 1
    manifest = json.loads(next(Path("data/prepared").glob("*/manifest.json")).read_text())
    assert result["test/images"] == manifest["split_sizes"]["test"]  # what the report's test-set ± is over
    budget = result["budget"]
    # The cell's compute is pretraining and probe; the metrics' train/time_s is the probe's alone.
    assert budget["time_s"] == pytest.approx(budget["pretrain_time_s"] + budget["probe_time_s"]) and budget["pretrain_time_s"] > 0
    assert budget.pop("probe_time_s") == pytest.approx(result["train/time_s"]) and budget.pop("pretrain_time_s") < budget.pop("time_s")
    assert budget == {
        "steps": 10, "processes": 1, "epochs": 1, "batch_size": 16, "images_seen": 10 * 16 * 2,
        "probe_steps": 20, "probe_epochs": 2, "probe_batch_size": 16,
    }  # fmt: skip


def test_the_stage_and_the_report_name_cells_as_dvc_renders_them(prepared, monkeypatch, tmp_path):
    from stages import cli, reduced_data, report

    folder = folder_with(prepared, "names", reduced={"fractions": [0.1, 1]})
    rendered = {stem for outs in dvc_outs(folder).values() for out in outs if out.startswith("metrics/") for stem in [Path(out).stem]}
    params = cli.read_params(folder / "params.yaml")

    named = {reduced_data._listed(params, reduced_data._parse(["--fraction", f, "--method", m, "--seed", "0"])).name for f in ("0.1", "1", "1.0") for m in ("supcon", "ce")}
    asked = []

    def read_inputs(folders, seeds, cells, long_tail_cells=None, small_batch_cells=None):
        asked.append(cells)
        raise SystemExit  # the names are all this test needs

    monkeypatch.setattr(report, "read_inputs", read_inputs)
    with pytest.raises(SystemExit):
        report.report(params)

    assert rendered == {"supcon-0.1-seed0", "ce-0.1-seed0", "supcon-1-seed0", "ce-1-seed0"}
    assert named == rendered and asked == [rendered]


# ---- one-line errors of the training stages ----


def test_a_missing_best_checkpoint_is_one_line_and_keeps_the_reported_metrics(prepared):
    folder = folder_with(prepared, "no_best", ce={"epochs": 1})
    stage("train_ce", folder)
    reported = (folder / "metrics/seeds/0/train_ce.json").read_bytes()
    (folder / "models/seeds/0/ce/best.pt").unlink()

    line = one_error_line(stage("train_ce", folder, check=False))

    assert line.startswith("error: models/seeds/0/ce/best.pt: missing") and "delete models/seeds/0/ce/last.pt" in line
    assert (folder / "metrics/seeds/0/train_ce.json").read_bytes() == reported


def test_a_warm_up_longer_than_the_run_is_one_line_naming_the_keys(prepared):
    folder = folder_with(prepared, "long_warmup", ce={"epochs": 1, "optimizer": {"warmup_epochs": 10}}, reduced={"fractions": [0.5], "steps": 4, "min_epochs": 1})

    line = one_error_line(stage("train_ce", folder, check=False))
    assert line.startswith("error: ce.optimizer.warmup_epochs = 10.0 is not allowed: expected at most the 1 epochs") and "(ce.epochs)" in line

    cell = run([sys.executable, "-m", "stages.reduced_data", "--fraction", "0.5", "--method", "ce", "--seed", "0"], folder, check=False)
    line = one_error_line(cell)
    assert line.startswith("error: ce.optimizer.warmup_epochs = 10.0 is not allowed: expected at most the 1 epochs") and "reduced.steps and reduced.min_epochs" in line
    assert not (folder / "metrics").exists()
