"""A run's key (what a checkpoint must match to be resumed): params that can change the model,
the code that ran, the inputs it read; never paths, thread counts, tracking or the machine."""

import shutil
import sys
import types
from pathlib import Path

import torch
import yaml

from pipeline import losses, provenance  # noqa: F401  (losses: imported, so its digest is in the key)
from pipeline.config import parse_params
from stages import common

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _params(**overrides: dict):
    raw = {section: dict(values) if isinstance(values, dict) else values for section, values in PARAMS.items()}
    for section, values in overrides.items():
        raw[section] = {**raw[section], **values}
    return parse_params(raw)


def test_settings_that_cannot_change_the_model_are_not_in_the_key(tmp_path):
    base = common.run_config(_params(), "data", "model", "supcon", inputs={"prepared": "x"}, seed=0)
    moved = common.run_config(
        _params(data={"root": str(tmp_path), "download": True}, run={"threads": 1}, supcon={"knn_every": 5}, tracking={"experiment": "other"}),
        "data", "model", "supcon", inputs={"prepared": "x"}, seed=0,
    )  # fmt: skip
    assert moved == base
    assert "root" not in base["data"] and "knn_every" not in base["supcon"]
    changed = common.run_config(_params(supcon={"temperature": 0.5}), "data", "model", "supcon", inputs={"prepared": "x"}, seed=0)
    assert changed["supcon"]["temperature"] == 0.5 and changed != base
    # the training seed keys the result; the data seed (run.seed) is in the prepared data's digest
    assert common.run_config(_params(), "data", "model", "supcon", inputs={"prepared": "x"}, seed=1) != base


def test_the_key_holds_a_digest_of_every_imported_project_module():
    code = common.run_config(_params(), "model", inputs={}, seed=0)["code"]
    assert {"pipeline.losses", "pipeline.engine", "stages.common"} <= set(code)
    assert code["pipeline.losses"] == provenance.file_digest(REPO / "pipeline" / "losses.py")


def test_code_digest_changes_with_a_module_source(tmp_path, monkeypatch):
    source = tmp_path / "extra.py"
    source.write_text("X = 1\n")
    module = types.ModuleType("pipeline._test_extra")
    module.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "pipeline._test_extra", module)
    before = provenance.code_digests()["pipeline._test_extra"]
    source.write_text("X = 2\n")
    assert provenance.code_digests()["pipeline._test_extra"] != before


def test_directory_digest_depends_on_content_not_location(tmp_path):
    first = tmp_path / "a" / "store"
    first.mkdir(parents=True)
    (first / "x.npy").write_bytes(b"123")
    (first / "sub").mkdir()
    (first / "sub" / "y.json").write_text("{}")
    second = tmp_path / "elsewhere" / "deeper" / "store"
    shutil.copytree(first, second)
    assert provenance.directory_digest(first) == provenance.directory_digest(second)
    (second / "x.npy").write_bytes(b"124")
    assert provenance.directory_digest(first) != provenance.directory_digest(second)


def test_a_run_resumed_on_another_kind_of_machine_says_so(capsys):
    env = {"env/torch": "2.14.1", "env/cpu_isa": "avx2"}
    fresh = common._machine_tags(env, resume=None)
    assert fresh["git_commit"] and fresh["env/cpu_isa"] == "avx2" and fresh["machine"]
    same = common._machine_tags(env, resume={"machine": fresh["machine"]})
    assert "git_commit" not in same and "resumed_on_other_machine" not in same and "resumed_at_commit" in same
    assert capsys.readouterr().out == ""
    moved = common._machine_tags(env, resume={"machine": "0123456789abcdef"})
    assert moved["resumed_on_other_machine"] == fresh["machine"] and moved["resumed_env/cpu_isa"] == "avx2"
    assert "resuming on another kind of machine" in capsys.readouterr().out


def test_resume_state_reports_a_finished_run_loudly(tmp_path, capsys):
    from pipeline import checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    key = {"seed": 0}
    checkpoint.save(tmp_path / "last.pt", model=model, optimizer=optimizer, scheduler=scheduler, epoch=3, history=[], spec={}, config=key, run_id="abc")
    state = common.resume_state(tmp_path / "last.pt", key, epochs=3)
    assert state["epoch"] == 3
    assert "already finished by MLflow run abc" in capsys.readouterr().out
