"""What every stage's `main()` shares: read params.yaml once, turn user errors into one line."""

import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from pipeline.config import Params, parse_params
from pipeline.errors import UserError
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
