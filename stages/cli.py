"""What every stage's `main()` shares: read params.yaml once, turn user errors into one line."""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from pipeline.config import Params, parse_params
from pipeline.errors import ConfigError, UserError
from stages import paths


def read_params(path: Path = paths.PARAMS) -> Params:
    """Parse and validate params.yaml; a missing file or bad YAML is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: not found; run from the repository root (where params.yaml is)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    return parse_params(raw)


def run_stage(stage: Callable[[Params], object]) -> None:
    """Run `stage` on the validated params; user errors exit 2 with one line on stderr."""
    try:
        stage(read_params())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted; rerun `dvc repro` to resume from the last checkpoint", file=sys.stderr)
        raise SystemExit(130) from None


def run_seeded_stage(stage: Callable[[Params, int], object], argv: list[str] | None = None, description: str = "") -> None:
    """Run a stage of the main comparison for one training seed: `--seed S` (dvc.yaml's foreach
    passes each of run.seeds; without it, the first of run.seeds). A seed that params.yaml does not
    list is one line and exit 2: its results would be outside every report."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=None, help="training seed, one of run.seeds (default: the first)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def seeded(params: Params) -> object:
        seeds = list(params.run.seeds)
        if args.seed is not None and args.seed not in seeds:
            raise ConfigError("--seed", args.seed, f"one of run.seeds {seeds} (params.yaml)")
        return stage(params, seeds[0] if args.seed is None else args.seed)

    run_stage(seeded)
