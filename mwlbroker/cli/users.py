"""``mwlbroker user add | passwd | list | token``: the accounts of the web page and API."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, add_group, command, login_name
from mwlbroker.cli.database import with_database
from mwlbroker.cli.output import CommandFailed, Table, print_list, refusing
from mwlbroker.domain.accounts import AccountError

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.services.accounts import AccountService
    from mwlbroker.store.db import Database


def register(commands: Commands) -> None:
    """Add ``user add``, ``user passwd``, ``user list`` and ``user token``."""
    actions = add_group(commands, "user", help="accounts of the web page and API")
    adding = command(actions, "add", help="add a user (asks for the password)", run=add)
    adding.add_argument("name", metavar="NAME")
    adding.add_argument("--role", choices=["admin", "viewer"], required=True)
    _add_password_flag(adding)
    changing = command(actions, "passwd", help="set a user's password", run=passwd)
    changing.add_argument("name", metavar="NAME")
    _add_password_flag(changing)
    command(actions, "list", help="list the users and their roles", run=list_users, json=True)
    token_ = command(
        actions, "token", help="create an API token for a user (printed once)", run=token
    )
    token_.add_argument("name", metavar="NAME")


def _add_password_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def _service(db: Database) -> tuple[AccountService, str]:
    """The account service, and the actor its changes are audited under."""
    from mwlbroker.services.accounts import AccountService

    return AccountService(db), f"cli:{login_name() or 'unknown'}"


def _read_password(args: argparse.Namespace) -> str:
    """From standard input (scripts), else asked twice at the terminal."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise CommandFailed("the passwords differ")
    return first


USERS = Table(
    "{name:24} {role:7} {last_login_at:.19}",
    {"last_login_at": "LAST LOGIN (UTC)"},
    lambda row: {**row, "last_login_at": str(row["last_login_at"] or "-")},
)


@with_database
def list_users(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Every account: its role, whether it is disabled, and its last login."""
    service, _ = _service(db)
    rows = [
        {
            "name": u.name,
            "role": u.role.value,
            "disabled": u.disabled,
            "created_at": u.created_at.isoformat(),
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
        }
        for u in service.list_users()
    ]
    return print_list(rows, USERS, as_json=args.json, ascii=True)


@with_database
@refusing(AccountError)
def token(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Create an API token and print it, the only time it is shown."""
    service, actor = _service(db)
    print(service.create_token(args.name, actor=actor))
    print(
        "Keep it now: only its hash is stored. Send it as 'Authorization: Bearer TOKEN'.",
        file=sys.stderr,
    )
    return 0


@with_database
@refusing(AccountError)
def add(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Add a user with a role, and the password read from the terminal or standard input."""
    from mwlbroker.domain.accounts import Role

    service, actor = _service(db)
    account = service.add_user(args.name, _read_password(args), Role(args.role), actor=actor)
    print(f"user {account.name} added ({account.role.value})")
    return 0


@with_database
@refusing(AccountError)
def passwd(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Set a user's password; the sessions open under the old one end."""
    service, actor = _service(db)
    account = service.set_password(args.name, _read_password(args), actor=actor)
    print(f"password of {account.name} changed; its open sessions have ended")
    return 0
