"""What README.md, the Makefile and dvc.yaml tell people holds: the test files they cite exist, and
no server they say to start listens beyond its own machine without authentication (anyone who
reaches an unauthenticated MLflow server can read and delete every run and artifact; anyone who
reaches Ray's dashboard can run commands on the cluster)."""

import ipaddress
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHELL_FENCES = {"", "sh", "bash", "shell", "console", "zsh"}
# A cluster's own network (RFC 1918, IPv6 unique local): where a Ray head may listen.
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


@pytest.mark.parametrize("doc", ["README.md", "Makefile", "dvc.yaml"])
def test_every_test_file_a_doc_names_exists(doc):
    cited = set(re.findall(r"\btests/[\w/]+\.py\b", (REPO / doc).read_text()))
    missing = sorted(path for path in cited if not (REPO / path).is_file())
    assert not missing, f"{doc} names test files that do not exist: {missing}"


def shell_snippets(markdown: str) -> list[str]:
    """The shell code of a markdown text: each fenced block of shell (or no language), and each
    inline code span (commands are also quoted in prose), with line continuations joined."""
    snippets, prose = [], []
    for fence in re.split(r"^```", markdown, flags=re.M)[1::2]:
        language, _, body = fence.partition("\n")
        if language.strip() in SHELL_FENCES:
            snippets += body.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    snippets += [" ".join(span.split()) for _, span in re.findall(r"(`+)(.+?)\1", prose, flags=re.S)]
    return snippets


def makefile_recipes(makefile: str) -> list[str]:
    return [line.strip() for line in makefile.replace("\\\n", " ").splitlines() if line.startswith("\t")]


