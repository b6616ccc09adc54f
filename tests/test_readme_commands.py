"""Every shell command of README.md is run by a test, or is listed here with the reason it is not.

`RUN_BY` and `NOT_RUN` are the one registry: a README command (continuations joined, comment
dropped; see tests/readme_commands.py) is named by a prefix that resolves to it as
`readme_command` resolves it (the command equal to the prefix, else the one command starting with
it). A command in neither fails, and so does an entry that no longer names a README command.

A file in `RUN_BY` must take its command from the README: a call `readme_command("<literal>")`
(or of a helper of that file that passes its first parameter on to `readme_command`) whose
literal resolves to that same command (so the test runs what the README says, changing
only what a CPU test machine must: host, port, folders, sizes, with `substituted`). `make test`
is the exception: CI itself runs it (.ci/run).
"""

import ast
import re
from pathlib import Path

import pytest

from readme_commands import readme_command, readme_commands

REPO = Path(__file__).resolve().parents[1]
CI = ".ci/run"

RUN_BY: dict[str, str] = {
    "make repro": "tests/served_project.py",
    "make test": CI,
    "make mlflow-ui": "tests/test_stages.py",
    "mlflow server --host 127.0.0.1": "tests/served_project.py",
    "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000": "tests/served_project.py",
    "python -m stages.preset configs/cifar10_resnet50.yaml": "tests/test_presets.py",
    "dvc repro": "tests/test_presets.py",
    "python -m stages.preset --estimate": "tests/test_estimate.py",
    "python -m stages.preset configs/cifar10_resnet50.yaml --estimate": "tests/test_estimate.py",
    "dvc repro prepare": "tests/test_presets.py",
    "torchrun --nproc_per_node=8 -m stages.pretrain_supcon": "tests/test_presets.py",
    "torchrun --nproc_per_node=8 -m stages.linear_eval": "tests/test_presets.py",
    "torchrun --nproc_per_node=8 -m stages.train_ce": "tests/test_presets.py",
    "dvc commit -f": "tests/test_presets.py",
    "torchrun --nnodes=4": "tests/test_torchrun_multinode.py",
    "dvc remote add -d shared": "tests/test_dvc_remote.py",
    "dvc push": "tests/test_dvc_remote.py",
    "dvc pull": "tests/test_dvc_remote.py",
    "dvc gc --workspace": "tests/test_dvc_remote.py",
    ".venv/bin/python -m pipeline.sweep --space temperature": "tests/test_sweep_output.py",
    "export RAY_AUTH_MODE=": "tests/test_sweep_cluster.py",
    "ray get-auth-token --generate": "tests/test_sweep_cluster.py",
    "ray start --head": "tests/test_sweep_cluster.py",
    "ray start --address=": "tests/test_sweep_cluster.py",
    ".venv/bin/python -m pipeline.sweep --space optimizer --address auto": "tests/test_sweep_cluster.py",
}

NOT_RUN: dict[str, str] = {
    "rm -rf models && make repro && .venv/bin/python -m stages.check_reference": (
        "retrains the default pipeline from scratch: about 14 minutes on 2 cores, over CI's time budget. "
        "Its parts run on tiny projects: `make repro` in tests/served_project.py, `dvc repro` of every stage "
        "in tests/test_stages.py, and `python -m stages.check_reference` against a commit in tests/test_reference.py"
    ),
    "ssh -N -f -L": (
        "needs a second machine running an SSH server to tunnel to; tests/served_project.py logs to the "
        "tracking server through the address the tunnel gives (http://127.0.0.1:5000) on one machine"
    ),
    "MLFLOW_AUTH_ADMIN_PASSWORD=... mlflow server --app-name basic-auth": (
        "needs a TLS reverse proxy with a real host name and certificate in front of it (basic auth over plain "
        "HTTP would hand out the password), and an admin password the README leaves to the user"
    ),
    "export MLFLOW_TRACKING_URI=https://mlflow.example.org": (
        "needs the TLS reverse proxy of the basic-auth server: a real host name (mlflow.example.org is a "
        "placeholder) with a certificate, and the user and password the README leaves to the user"
    ),
}

# What a reason must name: the thing CI does not have, or the time it does not have.
MISSING = ("GPU", "second machine", "SSH server", "TLS", "certificate", "host name", "cluster", "minutes", "hours")


def resolved(prefix: str) -> list[str]:
    """The README commands `prefix` names, as `readme_command` picks them (exact, else by prefix)."""
    commands = readme_commands()
    return [c for c in commands if c == prefix] or [c for c in commands if c.startswith(prefix)]


