"""Errors that mean "the user asked for something invalid", as opposed to bugs.

Stages catch `UserError` and print its message as one line with a non-zero exit, no traceback.
"""


class UserError(Exception):
    """A mistake in configuration, input data or paths that the user can fix."""


class ConfigError(UserError, ValueError):
    """A params value is invalid: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key} = {value!r} is not allowed: expected {allowed}")
        self.key, self.value, self.allowed = key, value, allowed
