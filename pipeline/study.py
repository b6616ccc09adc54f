"""`python -m pipeline.study configs/study_fashion_mnist.yaml`: the committed study, from a fresh clone.

A study answers the paper's claims with several training seeds. Its numbers must come from the
committed code and params alone (not from this checkout's models, caches or edits), so the runner:

1. refuses a checkout whose tracked files differ from HEAD (they would not be in the study);
2. clones HEAD into a scratch folder (`--workdir`), removes the committed results of the default
   run there (metrics/, plots/, the report, sweeps/: only what the study runs is reported), applies
   the study preset (`python -m stages.preset`), prepares the data (`dvc repro prepare`);
3. runs the temperature sweep (`python -m pipeline.sweep --space temperature`), then the whole
   pipeline (`dvc repro`: every seed's main comparison, robustness, reduced-data cells, compare,
   report), then the sweep's confirmation (`--confirm K`: the top K temperatures besides 0.1, and 0.1,
   at full length with every seed; at 0.1 it takes the main comparison's runs) and the report again, so
   that the temperature verdict has the seeds it needs; with `--only STAGE ...`, those DVC stages
   (and what they depend on) and the report, no sweep: the stages left out are "not run" there;
4. copies the report and every file it read into `--out` (reports/study by default), with
   study.json: the commit, the preset, the commands, each step's wall seconds, the machine.

`--out` is replaced only once every step has passed: a failed or interrupted study leaves the
previous one whole (the scratch clone is kept for a look and removed on success). Steps run with
this interpreter's environment first on PATH, so DVC stages use the same venv.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pipeline import atomic
from pipeline.errors import UserError
from pipeline.one_line_exit import exit_in_one_line

PROG = "python -m pipeline.study"
COMMITTED_RESULTS = ("metrics", "plots", "reports/summary.md", "reports/figures", "sweeps")
"""The default run's results as committed (the reference): removed from the clone before any step,
so the study's report reads only what the study itself ran (with --only, a stage left out would
otherwise show the default's numbers under the study's params)."""
REPORTED = ("reports/summary.md", "reports/figures", "metrics", "plots", "sweeps/temperature/summary.json", "sweeps/temperature/confirm.json", "params.yaml", "dvc.lock")
"""What the study folder keeps: the report, every metrics file it read, and what made them."""


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]


def steps(preset: str, confirm: int, overlay: Path | None = None, only: list[str] | None = None) -> list[Step]:
    """The study's commands in order; `only`: these DVC stages (and what they depend on) instead of
    the whole pipeline, and no sweep (a study of other claims than the temperature's)."""
    python = sys.executable
    sized = [Step("overlay", [python, "-m", "stages.preset", str(overlay)])] if overlay else []
    if only:
        return [
            Step("preset", [python, "-m", "stages.preset", preset]),
            *sized,
            Step("prepare", ["dvc", "repro", "prepare"]),
            Step("repro", ["dvc", "repro", *only]),
            Step("report", ["dvc", "repro", "--single-item", "--force", "report"]),
        ]
    return [
        Step("preset", [python, "-m", "stages.preset", preset]),
        *sized,
        Step("prepare", ["dvc", "repro", "prepare"]),
        Step("sweep", [python, "-m", "pipeline.sweep", "--space", "temperature"]),
        Step("repro", ["dvc", "repro"]),
        # After `dvc repro`: at T = 0.1 the confirmation takes the main comparison's up-to-date
        # runs instead of training them again (pipeline/sweep/confirm_reuse.py).
        Step("confirm", [python, "-m", "pipeline.sweep", "--space", "temperature", "--confirm", str(confirm)]),
        # The sweep's summary is not a DVC dep of the report: force the report stage alone.
        Step("report", ["dvc", "repro", "--single-item", "--force", "report"]),
    ]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{repo}: git {args[0]} failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}); run the study from the project's git checkout")
    return done.stdout.strip()


def committed_head(repo: Path, preset: str) -> str:
    """HEAD's commit, after checking that the study would run what this checkout shows."""
    if _git(repo, "status", "--porcelain", "--untracked-files=no"):
        raise UserError("tracked files differ from HEAD: commit them first (a study runs the committed code only; `git status` lists them)")
    if not _git(repo, "ls-files", preset):
        raise UserError(f"{preset}: not a committed file; a study's preset must be committed (available: {', '.join(_git(repo, 'ls-files', 'configs').split())})")
    return _git(repo, "rev-parse", "HEAD")


