"""Errors that mean "the user asked for something invalid", as opposed to bugs.

Stages catch `UserError` and print its message as one line with a non-zero exit, no traceback.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in configuration, input data or paths that the user can fix."""


class ConfigError(UserError, ValueError):
    """A params value is invalid: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key} = {value!r} is not allowed: expected {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


@contextmanager
def exit_in_one_line(prefix: str = "", interrupted: str = "interrupted") -> Iterator[None]:
    """A UserError exits 2 and Ctrl-C 130, each as one line on stderr with no traceback.

    For the command-line entry points outside the DVC stages (those use stages.cli.one_line_errors,
    which also speaks torchrun's error-file protocol). `prefix` names the input the errors are about.
    """
    try:
        yield
    except UserError as err:
        print(f"error: {prefix}{err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        raise SystemExit(130) from None
