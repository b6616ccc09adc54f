"""What every stage's `main()` shares: read params.yaml once, turn user errors into one line."""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

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


def require_listed(*checks: tuple[str, object, Sequence]) -> None:
    """A matrix cell's values must be ones params.yaml lists (dvc.yaml renders its cells, and names
    their outputs, from those lists): each check is (key, value, the listed values); the first value
    not listed is one line naming its key."""
    for key, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(key, value, f"one of {list(allowed)} (the values params.yaml lists)")


def run_stage(stage: Callable[[Params], object]) -> None:
    """Run `stage` on the validated params; user errors exit 2 with one line on stderr."""
    with one_line_errors():
        _recorded(stage)(read_params())


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A UserError exits 2 and an interrupt 130, each with one line on stderr and no traceback.

    Under torchrun only rank zero prints it; every rank exits with the same code and writes the
    line to its error file, so torchrun's failure report (printed last) ends with the line rather
    than with a link to its documentation.
    """
    try:
        yield
    except UserError as err:
        _fail(f"error: {err}", 2)
    except KeyboardInterrupt:
        _fail("interrupted; rerun `dvc repro` to resume from the last checkpoint", 130)


def _fail(line: str, code: int) -> NoReturn:
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun's RANK: set before the process group is joined
        print(line, file=sys.stderr, flush=True)
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        # The layout torch.distributed.elastic's ErrorHandler writes; the report shows py_callstack.
        record = {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}
        Path(os.environ["TORCHELASTIC_ERROR_FILE"]).write_text(json.dumps({"message": record}))
    raise SystemExit(code) from None


def _recorded(stage: Callable[[Params], object]) -> Callable[[Params], object]:
    """Under torchrun, a bug's traceback also goes to torchrun's failure report (@record)."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return stage  # one process: nothing to import (report and compare run without torch)
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(stage)


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
