"""``mwlbroker db upgrade | current | copy``: the database schema, and moving a site's data.

These commands work on a schema that may be missing or out of date, so they open the database
without preparing it (see :mod:`mwlbroker.cli.database` for the commands that need it ready).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, add_group, command
from mwlbroker.cli.output import CommandFailed

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.store.db import Database


def register(commands: Commands) -> None:
    """Add ``db upgrade``, ``db current`` and ``db copy``."""
    actions = add_group(commands, "db", help="database schema")
    command(actions, "upgrade", help="migrate the schema to this version", run=upgrade)
    command(actions, "current", help="print the schema revision", run=current)
    copy_ = command(
        actions,
        "copy",
        help="copy the whole database into another, empty one (SQLite to PostgreSQL)",
        run=copy,
    )
    copy_.add_argument("--to", required=True, metavar="URL", help="the target database URL")
    copy_.add_argument(
        "--from", dest="source", metavar="URL", help="the source (default: database.url)"
    )


def _unprepared(
    step: Callable[[argparse.Namespace, Database], int],
) -> Callable[[argparse.Namespace, Config], int]:
    """A schema command: handed the database as it is, any failure told with its URL."""

    @functools.wraps(step)
    def run(args: argparse.Namespace, config: Config) -> int:
        from mwlbroker.app import open_database
        from mwlbroker.store.db import DatabaseUnavailable

        if getattr(args, "source", None):
            config = config.with_overrides({"database.url": args.source})
        db = open_database(config)
        try:
            return step(args, db)
        except CommandFailed:
            raise
        except DatabaseUnavailable as error:
            raise CommandFailed(f"database unavailable: {error}") from error
        except Exception as error:  # a driver or migration error: its first line says it
            first_line = str(error).splitlines()[0]
            raise CommandFailed(f"database {db.describe()}: {first_line}") from error
        finally:
            db.dispose()

    return run


@_unprepared
def upgrade(args: argparse.Namespace, db: Database) -> int:
    """Migrate the schema to the head revision of this version."""
    from mwlbroker.store import migrate

    before, after = migrate.upgrade(db)
    if before == after:
        print(f"database {db.describe()} is up to date at revision {after}")
    else:
        print(f"database {db.describe()} upgraded from {before or 'nothing'} to {after}")
    return 0


@_unprepared
def current(args: argparse.Namespace, db: Database) -> int:
    """Print the schema revision, or how to create one."""
    from mwlbroker.store import migrate

    print(migrate.current_revision(db) or "none (run `mwlbroker db upgrade`)")
    return 0


@_unprepared
def copy(args: argparse.Namespace, source: Database) -> int:
    """``db copy --to URL``: move a site from one database to another, the broker stopped."""
    from mwlbroker.config import ConfigError, load_config
    from mwlbroker.store.copy import CopyRefused, copy_database
    from mwlbroker.store.db import Database

    try:
        target_config = load_config(environ={}).with_overrides({"database.url": args.to})
    except ConfigError as error:
        raise CommandFailed(f"--to: {error}", exit_code=2) from error
    target = Database(target_config["database.url"])
    try:
        copied = copy_database(
            source,
            target,
            progress=lambda table, rows: print(f"  {table:24} {rows:>10} rows", flush=True),
        )
    except CopyRefused as error:
        raise CommandFailed(f"nothing copied: {error}") from error
    finally:
        target.dispose()
    print(
        f"copied {sum(copied.values())} rows in {len(copied)} tables from {source.describe()} "
        f"to {target.describe()}"
    )
    return 0
