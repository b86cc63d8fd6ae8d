"""The command-line dispatcher: discovery, exit statuses, one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from flaxnets import cli
from flaxnets.errors import FlaxnetsError, UsageError


def test_help_lists_every_command_module(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for module in cli._command_modules():
        assert module.NAME in out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("error, status", [(FlaxnetsError("bad value 7, expected 3"), 1), (UsageError("unknown key 'x'"), 2)])
def test_library_errors_become_one_line_messages(monkeypatch, capsys, error, status):
    def failing_run(args):
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["demo"].set_defaults(_run=failing_run)
    assert cli.main(["demo"]) == status
    err = capsys.readouterr().err
    assert err == f"flaxnets demo: error: {error}\n"


def test_python_dash_m_entry_point_runs_without_traceback():
    result = subprocess.run([sys.executable, "-m", "flaxnets", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1],
                            env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "usage: flaxnets" in result.stdout


def test_a_reader_that_goes_away_stops_the_command_quietly():
    """`flaxnets models | head -1`: writing to a closed pipe ends with status 141 (as a Unix
    tool killed by SIGPIPE) and no traceback, not with BrokenPipeError."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: the first write fails
    try:
        result = subprocess.run([sys.executable, "-m", "flaxnets", "models"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[1],
                                env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin",
                                     "JAX_PLATFORMS": "cpu"})
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""
