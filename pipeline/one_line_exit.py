"""The command-line entry points outside the DVC stages (sweep, study, preset, check_reference,
mlflow_ui): a UserError exits 2 and Ctrl-C 130, each as one line on stderr with no traceback.

The stages use stages.cli.one_line_errors, which also speaks torchrun's error-file protocol. This
lives in its own module, not in pipeline/errors.py, because every stage depends on errors.py:
a change here must not mark the committed results stale.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.errors import UserError


@contextmanager
def exit_in_one_line(prefix: str = "", interrupted: str = "interrupted") -> Iterator[None]:
    """`prefix` names the input the errors are about; `interrupted` says what was kept."""
    try:
        yield
    except UserError as err:
        print(f"error: {prefix}{err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        raise SystemExit(130) from None
