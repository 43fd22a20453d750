"""`n3net` command line: builds one subparser per command module and dispatches to it.

Each subcommand lives in `n3net/cli/<module>.py` and exposes two functions:

- `add_parser(subparsers) -> None`: adds its parser and calls `set_defaults(func=run)`;
- `run(args) -> int`: does the work and returns the exit code.

Registering a command is one entry in `_COMMANDS`. Command modules defer heavy imports (torch,
models) into `run()`, so that `n3net --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from n3net import __version__
from n3net._checks import MissingExtraError
from n3net.cli._errors import CliError


class Command(Protocol):
    """What a command module provides (its `run(args) -> int` is bound via set_defaults)."""

    def add_parser(self, subparsers: argparse._SubParsersAction) -> None: ...


# Module names under n3net.cli, in the order `n3net --help` lists them.
_COMMANDS: list[str] = [
    "info",
    "models",
    "import_official",
    "evaluate",
    "denoise",
    "upscale",
    "train",
]

# Exceptions from a command's run() that are the user's to fix: one line, exit code 2.
_USER_ERRORS = (
    CliError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    NotADirectoryError,
    MissingExtraError,
)
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _load(command: str | Command) -> Command:
    """Return a command module: a name under n3net.cli, or anything with add_parser()."""
    if isinstance(command, str):
        return importlib.import_module(f"n3net.cli.{command}")
    return command


def build_parser(commands: Sequence[str | Command] | None = None) -> argparse.ArgumentParser:
    """Build the `n3net` parser with one subparser per command module.

    Args:
        commands: module names under `n3net.cli`, or objects with an `add_parser(subparsers)`
            function (tests register stand-ins this way); defaults to `_COMMANDS`.
    Returns:
        The top-level parser; parsed arguments carry `func`, the chosen command's `run`.
    """
    parser = argparse.ArgumentParser(
        prog="n3net",
        description="Neural Nearest Neighbors Networks (Plötz & Roth, NeurIPS 2018) in PyTorch.",
        epilog="Run `n3net <command> --help` for a command's options. "
        "Set N3NET_DEBUG=1 to see tracebacks instead of one-line errors.",
    )
    parser.add_argument("--version", action="version", version=f"n3net {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="<command>", required=True
    )
    for command in _COMMANDS if commands is None else commands:
        _load(command).add_parser(subparsers)
    return parser


def _one_line(error: BaseException) -> str:
    """Format an exception as a single line, dropping errno noise from OSErrors."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.strerror}: {os.fsdecode(error.filename)}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


def main(argv: Sequence[str] | None = None, commands: Sequence[str | Command] | None = None) -> int:
    """Run the `n3net` command line and return its exit code.

    Args:
        argv: arguments without the program name; defaults to `sys.argv[1:]`.
        commands: as in `build_parser`; defaults to `_COMMANDS`.
    Returns:
        0 on success; 2 on a usage error or a user-facing failure (`CliError`, `ValueError`,
        `FileNotFoundError`, `FileExistsError`, `PermissionError`, `NotADirectoryError`, a
        missing optional extra), printed as one line
        `n3net: error: <message>`; 130 when interrupted; otherwise the command's own code.
    """
    parser = build_parser(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors end inside argparse
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else _EXIT_USAGE)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("n3net: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`n3net models --json | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the final flush at exit cannot fail again
        return 1
    except _USER_ERRORS as error:
        if os.environ.get("N3NET_DEBUG") == "1":
            raise
        print(f"{parser.prog}: error: {_one_line(error)}", file=sys.stderr)
        return _EXIT_USAGE
