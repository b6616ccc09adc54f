"""dvc.yaml and dvc.lock say the truth: every project module a stage can load is one of its deps,
the training stages rerun on exactly the params that can change their result, and the committed
reference results (dvc.lock, metrics/) were made with the committed params and code."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import RESULT_NEUTRAL_KEYS, parse_params
from pipeline.config_schema import as_dict, flatten
from pipeline.methods import METHODS
from pipeline.provenance import PROJECT_PACKAGES

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
    # the same, at an imbalance factor (stages/long_tail.py trains through reduced_data's train_cell)
    "long_tail": ("data", "model", "supcon", "ce", "linear"),
}
# Keys of those sections a stage's result does not depend on: a cell's labelled fraction and its
# pretraining epochs come from its own values and the budget rule (reduced.*), listed instead; a
# reduced cell trains on the balanced split (data.imbalance reset), a long-tailed one at its own factor.
IMBALANCE = {"data.imbalance.factor", "data.imbalance.profile", "data.imbalance.class_order"}
NOT_KEYING = {"reduced_data": {"data.train_fraction", "supcon.epochs", *IMBALANCE}, "long_tail": {"supcon.epochs", "data.imbalance.factor"}}
ALSO_KEYING = {"reduced_data": {"reduced.steps", "reduced.min_epochs", "run.seed"}, "long_tail": {"reduced.steps", "reduced.min_epochs", "run.seed"}}


def stage_module(name: str) -> str:
    return DVC[name]["cmd"].removeprefix("python -m ").split()[0]  # a matrix stage's cmd has arguments


# What a stage can load, by reading import statements (ast), not by importing it: imports inside
# functions count (pipeline/training.py loads data/jpeg_batches.py only for image files), and
# so do the method modules pipeline.methods.method() loads through importlib for the config
# sections the stage trains. Importing a stage module would see neither.


def module_file(module: str) -> Path | None:
    """The project source file of a module name (relative to the repo), or None if it is not one."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = Path(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if (REPO / candidate).is_file():
            return candidate
    return None


def _imports(module: str, tree: ast.AST) -> set[str]:
    """Module names an import statement anywhere in `tree` may load, with their parent packages."""
    package = module if module_file(module).name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..data import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import submodule`
    return {".".join(name.split(".")[: i + 1]) for name in names for i in range(name.count(".") + 1)}


def _dynamic_imports(tree: ast.AST) -> list[int]:
    """Lines of importlib.import_module / __import__ calls: the import graph cannot see their target."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
    ]


def trained_sections(module: str) -> set[str]:
    """Config sections a stage module trains: its `trains="..."` arguments (stages/common.py's
    training_stage) and `.then("...")` calls (a second training in the same run), and those of
    another stage's module it imports (long_tail trains through reduced_data's functions)."""
    tree = ast.parse((REPO / module_file(module)).read_text())
    stage_modules = {stage_module(name) for name in DVC} - {module}
    sections = set().union(*(trained_sections(name) for name in sorted(_imports(module, tree) & stage_modules)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        args = [kw.value for kw in node.keywords if kw.arg == "trains"]
        if getattr(node.func, "attr", None) == "then" and node.args:
            args.append(node.args[0])
        for arg in args:
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (
                f"{module} line {arg.lineno}: the section a stage trains must be a literal, so that dvc.yaml's deps can be checked"
            )
            sections.add(arg.value)
    return sections


def loadable_modules(module: str, sections: set[str]) -> dict[str, Path]:
    """Every project module `module` can load (transitively, function-level imports included), by
    name, with pipeline.methods' importlib imports resolved to the methods of `sections` only."""
    # Where a module imports by name at run time, what it can import (module -> names).
    dynamic = {"pipeline.methods": {METHODS[s].split(":")[0] for s in sections}}
    found, todo = {}, [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in found:
            continue
        found[name] = path
        tree = ast.parse((REPO / path).read_text())
        lines = _dynamic_imports(tree)
        assert not lines or name in dynamic, f"{path} lines {lines}: an import by name; teach tests/test_dvc_yaml.py what it loads"
        todo += sorted(_imports(name, tree) | dynamic.get(name, set()))
    return found


def stage_sources(name: str) -> list[Path]:
    module = stage_module(name)
    return sorted(loadable_modules(module, trained_sections(module)).values())


_LIST_IMPORTS = """
import importlib, sys
importlib.import_module(sys.argv[1])
for section in sys.argv[2:]:
    importlib.import_module("pipeline.methods").method(section)
loaded = set(sys.modules)
from pipeline.provenance import loaded_sources
for name, path in loaded_sources().items():
    if name in loaded:
        print(path)
"""


def imported_project_files(module: str, sections: set[str]) -> list[Path]:
    """Files of the project modules that importing `module` and setting up the methods of
    `sections` (as the stage does before training) load, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, module, *sorted(sections)], cwd=REPO, capture_output=True, text=True, check=True)
    return [Path(line).resolve().relative_to(REPO) for line in done.stdout.split()]


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_module_a_stage_can_load_is_a_dep(name):
    files = stage_sources(name)
    assert Path(stage_module(name).replace(".", "/") + ".py") in files
    missing = [str(f) for f in files if not covered(f, DVC[name]["deps"])]
    assert not missing, f"dvc.yaml stage {name} can load these but does not list them in deps: {missing}"


@pytest.mark.parametrize("name", sorted(DVC))
def test_the_import_analysis_sees_every_module_a_stage_loads(name):
    """What a fresh interpreter loads for the stage (its module, then its methods) is a subset of
    what the static analysis found: the analysis misses no kind of import this code uses."""
    module = stage_module(name)
    unseen = set(imported_project_files(module, trained_sections(module))) - set(stage_sources(name))
    assert not unseen, f"stage {name} loads modules the import analysis does not see: {sorted(map(str, unseen))}"


def test_a_stage_depends_only_on_the_methods_it_trains():
    """pretrain_supcon does not rerun on an edit of the CE baseline's method, nor train_ce on SupCon's."""
    assert trained_sections("stages.pretrain_supcon") == {"supcon"}
    assert trained_sections("stages.reduced_data") == {"supcon", "ce", "linear"}
    assert trained_sections("stages.long_tail") == {"supcon", "ce", "linear"}
    supcon = {str(p) for p in stage_sources("pretrain_supcon")}
    assert "pipeline/methods/contrastive.py" in supcon and "pipeline/methods/cross_entropy.py" not in supcon
    assert "pipeline/methods/cross_entropy.py" not in DVC["pretrain_supcon"]["deps"]
    assert "pipeline/methods/contrastive.py" not in DVC["train_ce"]["deps"]


def test_the_analysis_follows_imports_inside_functions():
    assert Path("pipeline/data/jpeg_batches.py") in stage_sources("train_ce")  # pipeline/training.py: _batch_source


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
    # Exactly the stages dvc.yaml defines, as DVC expands them (train_ce@0, reduced_data@0.01-supcon-0):
    # an entry of a stage that no longer exists (or a seed or cell no longer run) is stale.
    done = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True, check=True)
    stages = set(done.stdout.split())
    assert set(lock) <= stages, f"dvc.lock holds stages dvc.yaml no longer defines: {sorted(set(lock) - stages)}; remove them"
    assert stages <= set(lock), f"dvc.lock is missing stages {sorted(stages - set(lock))}: rerun `dvc repro` and commit dvc.lock"
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
