"""A sweep on a real two-node Ray cluster, started on this machine with the README's commands.

`export RAY_AUTH_MODE=token`, `ray get-auth-token --generate`, `ray start --head` and
`ray start --address` (README "Ray cluster", with this machine's address for the head's, free
ports, and one CPU and a named custom resource per node so placement can be checked), then the
README's `python -m pipeline.sweep --address auto` joins it (RAY_ADDRESS names the cluster, as
the README allows). Ray refuses a worker node when told the machine is no cluster, and maps
127.0.0.1 to the machine's address, so for the test's length the two nodes listen on that
address, behind Ray's token. Trials run on both nodes (each trial's node in results.csv and its
MLflow child run), every trial is a child of one parent run, and the results equal those of the
same sweep on a local Ray. Teardown kills only the two `ray start --block` process groups this
test started and their strays, found by their own temp dir: never every Ray on the machine.
"""

import csv
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from readme_commands import readme_command, substituted, words
from stages.preset import merged_params
from test_sweep import tiny  # noqa: F401  (the module fixture: a prepared brightness Fashion-MNIST)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLES = 2  # params.yaml's optimizer and one seeded random proposal, one per node; 1 epoch: no ASHA decision, so nothing depends on timing


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def node_ports(head: bool) -> list[str]:
    """Ports that default to fixed numbers, which two nodes on one machine (or another Ray here)
    would both claim."""
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
    names += ["--dashboard-port"] if head else []
    return [f"{name}={port}" for name, port in zip(names, free_ports(len(names)))]


def start_node(command: str, temp: Path, resource: str, head: bool, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group (so teardown can stop exactly it)."""
    extra = [f"--temp-dir={temp}", "--num-cpus=1", f"--resources={json.dumps({resource: 1})}", "--disable-usage-stats", "--block", *node_ports(head)]
    return subprocess.Popen(
        [*words(command), *extra], env=cluster_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


@functools.cache
def cluster_home() -> Path:
    """The cluster's home folder, made on first use (not when pytest imports this file): the head
    writes its token to ~/.ray/auth_token there, the other processes read it (one machine: one
    home), and the user's own ~/.ray is left alone. The `cluster` fixture removes it."""
    return Path(tempfile.mkdtemp(prefix="ray-home-"))


def cluster_env() -> dict[str, str]:
    """The README's shell on every node: its `export` line applied, in the test's home folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_TOKEN")}
    name, value = words(readme_command("export RAY_AUTH_MODE="))[1].split("=", 1)
    env.update({name: value}, HOME=str(cluster_home()), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def machine_address() -> str:
    """This machine's address as Ray picks it (what it would put in place of 127.0.0.1)."""
    probe = "import ray; print(ray.util.get_node_ip_address())"
    return subprocess.run([sys.executable, "-c", probe], env=cluster_env(), capture_output=True, text=True, check=True, timeout=120).stdout.strip()


NODES = textwrap.dedent(
    """
    import json, ray
    ray.init(address="auto", logging_level="ERROR")
    print(json.dumps({n["NodeID"][:8]: {"address": n["NodeManagerAddress"], "resources": sorted(n["Resources"])} for n in ray.nodes() if n["Alive"]}))
    """
)


def wait_for_nodes(address: str, count: int, started: list, timeout: float = 240) -> dict:
    """The cluster's live nodes, once `count` have joined (node id prefix -> address, resources)."""
    deadline = time.time() + timeout
    while True:
        for process, log in started:
            if process.poll() is not None:
                pytest.fail(f"ray start exited {process.returncode}: {log.read_text()[-3000:]}")
        done = subprocess.run([sys.executable, "-c", NODES], env={**cluster_env(), "RAY_ADDRESS": address}, capture_output=True, text=True, timeout=120)
        nodes = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else {}
        if len(nodes) >= count:
            return nodes
        if time.time() > deadline:
            pytest.fail(f"the cluster at {address} has {len(nodes)} of {count} nodes after {timeout} s: {done.stderr[-2000:]}")
        time.sleep(2)


def stop(process: subprocess.Popen, temp: Path) -> None:
    """Kill the process group of one `ray start --block` (SIGTERM would first drain the node for
    30 s), then any process of this cluster that left the group: found by the cluster's own temp
    dir in its command line, so no other Ray on the machine is touched."""
    import psutil

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    strays = [p for p in psutil.process_iter(["cmdline"]) if any(str(temp) in part for part in (p.info["cmdline"] or []))]
    for stray in strays:
        stray.kill()
    psutil.wait_procs(strays, timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a worker node on 127.0.0.1, one CPU each, resources head_node / worker_node."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("cluster")
    (port,) = free_ports(1)
    ip = machine_address()
    address = f"{ip}:{port}"
    head_line = readme_command("ray start --head")
    head_cmd = substituted(head_line, {"ray": str(BIN / "ray"), "--port=6379": f"--port={port}", "--node-ip-address=10.0.0.1": f"--node-ip-address={ip}"})
    worker_cmd = substituted(readme_command("ray start --address="), {"ray": str(BIN / "ray"), "--address=10.0.0.1:6379": f"--address={address}"})
    # Ray's sockets live in its temp dir, and a Unix socket path must fit in 107 bytes: pytest's
    # folders are too deep, so a short one of the test's own under /tmp.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    token = [word for word in words(readme_command("ray get-auth-token --generate")) if not word.startswith(">")]  # stdout: DEVNULL below
    subprocess.run([str(BIN / "ray"), *token[1:]], env=cluster_env(), stdout=subprocess.DEVNULL, check=True, timeout=120)
    head = start_node(head_cmd, temp / "head", "head_node", True, root / "head.log")
    worker = None
    try:
        wait_for_nodes(address, 1, [(head, root / "head.log")])
        worker = start_node(worker_cmd, temp / "worker", "worker_node", False, root / "worker.log")
        nodes = wait_for_nodes(address, 2, [(head, root / "head.log"), (worker, root / "worker.log")])
        yield {"address": address, "nodes": nodes, "root": root, "ip": ip}
    finally:
        for process in (worker, head):
            if process is not None:
                stop(process, temp)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(cluster_home(), ignore_errors=True)


def project(tiny, folder: Path) -> Path:  # noqa: F811
    (folder / "data/prepared").mkdir(parents=True)
    os.symlink(tiny["prepared"], folder / "data/prepared/fashion_mnist")
    params = merged_params(tiny["raw_params"], {"sweep": {"epochs": 1}})
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def sweep_command() -> str:
    """The README's cluster sweep, sized for two 1-CPU nodes (sizes only: concurrency, samples)."""
    line = readme_command(".venv/bin/python -m pipeline.sweep --space optimizer --address auto")
    return substituted(line, {".venv/bin/python": sys.executable, "8": "2", "32": str(SAMPLES)})


def run_sweep_cli(argv: list[str], folder: Path, address: str | None) -> subprocess.CompletedProcess:
    env = cluster_env() | ({"RAY_ADDRESS": address} if address else {})
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def rows(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "sweeps/optimizer/results.csv").open()))


