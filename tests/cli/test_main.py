"""In-process tests of the `n3net` entry point and its command registry."""

from __future__ import annotations

import argparse
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import n3net
from n3net.cli import main as cli_main
from n3net.cli._errors import CliError
from n3net.cli.main import build_parser, main


def _raising(error: BaseException) -> SimpleNamespace:
    """A stand-in command `boom` whose run() raises `error`."""

    def run(args: argparse.Namespace) -> int:
        raise error

    def add_parser(subparsers: argparse._SubParsersAction) -> None:
        subparsers.add_parser("boom").set_defaults(func=run)

    return SimpleNamespace(add_parser=add_parser)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"n3net {n3net.__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: n3net")
    assert "info" in out


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    assert n3net.__version__ in out
    for label in ("python:", "threads:", "cuda:", "mps:"):
        assert label in out


@pytest.mark.parametrize("argv", [["no-such-command"], [], ["info", "--no-such-flag"]])
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "n3net" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error, message",
    [
        (CliError("output exists:\n  out.png"), "output exists: out.png"),
        (ValueError("sigma must be > 0, got -1"), "sigma must be > 0, got -1"),
        (
            FileNotFoundError(2, "No such file or directory", "x.png"),
            "No such file or directory: x.png",
        ),
        (CliError(), "CliError"),
    ],
    ids=["cli-multiline", "value", "file-not-found", "empty"],
)
def test_user_errors_are_one_line(
    error: Exception, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boom"], commands=[_raising(error)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"n3net: error: {message}\n"


def test_debug_env_shows_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N3NET_DEBUG", "1")
    with pytest.raises(CliError, match="bad"):
        main(["boom"], commands=[_raising(CliError("bad"))])


def test_keyboard_interrupt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boom"], commands=[_raising(KeyboardInterrupt())]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_other_errors_propagate() -> None:
    with pytest.raises(RuntimeError, match="bug"):
        main(["boom"], commands=[_raising(RuntimeError("bug"))])


@pytest.mark.parametrize("name", cli_main._COMMANDS)
def test_registered_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser([name])
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    (command,) = subparsers.choices
    assert main([command, "--help"], commands=[name]) == 0
    assert capsys.readouterr().out.startswith(f"usage: n3net {command}")


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "n3net", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"n3net {n3net.__version__}"


def test_closed_pipe_is_quiet() -> None:
    import subprocess
    import sys

    command = f"{sys.executable} -m n3net models --json | true"  # the reader is gone at once
    result = subprocess.run(["bash", "-c", "set -o pipefail; " + command], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
