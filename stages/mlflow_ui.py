"""`python -m stages.mlflow_ui [--host H] [--port P] [--print-url]`: MLflow's UI on this project's
runs, opened where the comparison is (`make mlflow-ui`).

Prints the address of the experiment's runs page (not MLflow 3's GenAI overview, where a bare
address lands) and of the compare page of SupCon's and CE's newest runs (pipeline/mlflow_compare.py),
and then serves the UI on the project's store until Ctrl-C. The experiment is
created if no stage has run yet, so the address is valid from the start. Binds 127.0.0.1 unless
--host says otherwise. Not a DVC stage.
"""

import argparse
import os
import sys

from pipeline import tracking
from pipeline.mlflow_compare import compare_page, newest_comparison_runs
from pipeline.one_line_exit import exit_in_one_line
from stages import paths
from stages.cli import read_params


def base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def runs_page(host: str, port: int, experiment_id: str) -> str:
    """The UI's address of an experiment's runs table (MLflow 3's route)."""
    return f"{base_url(host, port)}/#/experiments/{experiment_id}/runs"


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str, port: int) -> str | None:
    """One line when --host reaches beyond this machine: MLflow's UI has no login, so anyone who
    can reach host:port can read, change and delete every run."""
    if host in LOOPBACK:
        return None
    return (f"warning: --host {host} serves MLflow's UI without authentication to anyone who can reach port {port}; "
            "prefer the default 127.0.0.1 and an SSH tunnel (README, section MLflow)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--print-url", action="store_true", help="print the runs page's address and exit")
    args = parser.parse_args(argv)
    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    with exit_in_one_line():
        params = read_params()
    import mlflow

    uri = tracking.tracking_uri(params.tracking.uri, paths.mlflow_db())
    mlflow.set_tracking_uri(uri)
    experiment_id = tracking.open_experiment(mlflow, params.tracking.experiment)
    print(f"SupCon vs CE runs: {runs_page(args.host, args.port, experiment_id)}", flush=True)
    compared = newest_comparison_runs(mlflow.MlflowClient(), experiment_id)
    if compared:
        page = compare_page(base_url(args.host, args.port), experiment_id, compared)
        print(f"SupCon vs CE compared (newest linear_eval and train_ce run of each seed; chart test/top1 and test/ece): {page}", flush=True)
    if args.print_url:
        return
    if not uri.startswith("sqlite:"):
        print(f"runs are tracked on {uri}: open its UI there", file=sys.stderr)
        return
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    os.execvp(os.path.join(os.path.dirname(sys.executable), "mlflow"), command)


if __name__ == "__main__":
    main()
