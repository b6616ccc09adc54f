"""The command-line entry points outside the stages: a user error is one line and exit 2, Ctrl-C 130."""

import pytest

from pipeline.errors import ConfigError, UserError
from pipeline.one_line_exit import exit_in_one_line


def test_a_user_error_is_one_line_with_its_prefix_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exited, exit_in_one_line(prefix="configs/x.yaml: "):
        raise ConfigError("supcon.temperature", -1, "a number > 0")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: configs/x.yaml: supcon.temperature = -1 is not allowed: expected a number > 0\n"


def test_an_interrupt_prints_what_was_kept_and_exits_130(capsys):
    with pytest.raises(SystemExit) as exited, exit_in_one_line(interrupted="interrupted; params.yaml is unchanged"):
        raise KeyboardInterrupt
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted; params.yaml is unchanged\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError), exit_in_one_line():
        _ = 1 / 0


def test_nothing_is_printed_when_the_block_succeeds(capsys):
    with exit_in_one_line():
        pass
    assert capsys.readouterr() == ("", "")
    assert issubclass(ConfigError, UserError)