def step_environment(repo: Path, clone: Path) -> dict[str, str]:
    """This venv first on PATH; the clone's packages first on PYTHONPATH (the venv's editable
    install points at the checkout, and Ray's trial workers import from there otherwise); MLflow
    runs into the checkout's store, not the clone's (which is deleted), unless
    MLFLOW_TRACKING_URI or params' tracking.uri names one."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["PYTHONPATH"] = os.pathsep.join([str(clone), *filter(None, [os.environ.get("PYTHONPATH")])])
    configured = (yaml.safe_load((repo / "params.yaml").read_text()) or {}).get("tracking", {}).get("uri")
    if not env.get("MLFLOW_TRACKING_URI") and not configured:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{(repo / 'mlflow.db').resolve()}"
    return env


def clear_committed_results(clone: Path) -> None:
    for relative in COMMITTED_RESULTS:
        path = clone / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_steps(clone: Path, plan: list[Step], env: dict[str, str]) -> dict[str, float]:
    seconds = {}
    for step in plan:
        print(f"study: {step.name}: {' '.join(step.command)}", flush=True)  # the steps' own output follows
        started = time.perf_counter()
        done = subprocess.run(step.command, cwd=clone, env=env, check=False)
        seconds[step.name] = round(time.perf_counter() - started, 1)
        if done.returncode != 0:
            raise UserError(f"step {step.name} failed (exit {done.returncode}) after {seconds[step.name]:.0f} s; the clone is kept at {clone}")
    return seconds


def machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu_model": model, "cpus": os.cpu_count(), "python": platform.python_version()}


def collect(clone: Path, out: Path, record: dict) -> None:
    """Copy the reported files into a new folder beside `out`, then swap it in."""
    with atomic.atomic_directory(out) as staging:
        for relative in REPORTED:
            source = clone / relative
            if not source.exists():
                continue  # confirm.json exists only after a confirmation
            target = staging / Path(relative).relative_to("reports") if relative.startswith("reports/") else staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        (staging / "study.json").write_text(json.dumps(record, indent=2) + "\n")  # steps in the order they ran


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    cli.add_argument("preset", help="a committed study preset, e.g. configs/study_fashion_mnist.yaml")
    cli.add_argument("--out", type=Path, default=Path("reports/study"), help="where the study's report and metrics go (default reports/study)")
    cli.add_argument("--confirm", type=int, default=1, help="the confirmation's K: the sweep's top K temperatures other than 0.1, and 0.1 (default 1)")
    cli.add_argument("--overlay", type=Path, default=None, help="a second preset applied after the study's, e.g. smaller sizes for a try-out (recorded in study.json; the committed study has none)")
    cli.add_argument("--workdir", type=Path, default=None, help="scratch folder for the clone (default: a new folder under /tmp)")
    cli.add_argument("--only", nargs="+", default=None, metavar="STAGE", help="run these DVC stages (and their dependencies) instead of the whole pipeline, and no sweep; the report is built from what they wrote")
    args = cli.parse_args(argv)
    repo = Path.cwd()
    with exit_in_one_line(interrupted=f"interrupted; {args.out} is unchanged"):
        if args.confirm < 1:
            raise UserError(f"--confirm: expected an integer >= 1, got {args.confirm}")
        commit = committed_head(repo, args.preset)
        overlay = args.overlay.resolve() if args.overlay else None
        if overlay and not overlay.is_file():
            raise UserError(f"--overlay {args.overlay}: no such file")
        clone = (args.workdir or Path(f"/tmp/supcon-study-{commit[:12]}-{os.getpid()}")).resolve()
        if clone.exists():
            raise UserError(f"--workdir {clone}: already exists; give a new folder")
        subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
        clear_committed_results(clone)
        started = datetime.now(timezone.utc)
        if args.only:
            known = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
            unknown = [name for name in args.only if name.split("@")[0] not in known]
            if unknown:
                raise UserError(f"--only {unknown[0]}: not a stage of dvc.yaml (stages: {', '.join(sorted(known))})")
        plan = steps(args.preset, args.confirm, overlay, args.only)
        seconds = run_steps(clone, plan, step_environment(repo, clone))
        record = {
            "commit": commit, "preset": args.preset, "confirm_k": None if args.only else args.confirm, "only": args.only, "overlay": overlay.read_text() if overlay else None,
            "commands": {step.name: " ".join(["python" if part == sys.executable else part for part in step.command]) for step in plan},
            "step_seconds": seconds, "total_seconds": round(sum(seconds.values()), 1),
            "started": started.isoformat(timespec="seconds"), "machine": machine(),
        }  # fmt: skip
        collect(clone, (repo / args.out).resolve(), record)
    shutil.rmtree(clone)
    print(f"study: {args.out} from commit {commit[:12]} in {record['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