def _called_name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else call.func.attr if isinstance(call.func, ast.Attribute) else None


def takers(tree: ast.AST, name: str = "readme_command") -> set[str]:
    """`name` and the functions of the file that pass their first parameter on to a taker as its
    first argument (a helper such as `def readme(prefix, changes): ... readme_command(prefix) ...`)."""
    found = {name}
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args]
    while True:
        more = {
            function.name
            for function in functions
            for call in ast.walk(function)
            if isinstance(call, ast.Call) and _called_name(call) in found and call.args
            and isinstance(call.args[0], ast.Name) and call.args[0].id == function.args.args[0].arg
        }  # fmt: skip
        if more <= found:
            return found
        found |= more


def literal_calls(path: Path, name: str = "readme_command") -> list[str]:
    """The string literals passed as first argument to calls of `name` (or `x.name`), or of a helper
    of the file that passes its first parameter on to it, in a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = takers(tree, name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args or _called_name(node) not in names:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.append(first.value)
    return found


def shell_lines(path: Path) -> list[str]:
    """The command lines of a shell script (comments and blank lines dropped)."""
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in path.read_text().splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_the_registry_names_each_command_once():
    overlap = sorted(set(RUN_BY) & set(NOT_RUN))
    assert not overlap, f"listed both as run and as not run: {overlap}"


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_is_run_by_a_test_or_listed_as_not_run_with_a_reason(command):
    claimed = [prefix for prefix in (*RUN_BY, *NOT_RUN) if command in resolved(prefix)]
    assert claimed, (
        f"README command {command!r} is neither run by a test (RUN_BY) nor listed with the reason it cannot run "
        "in CI (NOT_RUN) in tests/test_readme_commands.py"
    )
    assert len(claimed) == 1, f"README command {command!r} is claimed by several entries: {claimed}"


@pytest.mark.parametrize("prefix", [*RUN_BY, *NOT_RUN])
def test_every_entry_names_exactly_one_readme_command(prefix):
    found = resolved(prefix)
    assert len(found) == 1, f"the registry entry {prefix!r} names {len(found)} README commands (expected one): {found}"


@pytest.mark.parametrize("prefix", sorted(RUN_BY))
def test_the_file_that_runs_a_command_takes_it_from_the_readme(prefix):
    where = REPO / RUN_BY[prefix]
    command = readme_command(prefix)
    assert where.is_file(), f"{RUN_BY[prefix]} (which runs the README command {command!r}) does not exist"
    if RUN_BY[prefix] == CI:
        assert command in shell_lines(where), f"{CI} does not run {command!r}"
        return
    takes = []
    for literal in literal_calls(where):
        try:
            takes.append(readme_command(literal))
        except AssertionError:  # names no README command, or several: not this one
            continue
    assert command in takes, (
        f"{RUN_BY[prefix]} does not take {command!r} from the README: it should call "
        f"readme_command({prefix!r}) and run that (changing only host, port, folders or sizes); it takes {takes}"
    )


@pytest.mark.parametrize("prefix", sorted(NOT_RUN))
def test_a_command_not_run_says_what_ci_lacks(prefix):
    reason = NOT_RUN[prefix]
    assert len(reason.split()) >= 8, f"the reason for not running {prefix!r} is too short to say why: {reason!r}"
    assert any(word in reason for word in MISSING), f"the reason for not running {prefix!r} names nothing CI lacks ({MISSING}): {reason!r}"
    cited = re.findall(r"\btests/[\w/]+\.py\b", reason)
    missing = [path for path in cited if not (REPO / path).is_file()]
    assert not missing, f"the reason for not running {prefix!r} names test files that do not exist: {missing}"


def test_the_readme_points_at_this_registry():
    assert "tests/test_readme_commands.py" in (REPO / "README.md").read_text()


def test_literal_calls_find_the_commands_a_test_takes(tmp_path):
    source = tmp_path / "t.py"
    source.write_text(
        "import readme_commands as rc\nfrom readme_commands import readme_command\n"
        "A = readme_command('dvc repro')\nB = rc.readme_command(\"make test\")\nC = readme_command(name)\nD = other('dvc pull')\n"
        "def readme(prefix, changes=None):\n    return words(substituted(readme_command(prefix), changes or {}))\n"
        "def twice(what):\n    return readme(what) * 2\n"
        "def unrelated(prefix):\n    return readme_command('make repro')\n"
        "E = readme('dvc push', {})\nF = twice('dvc gc --workspace')\nG = unrelated('dvc commit')\n"
    )
    assert sorted(literal_calls(source)) == ["dvc gc --workspace", "dvc push", "dvc repro", "make repro", "make test"]
