"""The README's sweep as a user runs it on one machine: what it prints, and where its local Ray
listens.

Ray and Tune print a configuration box, a TensorBoard hint, an authentication notice, colour
codes and a `SystemExit` traceback for every trial ASHA stops; the sweep sends all of that to
sweeps/<name>/ray.log and prints its own lines (pipeline/sweep/ray_output.py). On Linux, Ray
2.60 replaces 127.0.0.1 with the machine's address and listens on every interface unless told
this machine is no cluster (pipeline/sweep/tune_backend.py, connect).
"""

import csv
import ipaddress
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from readme_commands import readme_command, substituted, words
from stages.preset import merged_params
from test_sweep import tiny  # noqa: F401  (the module fixture: a prepared brightness Fashion-MNIST)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 4
# The sweep's own lines: each trial starting and ending, the results table it prints at the end,
# the best configuration, its `dvc exp run` line, the report refresh.
OWN_LINES = [
    r"Ray's own output \(cluster, Tune, workers\): \S+/sweeps/temperature/ray\.log",
    r"trial \d+ started: supcon\.temperature=[\d.e-]+",
    r"trial \d+ (finished|stopped early) after \d epoch\(s\) on 127\.0\.0\.1/[0-9a-f]{8}: supcon\.temperature=[\d.e-]+ -> val/knn_top1 [\d.]+",
    r"\S+/sweeps/temperature: \d+ trial\(s\) with a result, 0 failed; MLflow parent run [0-9a-f]{32}",
    r"trial,supcon\.temperature,state,.*",
    r"\d+,[\d.e-]+,(finished|stopped early),.*",
    r"best \(trial \d+, val/knn_top1 [\d.]+\): \{'supcon\.temperature': [\d.e-]+\}",
    r"train it in the full pipeline: dvc exp run -S 'supcon\.temperature=[\d.e-]+'",
    r"report not refreshed: .*",
]


@pytest.fixture(scope="module")
def readme_sweep(tiny, tmp_path_factory) -> dict:  # noqa: F811
    """The README's sweep command in a project holding the fixture's prepared data, with params'
    sweep section sized for the fixture (SAMPLES trials of 2 epochs, one at a time)."""
    folder = tmp_path_factory.mktemp("readme_sweep")
    (folder / "data/prepared").mkdir(parents=True)
    os.symlink(tiny["prepared"], folder / "data/prepared/fashion_mnist")
    params = merged_params(tiny["raw_params"], {"sweep": {"num_samples": SAMPLES, "epochs": 2, "max_concurrent": 1}})
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    command = substituted(readme_command(".venv/bin/python -m pipeline.sweep --space temperature"), {".venv/bin/python": sys.executable})
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(words(command), cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"folder": folder, "stdout": done.stdout, "stderr": done.stderr}


def test_the_sweep_prints_its_own_progress_and_nothing_else(readme_sweep):
    lines = readme_sweep["stdout"].splitlines()
    strangers = [line for line in lines if not any(re.fullmatch(pattern, line) for pattern in OWN_LINES)]
    assert not strangers, strangers
    # stderr: at most MLflow's note that it created the new project's sqlite store
    noise = [line for line in readme_sweep["stderr"].splitlines() if not re.search(r" INFO mlflow\.store\.db\.utils: (Creating initial|Updating database)", line)]
    assert not noise, noise
    started = [line for line in lines if " started: " in line]
    ended = [line for line in lines if re.match(r"trial \d+ (finished|stopped early) ", line)]
    assert len(started) == len(ended) == SAMPLES


def test_ray_output_is_in_its_log_and_a_stopped_trial_is_not_an_error(readme_sweep):
    folder = readme_sweep["folder"] / "sweeps/temperature"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    # Whether ASHA stops one of these few trials depends on their scores; either way no trial is
    # an error, and the terminal check above holds for what a stopped trial prints as well.
    assert {row["state"] for row in rows} <= {"finished", "stopped early"} and all(row["error"] == "" for row in rows)
    log = (folder / "ray.log").read_text()
    assert "Configuration for experiment" in log  # Tune's box went there, not to the terminal
    assert "supcon epoch 1/2" in log  # and the workers' own lines
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["trials"]) == SAMPLES and summary["settings"]["searcher"].startswith("optuna TPE")


LISTENERS = textwrap.dedent(
    """
    import json, psutil
    from pipeline.sweep.tune_backend import connect
    connect(None)
    import ray
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    sockets = [c for p in processes for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    print(json.dumps({"addresses": sorted({c.laddr.ip for c in sockets}), "nodes": [n["NodeManagerAddress"] for n in ray.nodes()]}))
    ray.shutdown()
    """
)


def loopback(address: str) -> bool:
    """127.0.0.1, ::1, or 127.0.0.1 as an IPv6 dual-stack socket shows it (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def test_the_local_ray_listens_on_the_loopback_address_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    env.update(PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", LISTENERS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["addresses"] and all(loopback(address) for address in found["addresses"]), found
    assert found["nodes"] == ["127.0.0.1"]
