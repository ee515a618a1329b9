"""Schema migrations with Alembic, run from code so ``mwlbroker db upgrade`` needs no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from mwlbroker.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x6D776C62  # "mwlb": one upgrade at a time when several nodes start together


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this version of the broker needs."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def is_known(revision: str) -> bool:
    """Whether this version of the broker has a migration with that revision."""
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown or malformed revision
        return False


def current_revision(db: Database) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_empty(db: Database) -> bool:
    """True when the database has none of the broker's tables yet."""
    with db.engine.connect() as connection:
        names = set(inspect(connection).get_table_names())
    return not names & {"alembic_version", "message"}


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; returns (revision before, revision after)."""
    before = current_revision(db)
    with db.engine.begin() as connection:
        if not db.is_sqlite:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        command.upgrade(_config(connection), revision)
    return before, current_revision(db) or ""
