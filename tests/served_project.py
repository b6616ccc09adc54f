"""Session fixtures for the two multi-machine set-ups of README.md, built once for both tests.

`tracking_server` is the README's `mlflow server` (sqlite store, artifacts served from its own
folder), started from a fresh folder on a free port of 127.0.0.1. `served_project` is a git + DVC
copy of the project with a tiny params.yaml that logs to that server as a node would (the README's
`export MLFLOW_TRACKING_URI=...`): `make repro`, a 2-trial Ray sweep with both trials at once,
`dvc exp run` (the report again, as a DVC experiment), and a commit of what git carries. test_mlflow_server.py checks what reached the
server and test_dvc_remote.py pushes, clones and pulls the same project: one tiny pipeline serves
both, which keeps them cheap on 2-core CI machines.

The heavy imports (torch, through test_stages) happen inside the fixtures: conftest.py imports
this module for every test session.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from readme_commands import readme_command, substituted, words

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
STARTUP_S = 300  # a loaded 2-core machine has needed about 2 minutes for 4 uvicorn workers
MAKE_FILES = ("Makefile", "requirements.txt", "requirements-dev.txt", "constraints.txt", "pyproject.toml")
PROJECT_FILES = ("dvc.yaml", ".gitignore", *MAKE_FILES, "scripts/apt_install.sh")  # the script: `make`'s dataset target
EPOCHS = 2  # SupCon, CE and the probe: the curves have more than one point, the stages stay short
SMALLER = {  # test_stages' tiny params cut further: every stage still runs, each a little shorter
    "supcon": {"epochs": EPOCHS}, "ce": {"epochs": EPOCHS}, "linear": {"epochs": EPOCHS},
    "reduced": {"methods": ["ce"]}, "robustness": {"corruptions": ["gaussian_noise"]},
}  # fmt: skip
SWEEP = ["-m", "pipeline.sweep", "--space", "temperature", "--samples", "2", "--max-concurrent", "2", "--epochs", "1"]


@dataclass(frozen=True)
class TrackingServer:
    url: str
    folder: Path  # its working folder: mlflow.db and the served artifact root ./mlartifacts
    startup_s: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(port: int, folder: Path) -> list[str]:
    """The README's `mlflow server` line: its port, $PWD expanded, this venv's mlflow."""
    readme = readme_command("mlflow server --host")
    store = "sqlite:///$PWD/mlflow.db"
    changed = substituted(readme, {"5000": str(port), store: store.replace("$PWD", str(folder)), "mlflow": str(VENV / "bin/mlflow")})
    return words(changed)


def wait_for_health(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=10):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer on /health within {STARTUP_S} s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (uvicorn's parent and workers), then SIGKILL."""
    for signum, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(server.pid, signum)
            server.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory):
    """`mlflow server` as the README starts it on the tracking machine, in a fresh folder."""
    folder = tmp_path_factory.mktemp("tracking")
    port, log = free_port(), folder / "server.log"
    started = time.monotonic()
    with log.open("w") as out:
        server = subprocess.Popen(server_command(port, folder), cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, server, log)
        yield TrackingServer(url, folder, time.monotonic() - started)
    finally:
        stop(server)


