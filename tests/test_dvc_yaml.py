"""dvc.yaml and dvc.lock say the truth: every module a stage imports is one of its deps, the
training stages rerun on exactly the params that can change their result, and the committed
reference results (dvc.lock, metrics/) were made with the committed params and code."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import RESULT_NEUTRAL_KEYS, parse_params
from pipeline.config_schema import as_dict, flatten

REPO = Path(__file__).resolve().parents[1]
# A foreach (per-seed) stage's definition is under `do:`; a matrix stage's is the stage itself.
DVC = {name: stage.get("do", stage) for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()}
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# Sections whose params key a training stage's result (stages/<name>.py: run_config).
KEY_SECTIONS = {
    "pretrain_supcon": ("data", "model", "supcon"),
    "train_ce": ("data", "model", "ce"),
    "linear_eval": ("data", "linear"),
    # a cell trains supcon then its probe, or ce (stages/reduced_data.py)
    "reduced_data": ("data", "model", "supcon", "ce", "linear"),
}
# Keys of those sections a stage's result does not depend on: a cell's labelled fraction and its
# pretraining epochs come from its own values and the budget rule (reduced.*), listed instead.
NOT_KEYING = {"reduced_data": {"data.train_fraction", "supcon.epochs"}}
ALSO_KEYING = {"reduced_data": {"reduced.steps", "reduced.min_epochs", "run.seed"}}

_LIST_IMPORTS = """
import importlib, sys
importlib.import_module(sys.argv[1])
loaded = set(sys.modules)
from pipeline.provenance import loaded_sources
for name, path in loaded_sources().items():
    if name in loaded:
        print(path)
"""


def imported_project_files(module: str) -> list[Path]:
    """Files of the project modules that importing `module` loads, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, module], cwd=REPO, capture_output=True, text=True, check=True)
    return [Path(line).resolve().relative_to(REPO) for line in done.stdout.split()]


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_module_a_stage_imports_is_a_dep(name):
    module = DVC[name]["cmd"].removeprefix("python -m ").split()[0]  # a matrix stage's cmd has arguments
    files = imported_project_files(module)
    assert Path(module.replace(".", "/") + ".py") in files
    missing = [str(f) for f in files if not covered(f, DVC[name]["deps"])]
    assert not missing, f"dvc.yaml stage {name} imports these but does not list them in deps: {missing}"


def _covered_keys(stage: str) -> set[str]:
    """Leaf keys of the full validated params that the stage's `params:` list covers."""
    keys = set(flatten(as_dict(parse_params(PARAMS))))
    listed = DVC[stage].get("params", [])
    return {k for k in keys if any(k == p or k.startswith(p + ".") for p in listed)}


@pytest.mark.parametrize("stage", sorted(KEY_SECTIONS))
def test_training_stages_rerun_on_exactly_the_params_that_key_their_result(stage):
    covered_keys = _covered_keys(stage)
    neutral = {k for k in covered_keys if k in RESULT_NEUTRAL_KEYS or k.startswith("tracking.") or k == "run.threads"}
    neutral |= covered_keys & NOT_KEYING.get(stage, set())
    assert not neutral, f"{stage} reruns on settings that cannot change its model: {sorted(neutral)}"
    result_keys = set(flatten(as_dict(parse_params(PARAMS))))
    wanted = {k for k in result_keys if k.split(".")[0] in KEY_SECTIONS[stage] and k not in RESULT_NEUTRAL_KEYS and k in _in_params_yaml()}
    wanted = (wanted - NOT_KEYING.get(stage, set())) | ALSO_KEYING.get(stage, set())
    assert wanted <= covered_keys, f"{stage} does not rerun when these change: {sorted(wanted - covered_keys)}"


def _in_params_yaml() -> set[str]:
    return set(flatten(PARAMS))


def test_dvc_lock_records_the_committed_params():
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    # A matrix stage is locked once per cell: reduced_data@0.01-supcon-0.
    assert {name.split("@")[0] for name in lock} == set(DVC), "dvc.lock is missing stages: rerun `dvc repro` and commit dvc.lock"
    for stage, entry in lock.items():
        recorded = flatten(entry.get("params", {}).get("params.yaml", {}))
        current = flatten(PARAMS)
        stale = {k: (v, current.get(k)) for k, v in recorded.items() if current.get(k) != v}
        assert not stale, f"dvc.lock's {stage} ran with other params than params.yaml ({stale}): rerun `dvc repro` and commit"


def test_committed_reference_results_come_from_the_committed_code_and_params():
    """`dvc status`, less what a fresh clone lacks (data, models): no code dep or param changed."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    stale = {}
    for stage, changes in json.loads(done.stdout or "{}").items():
        for change in changes if isinstance(changes, list) else []:
            for dep, state in change.get("changed deps", {}).items():
                if dep.startswith(("pipeline", "stages")) and state != "deleted":
                    stale[f"{stage}: {dep}"] = state
            for file, params in change.get("changed params", {}).items():
                stale.update({f"{stage}: {file} {key}": state for key, state in params.items()})
    assert not stale, f"the committed results (dvc.lock, metrics/) were not made with this code/params: {stale}; rerun `make repro` and commit"


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_param_a_stage_lists_is_in_params_yaml(name):
    """DVC refuses to run a stage whose listed param is only a default in pipeline/config.py."""
    present = _in_params_yaml()
    missing = [p for p in DVC[name].get("params", []) if p not in present and not any(k.startswith(p + ".") for k in present)]
    assert not missing, f"dvc.yaml stage {name} lists params that params.yaml does not hold: {missing}"
