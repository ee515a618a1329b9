"""The composition root: builds the database, services and listeners from the configuration.

Nothing else knows them all, and nothing happens at import time.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from mwlbroker.config import Config
from mwlbroker.hl7v2.listener import MLLPListener
from mwlbroker.mapping.reader import CHARSETS
from mwlbroker.services.ingest import IngestService
from mwlbroker.store import migrate
from mwlbroker.store.db import Database, DatabaseUnavailable

log = logging.getLogger("mwlbroker")


class StartupError(Exception):
    """The broker cannot start; the message says why and what to do."""


def open_database(config: Config) -> Database:
    return Database(config["database.url"], pool_size=config["database.pool_size"])


def build_ingest(config: Config, db: Database) -> IngestService:
    return IngestService(
        db,
        accepted_versions=tuple(config["hl7.accepted_versions"]),
        default_codec=CHARSETS[config["hl7.default_charset"].upper()],
    )


def prepare_database(db: Database) -> None:
    """Create a new database's schema; refuse to run on one that needs an upgrade first.

    A new database (the embedded SQLite file on first start, or an empty PostgreSQL database)
    is migrated here. An existing SQLite file is upgraded too, since nothing else shares it.
    An existing PostgreSQL schema is upgraded only by ``mwlbroker db upgrade``, so that nodes
    of different versions never change a shared schema behind each other's back.
    """
    try:
        current = migrate.current_revision(db)
        head = migrate.head_revision()
        if current == head:
            return
        if db.is_sqlite or migrate.is_empty(db):
            before, after = migrate.upgrade(db)
            log.info("database schema upgraded from %s to %s", before or "nothing", after)
            return
    except DatabaseUnavailable as error:
        raise StartupError(f"database {db.describe()} is unavailable: {error}") from None
    except Exception as error:  # driver errors arrive in many types
        raise StartupError(f"database {db.describe()} cannot be used: {error}") from None
    if current is not None and not migrate.is_known(current):
        raise StartupError(
            f"database schema is at revision {current}, which this version of mwlbroker does "
            f"not know (it needs {head}): the database was upgraded by a newer version"
        )
    raise StartupError(
        f"database schema is at revision {current or 'unknown'} but this version needs {head}; "
        "run `mwlbroker db upgrade`"
    )


class Broker:
    """Everything ``mwlbroker serve`` runs, in one process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = open_database(config)
        self.ingest = build_ingest(config, self.db)
        self.hl7: MLLPListener | None = None  # bound in start(), once the database is ready
        self._stopped = threading.Event()

    def start(self) -> None:
        prepare_database(self.db)
        config = self.config
        try:
            self.hl7 = MLLPListener(
                self.ingest,
                host=config["hl7.host"],
                port=config["hl7.port"],
                max_connections=config["hl7.max_connections"],
                idle_timeout=config["hl7.idle_timeout"],
                max_message_bytes=config["hl7.max_message_bytes"],
                application=config["hl7.application"],
                facility=config["hl7.facility"],
            )
        except OSError as error:
            raise StartupError(
                f"hl7.port: cannot listen on {config['hl7.host']}:{config['hl7.port']}: "
                f"{error.strerror or error}"
            ) from None
        self.hl7.start()
        log.info(
            "mwlbroker ready: database %s, MLLP %s:%d",
            self.db.describe(),
            *self.hl7.address,
            extra={"event": "ready", "hl7_port": self.hl7.port},
        )

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        started = self.hl7 is not None
        if self.hl7 is not None:
            self.hl7.stop()
        self.db.dispose()
        if started:
            log.info("mwlbroker stopped", extra={"event": "stopped"})

    def run(self) -> None:
        """Start, then serve until SIGTERM or SIGINT; stop gracefully."""
        done = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            done.wait()
        finally:
            self.stop()