def tracking_env(url: str) -> dict[str, str]:
    """The README's `export MLFLOW_TRACKING_URI=http://127.0.0.1:5000` with this server's port."""
    readme = readme_command("export MLFLOW_TRACKING_URI=http://127.0.0.1")
    port = url.rsplit(":", 1)[1]
    export = words(substituted(readme, {"MLFLOW_TRACKING_URI=http://127.0.0.1:5000": f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"}))
    assert export[0] == "export", export
    return dict(assignment.split("=", 1) for assignment in export[1:])


def project_env(url: str) -> dict[str, str]:
    """test_stages' environment, logging to the server, and no Ray cluster to join."""
    from test_stages import env

    environment = {k: v for k, v in env().items() if k != "RAY_ADDRESS"}
    return {**environment, **tracking_env(url)}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`cmd` to the end; a failure shows its output."""
    done = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
    return done


def write_project(repo: Path, raw: Path) -> None:
    """The project's code, pipeline and build files, and a tiny params.yaml on a raw Fashion-MNIST."""
    import yaml

    from fixtures_data import write_fashion_mnist
    from test_stages import tiny_params

    write_fashion_mnist(raw, train_per_class=20, test_per_class=5)
    repo.mkdir()
    for name in PROJECT_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)  # copy2: the files keep their times, so make sees the venv as built
    for package in ("stages", "pipeline"):
        shutil.copytree(REPO / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(raw, **SMALLER)))


def init_repository(repo: Path, env: dict[str, str]) -> None:
    """git + DVC, with the project's .dvcignore; .venv links to this venv (`make repro` runs it)."""
    run(["git", "init", "-q"], repo, env)
    run([str(VENV / "bin/dvc"), "init", "-q"], repo, env)
    shutil.copy2(REPO / ".dvcignore", repo)
    (repo / ".venv").symlink_to(VENV)
    with (repo / ".git/info/exclude").open("a") as exclude:
        exclude.write("/.venv\n")  # a link, which the project's `.venv/` pattern (folders only) does not match
    commit(repo, env, "tiny project")


def commit(repo: Path, env: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", message], repo, env)


def make_repro(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The README's `make repro`, PATH without the venv: the Makefile must put it first itself.
    The venv must be up to date: otherwise make would reinstall into this session's venv."""
    command = words(readme_command("make repro"))
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=repo, env=env, timeout=60).returncode != 0:
        pytest.fail(f"{VENV} is older than the requirements files: run `make setup` first")
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    return run(command, repo, {**env, "PATH": path}, timeout=900)


def cpu_s() -> float:
    """CPU seconds of this process's ended children (and theirs): what a step costs on an idle machine."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(seconds: dict, name: str, step, *args):
    """`step(*args)`, its wall and CPU seconds recorded in `seconds`."""
    started, cpu = time.monotonic(), cpu_s()
    result = step(*args)
    seconds[name] = {"wall": round(time.monotonic() - started, 1), "cpu": round(cpu_s() - cpu, 1)}
    return result


@pytest.fixture(scope="session")
def served_project(tracking_server, tmp_path_factory) -> dict:
    """The tiny project built against the tracking server: `make repro`, a 2-trial concurrent Ray
    sweep (which refreshes the report outside DVC), `dvc exp run` to bring dvc.lock back in line
    (it reruns the report, as an experiment whose MLflow run carries the experiment's name), then
    a commit of everything git carries (metrics, plots, report, the sweep's results)."""
    root = tmp_path_factory.mktemp("served")
    repo, raw, env = root / "repo", root / "raw", project_env(tracking_server.url)
    seconds: dict[str, float] = {"server_startup": round(tracking_server.startup_s, 1)}
    timed(seconds, "setup", write_project, repo, raw)
    timed(seconds, "git_dvc_init", init_repository, repo, env)
    repro = timed(seconds, "make_repro", make_repro, repo, env)
    sweep = timed(seconds, "sweep", run, [sys.executable, *SWEEP], repo, env, 600)
    baseline = run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    again = timed(seconds, "dvc_exp_run", run, [str(VENV / "bin/dvc"), "exp", "run"], repo, env, 600)
    experiment = run([str(VENV / "bin/dvc"), "exp", "list", "--name-only"], repo, env).stdout.split()
    commit(repo, env, "results")
    print(f"served_project seconds: {seconds}")
    return {
        "root": root, "repo": repo, "raw": raw, "url": tracking_server.url, "server_folder": tracking_server.folder,
        "make_repro": repro.stdout, "sweep": sweep.stdout, "dvc_exp_run": again.stdout, "seconds": seconds, "epochs": EPOCHS,
        "dvc_experiments": experiment, "baseline": baseline,
    }  # fmt: skip