def commands(snippet: str) -> list[list[str]]:
    """The simple commands of a line of shell, as words (comments dropped; split at ; && || | &)."""
    snippet = re.sub(r"(^|\s)#.*", "", snippet)  # a '#' inside a word (a URL's /#/) is not a comment
    lexer = shlex.shlex(snippet, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: prose, not a command
        words = snippet.split()
    found, current = [], []
    for word in words + [";"]:
        if word and set(word) <= set(";&|()<>"):
            found += [current] if current else []
            current = []
        else:
            current.append(word)
    return found


def _program(words: list[str]) -> list[str]:
    """The words from the program on: no VAR=value prefixes or wrappers, `python -m x` as `x`."""
    while words and (re.fullmatch(r"\w+=.*", words[0]) or words[0] in ("nohup", "sudo", "exec", "env", "time")):
        words = words[1:]
    if words and re.fullmatch(r"python[\d.]*", Path(words[0]).name) and words[1:2] == ["-m"]:
        return words[2:]
    return [Path(words[0]).name, *words[1:]] if words else []


def _option(words: list[str], *names: str) -> str | None:
    """The value of the last of the options `names` (`--name value` or `--name=value`)."""
    value = None
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                value = words[i + 1]
            elif word.startswith(name + "="):
                value = word.split("=", 1)[1]
    return value


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    address = _address(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def exposed(words: list[str]) -> str | None:
    """Why a command starts a server that anyone on the network can use, or None."""
    words = _program(words)
    name, args = (words[0], words[1:]) if words else ("", [])
    if (name == "mlflow" and args[:1] in (["server"], ["ui"])) or name == "stages.mlflow_ui":
        host = _option(args, "--host", "-h") or "127.0.0.1"
        if not is_loopback(host) and _option(args, "--app-name") != "basic-auth":
            return f"MLflow without authentication on {host}"
    elif name == "ray" and args[:1] == ["start"] and "--head" in args:
        node = _option(args, "--node-ip-address")
        if node is not None and not is_loopback(node):
            address = _address(node)
            if address is None or not any(address in network for network in PRIVATE if network.version == address.version):
                return f"Ray's head on {node}, not a private address"
        if (_option(args, "--include-dashboard") or "").lower() not in ("false", "0"):
            dashboard = _option(args, "--dashboard-host")
            if dashboard is None or not is_loopback(dashboard):
                return f"Ray's dashboard (and Jobs API) on {dashboard or 'a default host'}, not --dashboard-host 127.0.0.1"
    elif name in ("jupyter", "jupyter-lab", "jupyter-notebook", "jupyter-server"):
        host = _option(args, "--ip", "--ServerApp.ip", "--NotebookApp.ip") or "localhost"
        if not is_loopback(host):
            return f"Jupyter on {host}"
    elif name == "http.server":
        host = _option(args, "--bind", "-b") or "0.0.0.0"  # its default is every interface
        if not is_loopback(host):
            return f"http.server on {host}"
    elif name == "tensorboard":
        host = "every interface (--bind_all)" if "--bind_all" in args else _option(args, "--host") or "localhost"
        if not is_loopback(host):
            return f"TensorBoard on {host}"
    return None


@pytest.mark.parametrize(
    "line",
    [
        "mlflow server --backend-store-uri sqlite:////shared/mlflow.db --host 0.0.0.0",
        "mlflow server --host 10.0.0.1 --port 5000   # anywhere reachable",
        "MLFLOW_X=1 .venv/bin/mlflow ui -h 192.168.1.5",
        "python -m mlflow server --host=tracking.example.org",
        "python -m stages.mlflow_ui --host 0.0.0.0",
        "ray start --head --port=6379 --node-ip-address=10.0.0.1",
        "ray start --head --dashboard-host=0.0.0.0",
        "ray start --head --node-ip-address=52.14.3.9 --dashboard-host 127.0.0.1",
        "ray start --head --node-ip-address=0.0.0.0 --dashboard-host 127.0.0.1",
        "cd notebooks && jupyter lab --ip=0.0.0.0",
        "python3 -m http.server 8000",
        "tensorboard --logdir runs --bind_all",
        "tensorboard --logdir runs --host 172.20.0.3",
    ],
)
def test_a_server_reachable_from_the_network_is_found(line):
    assert any(exposed(words) for words in commands(line)), line


@pytest.mark.parametrize(
    "line",
    [
        "mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$PWD/mlflow.db",
        "mlflow ui --backend-store-uri sqlite:///mlflow.db",  # its default is 127.0.0.1
        "MLFLOW_AUTH_ADMIN_PASSWORD=x mlflow server --app-name basic-auth --host 0.0.0.0",
        "ray start --head --port=6379 --node-ip-address=10.0.0.1 --dashboard-host=127.0.0.1",
        "ray start --head --include-dashboard=false",
        "ray start --address=10.0.0.1:6379",
        "ssh -N -f -L 5000:127.0.0.1:5000 user@tracking-host && export MLFLOW_TRACKING_URI=http://127.0.0.1:5000",
        "python -m http.server --bind 127.0.0.1",
        "jupyter lab --ip localhost",
        "open http://127.0.0.1:5000/#/experiments/1/runs --host 0.0.0.0",  # not a server
    ],
)
def test_a_server_on_loopback_or_with_authentication_passes(line):
    assert not any(exposed(words) for words in commands(line)), line


def test_no_server_the_readme_or_makefile_starts_listens_beyond_loopback_without_authentication():
    readme = shell_snippets((REPO / "README.md").read_text())
    recipes = makefile_recipes((REPO / "Makefile").read_text())
    found = [(snippet, exposed(words)) for snippet in readme + recipes for words in commands(snippet)]
    servers = {tuple(_program(words)[:2]) for snippet in readme for words in commands(snippet)}
    assert {("mlflow", "server"), ("ray", "start")} <= servers, "the scan no longer sees the README's server commands"
    unsafe = [f"{why}: {snippet}" for snippet, why in found if why]
    assert not unsafe, "README.md / Makefile start servers anyone on the network can use:\n" + "\n".join(unsafe)
