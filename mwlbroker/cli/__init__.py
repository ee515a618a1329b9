"""The ``mwlbroker`` command: parses arguments and calls into the application.

Each command group lives in a module of its own that adds its subparser (``register``) and
names the function each action runs. :mod:`~mwlbroker.cli.arguments` holds the flags they share,
:mod:`~mwlbroker.cli.database` hands a command a prepared database,
:mod:`~mwlbroker.cli.records` prints the newest of a kind of stored record, and
:mod:`~mwlbroker.cli.output` prints tables, records and ``--json``.

Exit codes: 0 success, 1 the command failed (e.g. a message was not accepted, the database is
unavailable), 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mwlbroker import __version__
from mwlbroker.cli import (
    bench,
    configuration,
    db,
    exams,
    forward,
    importing,
    jobs,
    mappings,
    messages,
    modality,
    outbound,
    patients,
    send,
    serve,
    users,
)
from mwlbroker.cli.output import CommandFailed, print_failure
from mwlbroker.config import ConfigError, load_config

__all__ = ["build_parser", "main"]

GROUPS = (
    serve,
    send,
    importing,
    configuration,
    db,
    mappings,
    messages,
    users,
    outbound,
    exams,
    patients,
    forward,
    jobs,
    modality,
    bench,
)
"""The command groups, in the order ``mwlbroker --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every group adds its own commands."""
    parser = argparse.ArgumentParser(
        prog="mwlbroker",
        description="Modality Worklist broker and HL7 v2 integration engine.",
    )
    parser.add_argument("--version", action="version", version=f"mwlbroker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, load the configuration once, and run the command asked for."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as error:
        print(f"mwlbroker: configuration error: {error}", file=sys.stderr)
        return 2
    try:
        code: int = args.run(args, config)
        return code
    except CommandFailed as failure:
        print_failure(str(failure))
        return failure.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``mwlbroker messages list | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
