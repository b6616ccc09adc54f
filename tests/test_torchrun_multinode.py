"""torchrun across machines: two nodes on localhost train what one machine with two processes trains.

README.md's "Several GPUs and machines (torchrun)" says the training stages run under torchrun as
they are, and that on several machines one starts the same command on every node. Its multi-node
command is started twice at once here, as two nodes of one process each that meet at a c10d
rendezvous on 127.0.0.1 (gloo on the CPU) in one project folder (the README's filesystem every
node mounts); its single-node command runs with two processes in a copy of the project. SupCon
pretraining must come out bit-identical, since ranks, not nodes, decide each process's share:
the same weights and metrics, world size 2 in the checkpoint, and one MLflow run, from rank 0.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fixtures_data import write_fashion_mnist
from readme_commands import readme_command, substituted, words
from test_stages import TIMING, all_runs, env, run, tiny_params, without_timing

pytestmark = pytest.mark.slow

TORCHRUN = str(Path(sys.executable).parent / "torchrun")  # this venv's, whatever PATH says
TIMEOUT_S = 240
UNTIMED = (*TIMING, "mlflow_run_id")
"""Metrics that differ between two runs of the same training: wall-clock rates and the run's id."""


def prepared_project(root: Path) -> Path:
    """A folder with a tiny params.yaml (2 SupCon epochs) and the prepared Fashion-MNIST fixture."""
    write_fashion_mnist(root / "raw", train_per_class=20, test_per_class=5)
    folder = root / "multinode"
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(root / "raw", supcon={"epochs": 2})))
    run([sys.executable, "-m", "stages.prepare"], folder)
    return folder


def free_port() -> int:
    """A port free on 127.0.0.1 now, for the rendezvous to bind a moment later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_command() -> list[str]:
    """The README's multi-node command for two nodes of one process each, meeting on localhost."""
    command = substituted(
        readme_command("torchrun --nnodes="),
        {
            "torchrun": TORCHRUN,
            "--nnodes=4": "--nnodes=2",
            "--nproc_per_node=8": "--nproc_per_node=1",
            "--rdzv-endpoint=node0.example.org:29400": f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        },
    )
    return words(command)


def single_node_command() -> list[str]:
    """The README's one-machine command with two processes."""
    command = substituted(
        readme_command("torchrun --nproc_per_node=8 -m stages.pretrain_supcon"),
        {"torchrun": TORCHRUN, "--nproc_per_node=8": "--nproc_per_node=2"},
    )
    return words(command)


def run_together(commands: list[list[str]], cwd: Path, logs: Path) -> list[str]:
    """Start every command at once in `cwd`, wait for all, and return their stdout (or fail with
    the stderr of one that failed). Output goes to files: a node blocked on a full pipe would
    hang the other at its next collective."""
    environment = {**env(), "OMP_NUM_THREADS": "1"}  # one thread a process: up to four share the test machine's cores
    logs.mkdir()
    started: list[subprocess.Popen] = []
    try:
        for index, command in enumerate(commands):
            with (logs / f"{index}.out").open("w") as out, (logs / f"{index}.err").open("w") as err:
                # Its own session: a kill reaches torchrun's workers too, and nothing else.
                started.append(subprocess.Popen(command, cwd=cwd, env=environment, stdout=out, stderr=err, start_new_session=True))
        for process in started:
            process.communicate(timeout=TIMEOUT_S)
    finally:
        for process in started:  # e.g. a node left waiting at the rendezvous when the other failed
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for index, process in enumerate(started):
        if process.returncode != 0:
            pytest.fail(f"{shlex.join(process.args)} exited {process.returncode}\n{(logs / f'{index}.err').read_text()[-3000:]}")
    return [(logs / f"{index}.out").read_text() for index in range(len(started))]


def untimed_metrics(folder: Path) -> dict:
    result = json.loads((folder / "metrics/seeds/0/pretrain_supcon.json").read_text())
    return {k: v for k, v in result.items() if k not in UNTIMED}


def checkpoint(folder: Path) -> dict:
    return torch.load(folder / "models/seeds/0/supcon/last.pt", weights_only=False)


def test_two_nodes_train_what_two_processes_on_one_machine_train(tmp_path):
    multinode = prepared_project(tmp_path)
    single = tmp_path / "single"
    shutil.copytree(multinode, single)

    node = node_command()  # one command, started on both "nodes" (the README: the same on every node)
    node_outputs = run_together([node, node], multinode, tmp_path / "logs-multinode")
    (single_output,) = run_together([single_node_command()], single, tmp_path / "logs-single")

    assert "".join(node_outputs).count("pretrain_supcon: method supcon") == 1  # rank 0 prints, on one node
    assert single_output.count("pretrain_supcon: method supcon") == 1
    spread, alone = checkpoint(multinode), checkpoint(single)
    assert spread["config"]["world_size"] == alone["config"]["world_size"] == 2
    assert spread["epoch"] == alone["epoch"] == 2
    assert without_timing(spread["history"]) == without_timing(alone["history"])  # every epoch, not only the last
    assert spread["model"].keys() == alone["model"].keys()
    assert [name for name, tensor in alone["model"].items() if not torch.equal(spread["model"][name], tensor)] == []
    assert untimed_metrics(multinode) == untimed_metrics(single)
    for folder in (multinode, single):
        (logged,) = all_runs(folder)  # rank 0 alone logs, wherever it ran
        assert logged.info.status == "FINISHED"
        assert logged.info.run_id == json.loads((folder / "metrics/seeds/0/pretrain_supcon.json").read_text())["mlflow_run_id"]
