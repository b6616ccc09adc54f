"""The README's DVC remote ("Sharing results between machines"): push the tiny project's outputs
to a folder remote, clone the repository elsewhere, `dvc pull`, and the clone is complete.

Complete means: `dvc status` is clean, `dvc repro` reruns nothing, every output of dvc.lock is
there, `dvc gc --workspace` keeps what the workspace uses, and the report and a robustness run
rebuild from what was pulled to the same results. What the clone needs and DVC does not carry
(metrics, plots, the report and its figures, the sweep's summary) must come through git, so this
also checks .gitignore. The project is tests/served_project.py's (shared with
test_mlflow_server.py); the clone logs to its own sqlite store, so the server's runs stay as the
other test expects them.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from readme_commands import readme_command, substituted, words
from served_project import project_env, run

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date."


def clone_env(served_project: dict, clone: Path) -> dict[str, str]:
    """The project's environment with a store of the clone's own instead of the server: one
    sqlite file beside the clone, for it and its copies (a new store costs seconds of set-up)."""
    return {**project_env(served_project["url"]), "MLFLOW_TRACKING_URI": f"sqlite:///{clone.parent}/clone-mlflow.db"}


def readme(prefix: str, changes: dict[str, str] | None = None) -> list[str]:
    return words(substituted(readme_command(prefix), changes or {}))


@pytest.fixture(scope="module")
def pulled(served_project, tmp_path_factory) -> Path:
    """The README's remote (a local folder), `dvc push`, a fresh `git clone`, `dvc pull` in it."""
    repo, root = served_project["repo"], tmp_path_factory.mktemp("remote")
    env = project_env(served_project["url"])
    run(readme("dvc remote add -d shared", {"/mnt/shared/supcon-dvc": str(root / "shared")}), repo, env)
    run(["git", "commit", "-qam", "the shared DVC remote"], repo, env)  # the clone knows the remote
    run(readme("dvc push"), repo, env, timeout=300)
    clone = root / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], root, env)
    run(readme("dvc pull"), clone, clone_env(served_project, clone), timeout=300)
    return clone


def declared_outputs(folder: Path) -> list[Path]:
    lock = yaml.safe_load((folder / "dvc.lock").read_text())
    return [folder / out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]


def test_a_pulled_clone_is_up_to_date_and_reproduces_nothing(served_project, pulled):
    env = clone_env(served_project, pulled)
    outputs = declared_outputs(pulled)
    assert len(outputs) > 10 and not [str(p) for p in outputs if not p.exists()]
    assert UP_TO_DATE in run(["dvc", "status"], pulled, env).stdout
    repro = run(readme("dvc repro"), pulled, env, timeout=300).stdout
    assert "Running stage" not in repro and UP_TO_DATE in repro, repro
    assert run(["git", "status", "--porcelain"], pulled, env).stdout == ""


def test_dvc_gc_keeps_what_the_workspace_uses(served_project, pulled):
    env = clone_env(served_project, pulled)
    done = run(readme("dvc gc --workspace"), pulled, env, stdin="y\n")  # the answer to its "Are you sure"
    assert "No unused 'repo' cache to remove." in done.stdout + done.stderr  # the clone holds only what it uses
    assert not [str(p) for p in declared_outputs(pulled) if not p.exists()]
    assert UP_TO_DATE in run(["dvc", "status"], pulled, env).stdout
    assert "Cache and remote 'shared' are in sync." in run(["dvc", "status", "--cloud"], pulled, env).stdout


def rebuilt(served_project: dict, pulled: Path, folder: Path, stage: list[str]) -> Path:
    """A copy of the pulled clone, with `stage` run in it (logging to the clone's store)."""
    shutil.copytree(pulled, folder, symlinks=True)
    run([sys.executable, "-m", *stage], folder, clone_env(served_project, pulled), timeout=300)
    return folder


def test_the_report_rebuilds_from_what_was_pulled(served_project, pulled, tmp_path):
    folder = rebuilt(served_project, pulled, tmp_path / "report", ["stages.report"])
    summary = (folder / "reports/summary.md").read_text()
    assert summary == (pulled / "reports/summary.md").read_text()  # the same text, from what git and DVC carried
    assert "sweeps/temperature" in summary  # the sweep's section: its summary.json came through git
    figures = sorted(p.name for p in (folder / "reports/figures").glob("*.png"))
    assert figures and figures == sorted(p.name for p in (pulled / "reports/figures").glob("*.png"))


def scores(folder: Path) -> dict:
    """metrics/seeds/0/robustness.json without what differs between two runs of one model."""
    found = json.loads((folder / "metrics/seeds/0/robustness.json").read_text())
    return {k: v for k, v in found.items() if k not in ("mlflow_run_id", "scored_images_per_s", "environment")}


def test_robustness_rescores_the_pulled_models_to_the_same_numbers(served_project, pulled, tmp_path):
    folder = rebuilt(served_project, pulled, tmp_path / "robustness", ["stages.robustness", "--seed", "0"])
    assert scores(folder) == scores(pulled)
    for name in ("robustness_severity", "robustness_corruptions"):
        assert (folder / f"plots/seeds/0/{name}.csv").read_text() == (pulled / f"plots/seeds/0/{name}.csv").read_text()
