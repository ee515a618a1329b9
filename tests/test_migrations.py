"""Schema migrations: a new database gets exactly the tables the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mwlbroker.store import migrate
from mwlbroker.store.db import Database
from mwlbroker.store.tables import metadata


def test_migrations_build_the_declared_schema(database_url):
    db = Database(database_url)
    try:
        before, after = migrate.upgrade(db)
        assert (before, after) == (None, migrate.head_revision())
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        # Upgrading again is harmless.
        assert migrate.upgrade(db) == (after, after)
    finally:
        db.dispose()
