"""Engines and transactions, tuned so that a commit means the data is on disk."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mwlbroker.domain.masking import mask_url

# Session is re-exported so that services can type what they are handed without importing
# SQLAlchemy themselves (the import contract keeps it in the store).
__all__ = ["Database", "DatabaseUnavailable", "DuplicateKey", "Session"]


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refused the transaction; nothing was committed."""


class DuplicateKey(Exception):
    """A unique constraint refused the row: another transaction committed the same key first."""


def is_duplicate_key(error: BaseException) -> bool:
    """Whether an error raised inside a transaction is a unique constraint refusing a row."""
    return isinstance(error, IntegrityError | DuplicateKey)


def normalise_url(url: str) -> URL:
    """Pick psycopg 3 for ``postgresql://`` URLs, whatever SQLAlchemy's own default driver is."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Database:
    """One engine per process, and the transaction discipline every service uses."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._create_engine(pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads need no write lock: on SQLite they begin DEFERRED and see a WAL snapshot, so a
        # worklist query never waits for the intake's commit (nor the intake for the query).
        self._read_sessions = sessionmaker(
            self.engine.execution_options(mwlbroker_read=True), expire_on_commit=False
        )
        # SQLite has one writer at a time; queueing writers here is cheaper and fairer than
        # letting threads poll SQLite's busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def _create_engine(self, pool_size: int) -> Engine:
        if not self.is_sqlite:
            return create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_recycle=1800,
            )
        database = self.url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below decide how transactions start.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL syncs the WAL on every commit: a committed (and ACKed) message survives
            # a power cut, not only a crash of the process.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            # IMMEDIATE takes the write lock up front: a read-then-write transaction can then
            # never fail halfway with "database is locked". Read-only sessions begin deferred.
            if connection.get_execution_options().get("mwlbroker_read"):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on exit, or rolled back on any error."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as error:
            raise DuplicateKey(str(error.orig)) from error
        except DBAPIError as error:
            # Unreachable, restarting, read-only, disk full, schema gone: in every case nothing
            # was committed, which is all a caller deciding about an ACK needs to know.
            raise DatabaseUnavailable(_short(error)) from error
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A short read-only session; nothing it does is committed.

        Closing (not rolling back) leaves the loaded rows readable after the block. A driver
        error (unreachable, restarting, schema gone) becomes :class:`DatabaseUnavailable`, as
        in :meth:`transaction`, so a reader catches one error rather than the driver's many.
        """
        try:
            with self._read_sessions() as session:
                yield session
        except DBAPIError as error:
            raise DatabaseUnavailable(_short(error)) from error

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except DBAPIError as error:
            raise DatabaseUnavailable(_short(error)) from error

    def describe(self) -> str:
        """The URL with its password hidden, for logs."""
        return mask_url(self.url.render_as_string(hide_password=True))

    def dispose(self) -> None:
        self.engine.dispose()


def _short(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)
