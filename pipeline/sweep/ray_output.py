"""Ray's own output goes to <sweep>/ray.log, the terminal shows the sweep's lines only.

Ray and Tune print a configuration box, a TensorBoard hint into Ray's temporary folder, an
authentication notice, colour codes, every worker's log lines, and a `SystemExit` traceback for
each trial ASHA stops (the worker is told to exit): none of it is the sweep's progress, and the
tracebacks look like failures when nothing failed. Much of it is written by Ray's C++ parts and
by worker processes, not through Python's logging, so the redirection is at the file-descriptor
level: while the sweep runs, stdout and stderr (fd 1 and 2) are the log file, and the sweep's own
lines are written to a duplicate of the original stdout.
"""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

RAY_LOG = "ray.log"


@contextmanager
def ray_output_to(log_path: Path) -> Iterator[TextIO]:
    """Within the block, everything this process and its children write to stdout/stderr goes to
    `log_path` (appended); yields a stream on the original stdout for the sweep's own lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        log.write(f"--- sweep driver, {datetime.now(timezone.utc).isoformat(timespec='seconds')} ---\n".encode())
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        # Python-level writers too: where sys.stdout is not fd 1 (pytest, a notebook), Ray's
        # Python output would otherwise still reach the screen.
        python_streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = open(log.fileno(), "w", buffering=1, closefd=False)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stdout.close()
            sys.stdout, sys.stderr = python_streams
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


def echo_on(terminal: TextIO, echo: Callable[..., None]) -> Callable[[str], None]:
    """The sweep's line printer, writing to `terminal`: `print` is pointed there; any other
    printer (a test's) is left as it is."""
    if echo is print:
        return lambda line: print(line, file=terminal, flush=True)
    return echo
