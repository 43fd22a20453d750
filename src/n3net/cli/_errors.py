"""Errors a subcommand raises to end with a one-line message and exit code 2."""


class CliError(Exception):
    """A user-facing failure: bad arguments, missing inputs, refused overwrites.

    `n3net` prints `n3net: error: <message>` on one line (no traceback) and exits with 2.
    """
