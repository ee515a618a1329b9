"""Throwaway databases for the benchmark: a new SQLite file, or a new schema in PostgreSQL.

The benchmark never writes into an existing broker's tables: on PostgreSQL it creates its own
schemas in the database it is given (so it needs the CREATE privilege there) and drops them at
the end; on SQLite it creates new files and removes them.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from mwlbroker.store.db import Database, normalise_url

__all__ = ["ScratchDatabases", "server_description"]


class ScratchDatabases:
    """Creates empty databases on request (:meth:`new`); :meth:`close` removes them all."""

    def __init__(self, url: str | None, folder: Path, *, keep: bool = False) -> None:
        self.keep = keep
        self._folder = folder
        self._base = normalise_url(url) if url else None
        self._tag = uuid.uuid4().hex[:8]
        self._schemas: list[str] = []
        self._files: list[Path] = []

    @property
    def is_sqlite(self) -> bool:
        return self._base is None or self._base.get_backend_name() == "sqlite"

    def new(self, name: str) -> str:
        """The URL of a new, empty database called ``name`` (letters and digits)."""
        if self.is_sqlite:
            folder = self._folder
            if self._base is not None and self._base.database:
                folder = Path(self._base.database).expanduser().resolve().parent
            path = folder / f"mwlbench-{self._tag}-{name}.db"
            self._files.append(path)
            return f"sqlite:///{path}"
        assert self._base is not None
        schema = f"mwlbench_{self._tag}_{name}"
        engine = create_engine(self._base)
        try:
            with engine.begin() as connection:
                connection.execute(text(f"CREATE SCHEMA {schema}"))
        finally:
            engine.dispose()
        self._schemas.append(schema)
        url = self._base.update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def close(self) -> None:
        """Drop the schemas and delete the files made (unless told to keep them)."""
        if self.keep:
            return
        for path in self._files:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        if self._schemas:
            assert self._base is not None
            engine = create_engine(self._base)
            try:
                with engine.begin() as connection:
                    for schema in self._schemas:
                        connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            finally:
                engine.dispose()
        self._files.clear()
        self._schemas.clear()

    def kept(self) -> list[str]:
        """Where the kept databases are: files and schemas."""
        return [str(p) for p in self._files] + self._schemas


def server_description(url: str) -> str:
    """The database server and the settings that decide commit durability, in one line."""
    db = Database(url, pool_size=1)
    try:
        if db.is_sqlite:
            return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL)"
        with db.engine.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar()
            commit = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
            fsync = connection.exec_driver_sql("SHOW fsync").scalar()
        return f"PostgreSQL {version} (synchronous_commit={commit}, fsync={fsync})"
    finally:
        db.dispose()
