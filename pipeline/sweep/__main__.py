"""Hyperparameter sweep: python -m pipeline.sweep --space temperature

CLI glue like a stage module: reads params.yaml (validated as the stages do), fills the flags'
defaults from its `sweep` section, and calls pipeline.sweep.driver.run_sweep. Writes
sweeps/<space>/ (sweeps/<space>-ce/ for --method ce), logs one MLflow parent run with a child
run per trial, prints the best config as a `dvc exp run` line, and refreshes the report.

`--space temperature --confirm K` runs no sweep: it retrains the finished sweep's top K
temperatures besides 0.1, and 0.1, at full length for every seed of run.seeds (pipeline/sweep/confirm.py).
"""

import argparse
import sys

from pipeline.sweep.spaces import METHODS, SPACES, listing, spaces_for


class _OneLineParser(argparse.ArgumentParser):
    """Bad input: one line on stderr naming the flag and what is allowed, exit 2."""

    def error(self, message: str) -> None:
        if message.startswith("unrecognized arguments"):
            message += "; see --help for the flags"
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    cli = _OneLineParser(
        prog="python -m pipeline.sweep",
        description=__doc__.splitlines()[0],
        epilog="spaces:\n" + listing() + "\n\nFlags default to the `sweep` section of params.yaml.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument("--space", choices=list(SPACES), metavar="NAME", help="the space to sweep: " + ", ".join(SPACES))
    cli.add_argument("--list", action="store_true", help="list the spaces and exit")
    cli.add_argument("--method", choices=METHODS, default="supcon", help="supcon (objective: kNN top-1 on val) or ce (val top-1)")
    cli.add_argument("--samples", type=_positive, help="trials in the sweep (sweep.num_samples)")
    cli.add_argument("--epochs", type=_positive, help="training epochs per trial (sweep.epochs)")
    cli.add_argument("--max-concurrent", type=_positive, help="trials at once (sweep.max_concurrent; ray backend)")
    cli.add_argument("--address", help="Ray cluster to join, e.g. auto (sweep.address; RAY_ADDRESS works too)")
    cli.add_argument("--backend", choices=("ray", "optuna"), help="ray (default): Ray Tune + OptunaSearch + ASHA; optuna: plain Optuna with a pruner, no Ray")
    cli.add_argument("--resume", action="store_true", help="continue the interrupted (or a finished, with more --samples) sweep")
    cli.add_argument(
        "--confirm", type=_positive, metavar="K",
        help="run no sweep: take the finished temperature sweep's top K temperatures other than 0.1 (trials stopped early never rank) and 0.1, "
        "train each at full length (supcon section, then the linear probe of the linear section) with every seed of run.seeds "
        "(3 or more), and add the probe's best val top-1 to sweeps/temperature/summary.json under `confirmation`; runs one "
        "after another in this process (no Ray); run it again after an interruption to continue",
    )  # fmt: skip
    return cli


def _spec(args: argparse.Namespace, params):
    from pipeline.errors import UserError
    from pipeline.sweep.driver import SweepSpec, sweep_name
    from pipeline.tracking import git_commit, tracking_uri
    from stages import paths

    if args.method not in SPACES[args.space].methods:
        raise UserError(f"argument --space: {args.space} does not apply to --method {args.method} (choose from {', '.join(spaces_for(args.method))})")
    sweep = params.sweep
    return SweepSpec(
        space=args.space, method=args.method,
        folder=(paths.SWEEPS / sweep_name(args.space, args.method)).resolve(),
        prepared=paths.prepared(params.data.dataset).resolve(),
        tracking_uri=tracking_uri(params.tracking.uri, paths.mlflow_db()), experiment=params.tracking.experiment,
        num_samples=args.samples or sweep.num_samples, max_concurrent=args.max_concurrent or sweep.max_concurrent,
        epochs=args.epochs or sweep.epochs, backend=args.backend or "ray", address=args.address or sweep.address,
        storage_path=sweep.storage_path, commit=git_commit(),
    )  # fmt: skip


def _refresh_report(params) -> None:
    """The report shows the newest sweep: rebuild it when its inputs are there."""
    from pipeline.errors import UserError
    from stages import report

    try:
        report.report(params)
    except UserError as err:
        print(f"report not refreshed: {err}")


def _show(outcome, spec) -> None:
    ledger = outcome.ledger
    print(f"{spec.folder}: {ledger.done()} trial(s) with a result, {len(ledger.trials) - ledger.done()} failed; MLflow parent run {ledger.mlflow_run_id}")
    print((spec.folder / "results.csv").read_text().rstrip())
    if outcome.best is None:
        print("no trial produced a result")
        return
    print(f"best (trial {outcome.best.number}, {ledger.objective} {outcome.best.objective:.4f}): {outcome.best.params}")
    print(f"train it in the full pipeline: {outcome.dvc_line}")


_SWEEP_ONLY = ("samples", "epochs", "max_concurrent", "address", "backend", "resume")
"""Flags that set up a sweep: --confirm runs none, so they would be silently ignored."""


def _check_confirm_flags(args: argparse.Namespace) -> None:
    if args.space != "temperature" or args.method != "supcon":
        parser().error(f"argument --confirm: confirms the SupCon temperature sweep (the paper's T = 0.1), not --space {args.space} --method {args.method}; use --space temperature")
    given = [name for name in _SWEEP_ONLY if getattr(args, name) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        parser().error(f"argument --confirm: runs no sweep, so {flag} does not apply; finish the sweep first, then run --space temperature --confirm K alone")


def _confirm_spec(args: argparse.Namespace, params):
    from pathlib import Path

    from pipeline.sweep.confirm import ConfirmSpec
    from pipeline.sweep.driver import sweep_name
    from pipeline.tracking import git_commit, tracking_uri
    from stages import paths

    return ConfirmSpec(
        folder=(paths.SWEEPS / sweep_name(args.space, args.method)).resolve(), prepared=paths.prepared(params.data.dataset).resolve(),
        tracking_uri=tracking_uri(params.tracking.uri, paths.mlflow_db()), experiment=params.tracking.experiment, k=args.confirm,
        files_root=Path(params.data.root).resolve() if params.data.root is not None else None, commit=git_commit(), project=Path.cwd(),
    )  # fmt: skip


def _confirm(args: argparse.Namespace) -> None:
    """--confirm K: the chosen temperatures at full length, then the table and the report."""
    from pipeline.one_line_exit import exit_in_one_line
    from pipeline.sweep.confirm import run_confirmation, table
    from stages.cli import read_params

    with exit_in_one_line():  # an interrupt here comes before the confirmation kept anything
        params = read_params()
        spec = _confirm_spec(args, params)
        outcome = run_confirmation(params, spec)
    if outcome.interrupted:
        kept = sum(len(seeds) for seeds in outcome.ledger.runs.values())
        print(f"interrupted: {kept} ended run(s) kept in {outcome.ledger.path}; continue with: python -m pipeline.sweep --space temperature --confirm {spec.k}", file=sys.stderr)
        raise SystemExit(130)
    print(table(outcome.block))
    print(f"{spec.summary_path}: `confirmation` written ({len(outcome.trained)} run(s) trained now); MLflow parent run {outcome.block['mlflow_run_id']}")
    _refresh_report(params)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.list:
        print(listing())
        return
    if args.space is None:
        parser().error("argument --space is required (choose from " + ", ".join(SPACES) + ")")
    if args.confirm is not None:
        _check_confirm_flags(args)
        _confirm(args)
        return
    from pipeline.one_line_exit import exit_in_one_line
    from pipeline.sweep.driver import run_sweep
    from stages.cli import read_params

    with exit_in_one_line():  # an interrupt here comes before the sweep kept anything
        params = read_params()
        spec = _spec(args, params)
        if spec.backend == "optuna" and spec.max_concurrent > 1:
            print("the optuna backend runs one trial at a time (--max-concurrent is for --backend ray)")
        outcome = run_sweep(params, spec, resume=args.resume)
    _show(outcome, spec)
    if outcome.interrupted:
        flags = " ".join(a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume")
        print(f"interrupted: {len(outcome.ledger.trials)} ended trial(s) kept; continue with: python -m pipeline.sweep {flags} --resume", file=sys.stderr)
        raise SystemExit(130)
    _refresh_report(params)


if __name__ == "__main__":
    main()