def outcome(row: dict) -> tuple:
    """What a trial tried and scored, independent of where and when it ran."""
    return (row["supcon.optimizer.name"], row["supcon.optimizer.lr"], row["state"], row["epochs"], row["objective"], row["val/probe_top1"])


def test_a_sweep_on_a_two_node_cluster_uses_both_nodes_and_matches_a_local_run(tiny, tmp_path, cluster):  # noqa: F811
    on_cluster = project(tiny, tmp_path / "cluster")
    printed = run_sweep_cli(words(sweep_command()), on_cluster, cluster["address"]).stdout
    local = project(tiny, tmp_path / "local")
    run_sweep_cli([word for word in words(sweep_command()) if word not in ("--address", "auto")], local, None)  # its own local Ray

    trials = rows(on_cluster)
    assert len(trials) == SAMPLES and all(t["state"] == "finished" for t in trials)
    # Placement: both nodes ran trials, and each recorded node is one of the cluster's.
    role = {f"{node['address']}/{node_id}": [r for r in node["resources"] if r.endswith("_node")] for node_id, node in cluster["nodes"].items()}
    nodes = {t["node"] for t in trials}
    assert nodes <= set(role) and sorted(r for node in nodes for r in role[node]) == ["head_node", "worker_node"], (nodes, role)
    assert all(node.startswith(f"{cluster['ip']}/") for node in nodes) and f"on {cluster['ip']}/" in printed
    # The same trials, the same results as with a local Ray.
    assert sorted(map(outcome, trials)) == sorted(map(outcome, rows(local)))
    # MLflow: one parent, a child per trial carrying its node.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{on_cluster / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and parents[0].data.params["sweep.address"] == "auto"
    assert len(children) == SAMPLES and {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.data.tags["sweep.node"] for c in children} == nodes
