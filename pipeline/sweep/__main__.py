"""Hyperparameter sweep: python -m pipeline.sweep --space temperature

CLI glue like a stage module: reads params.yaml (validated as the stages do), fills the flags'
defaults from its `sweep` section, and calls pipeline.sweep.driver.run_sweep. Writes
sweeps/<space>/ (sweeps/<space>-ce/ for --method ce), logs one MLflow parent run with a child
run per trial, prints the best config as a `dvc exp run` line, and refreshes the report.
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
    cli.add_argument("--backend", choices=("ray", "optuna"), default="ray", help="ray: Ray Tune + OptunaSearch + ASHA; optuna: plain Optuna with a pruner, no Ray")
    cli.add_argument("--resume", action="store_true", help="continue the interrupted (or a finished, with more --samples) sweep")
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
        epochs=args.epochs or sweep.epochs, backend=args.backend, address=args.address or sweep.address,
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


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.list:
        print(listing())
        return
    if args.space is None:
        parser().error("argument --space is required (choose from " + ", ".join(SPACES) + ")")
    from pipeline.errors import UserError
    from pipeline.sweep.driver import run_sweep
    from stages.cli import read_params

    try:
        params = read_params()
        spec = _spec(args, params)
        if spec.backend == "optuna" and spec.max_concurrent > 1:
            print("the optuna backend runs one trial at a time (--max-concurrent is for --backend ray)")
        outcome = run_sweep(params, spec, resume=args.resume)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # before the sweep had anything to keep
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    _show(outcome, spec)
    if outcome.interrupted:
        flags = " ".join(a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume")
        print(f"interrupted: {len(outcome.ledger.trials)} ended trial(s) kept; continue with: python -m pipeline.sweep {flags} --resume", file=sys.stderr)
        raise SystemExit(130)
    _refresh_report(params)


if __name__ == "__main__":
    main()
