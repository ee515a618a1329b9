"""The argparse pieces every command group is built from, so that each list, show and action
reads the same: the shared flags, a group of actions, and the list/show/retry trio."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from ssl import SSLContext

    from mwlbroker.config import Config

Handler = Callable[[argparse.Namespace, "Config"], int]
"""What a command runs: the parsed arguments and the loaded configuration in, the exit code out."""

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers()`` returns, to add commands to (argparse names its class private)."""


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``-c/--config FILE``, which every command takes."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $MWLBROKER_CONFIG, else built-in defaults)",
    )


def add_actor_flag(parser: argparse.ArgumentParser) -> None:
    """``--actor``: the name an audited change is recorded under."""
    parser.add_argument(
        "--actor", help="who acts, for the audit record (default: cli and the login name)"
    )


def actor(args: argparse.Namespace) -> str:
    """Who an audited change is recorded under: ``--actor``, else the command line and the
    login name."""
    if args.actor:
        return str(args.actor)
    name = login_name()
    return f"cli {name}" if name else "cli"


def login_name() -> str | None:
    """The operating system user running the command, for the audit trail; ``None`` in a bare
    container, which has no user name."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # OSError, or KeyError without a passwd entry, as Python versions differ
        return None


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: what :func:`mwlbroker.cli.output.print_json` prints instead of the table."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_group(commands: Commands, name: str, *, help: str) -> Commands:
    """A command with actions of its own (``mwlbroker NAME ACTION``); the action chosen is kept
    as ``NAME_command``."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def command(
    group: Commands,
    name: str,
    *,
    help: str,
    run: Handler,
    record: bool = False,
    limit: bool = False,
    json: bool = False,
) -> argparse.ArgumentParser:
    """A command that runs ``run``, with the flags every command shares: --config, and as asked
    the record's ID, --limit and --json."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    parser.set_defaults(run=run)
    add_config_flag(parser)
    if record:
        parser.add_argument("id", type=int)
    if limit:
        parser.add_argument("--limit", type=int, default=50)
    if json:
        add_json_flag(parser)
    return parser


@dataclass(frozen=True)
class Action:
    """One action of :func:`add_record_actions`: its help line and what it runs."""

    help: str
    run: Handler
    name: str = ""


def add_record_actions(
    group: Commands,
    *,
    listing: Action,
    statuses: Sequence[str] = (),
    showing: Action | None = None,
    retrying: Action | None = None,
) -> argparse.ArgumentParser:
    """``list [--status S] --limit N --json``, ``show ID --json`` and ``retry ID`` (or the name
    given) over one kind of stored record; returns the list parser for its own filters."""
    listed = command(
        group, listing.name or "list", help=listing.help, run=listing.run, limit=True, json=True
    )
    if statuses:
        listed.add_argument("--status", choices=list(statuses))
    if showing is not None:
        command(
            group,
            showing.name or "show",
            help=showing.help,
            run=showing.run,
            record=True,
            json=True,
        )
    if retrying is not None:
        command(group, retrying.name or "retry", help=retrying.help, run=retrying.run, record=True)
    return listed


def add_tls_flags(parser: argparse.ArgumentParser, *, ca: str, cert: str, tls: str) -> None:
    """``--tls --ca --cert --key`` of a command that connects to a peer (see :func:`client_tls`)."""
    parser.add_argument("--tls", action="store_true", help=tls)
    parser.add_argument("--ca", default="", help=ca)
    parser.add_argument("--cert", default="", help=cert)
    parser.add_argument("--key", default="", help="private key (PEM) of --cert")


def client_tls(args: argparse.Namespace) -> SSLContext | None:
    """The client TLS context the ``--tls`` flags ask for, or ``None`` for plain TCP; a bad
    certificate or key is a usage error (exit code 2)."""
    from mwlbroker.cli.output import CommandFailed
    from mwlbroker.tls import TLSConfigError, client_context

    if not (args.tls or args.ca or args.cert):
        return None
    try:
        return client_context(args.ca, args.cert, args.key, setting="--tls")
    except TLSConfigError as error:
        raise CommandFailed(str(error), exit_code=2) from error
