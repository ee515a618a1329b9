"""Hands a command a prepared database: opened from the configuration, its schema created (or
refused when it needs ``db upgrade``), and disposed of whatever the command does.

A database that cannot be reached, or a broker that cannot start on it (a mapping file in
error, a schema from another version), ends the command with exit code 1 and the reason.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from mwlbroker.cli.output import CommandFailed

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.store.db import Database, Session

T = TypeVar("T")

DatabaseHandler = Callable[[argparse.Namespace, "Config", "Database"], int]


def run_on(db: Database, work: Callable[[Database], int]) -> int:
    """Prepare ``db``, run ``work`` on it and dispose of it; the one place the failures of a
    database or of start-up become the command's exit code."""
    from mwlbroker.app import StartupError, prepare_database
    from mwlbroker.store.db import DatabaseUnavailable

    try:
        prepare_database(db)
        return work(db)
    except (DatabaseUnavailable, StartupError) as error:
        raise CommandFailed(str(error)) from error
    finally:
        db.dispose()


def with_database(
    handler: DatabaseHandler,
) -> Callable[[argparse.Namespace, Config], int]:
    """A command that works on the configured database, which it is handed prepared."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, config: Config) -> int:
        from mwlbroker.app import open_database

        return run_on(open_database(config), lambda db: handler(args, config, db))

    return run


def read(db: Database, query: Callable[[Session], T]) -> T:
    """What ``query`` reads in one short read-only session (the rows stay readable after)."""
    with db.reading() as session:
        return query(session)


def read_one(db: Database, get: Callable[[Session, int], T | None], record_id: int, noun: str) -> T:
    """The record ``get`` finds by its id; without one the command fails: no NOUN with id N."""
    found = read(db, lambda session: get(session, record_id))
    if found is None:
        raise CommandFailed(f"no {noun} with id {record_id}")
    return found
