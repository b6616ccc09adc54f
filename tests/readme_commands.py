"""The shell commands of README.md as a user copies them, for the tests that run them.

A command is one line of a ```sh block with its continuation lines (trailing backslash) joined
and its comment dropped. Tests take a command with `readme_command(prefix)` and change only what
a CPU test machine must (host, port, folders, sizes) with `substituted`, which fails when the
word to change is no longer in the README, so the test and the README cannot drift apart.
"""

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _without_comment(line: str) -> str:
    """The line up to an unquoted `#` that starts a word (shlex's rule, quotes kept as written)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    end = 0
    try:
        for _ in lexer:
            end = lexer.instream.tell() if hasattr(lexer.instream, "tell") else end
    except ValueError:  # an unbalanced quote: keep the line as it is
        return line.strip()
    return line[:end].strip() if end else ""


def readme_commands(readme: Path = README) -> list[str]:
    """Every command of every ```sh block, in README order."""
    commands = []
    for block in _FENCE.findall(readme.read_text()):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = _without_comment(line)
            if command:
                commands.append(" ".join(command.split()))
    return commands


def readme_command(prefix: str, readme: Path = README) -> str:
    """The one README command equal to `prefix`, or else the one that starts with it."""
    commands = readme_commands(readme)
    exact = [c for c in commands if c == prefix]
    found = exact or [c for c in commands if c.startswith(prefix)]
    if len(found) != 1:
        raise AssertionError(f"README.md has {len(found)} commands starting with {prefix!r} (expected one): {found}")
    return found[0]


def substituted(command: str, changes: dict[str, str]) -> str:
    """`command` with whole words replaced (`--port=6379` is one word, so is `6379`); a word that
    is not in the command is an error: the README changed and the test must follow."""
    words = shlex.split(command)
    for old, new in changes.items():
        if old not in words:
            raise AssertionError(f"{old!r} is not a word of the README command {command!r}")
        words = [new if word == old else word for word in words]
    return shlex.join(words)


def words(command: str) -> list[str]:
    """The command split as the shell would (for subprocess without a shell)."""
    return shlex.split(command)
