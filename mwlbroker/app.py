"""The composition root: builds the database, services and listeners from the configuration.

Nothing else knows them all, and nothing happens at import time.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from mwlbroker.config import Config
from mwlbroker.dicom.forward import Forwarder
from mwlbroker.dicom.server import DicomServer, start_dicom_server
from mwlbroker.hl7v2.listener import MLLPListener
from mwlbroker.hl7v2.outbound import OutboundSender
from mwlbroker.mapping.engine import MappingSet, load_mappings
from mwlbroker.mapping.loader import MappingLoadError
from mwlbroker.mapping.reader import CHARSETS
from mwlbroker.services.forward import ForwardService
from mwlbroker.services.ingest import Applier, IngestService
from mwlbroker.services.orders import ORDER_TYPES, OrderService
from mwlbroker.services.outbound import OutboundService
from mwlbroker.services.patients import TRIGGERS as PATIENT_TRIGGERS
from mwlbroker.services.patients import PatientService
from mwlbroker.services.progress import ProgressService
from mwlbroker.services.reconciliation import ReconciliationService
from mwlbroker.store import migrate
from mwlbroker.store.db import Database, DatabaseUnavailable

log = logging.getLogger("mwlbroker")


class StartupError(Exception):
    """The broker cannot start; the message says why and what to do."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2 for configuration (and mapping file) errors


def open_database(config: Config) -> Database:
    return Database(config["database.url"], pool_size=config["database.pool_size"])


def mappings_folder(config: Config) -> Path | None:
    """The site's mapping folder, or ``None`` for the mappings that ship with the broker."""
    return Path(config["mappings.dir"]) if config["mappings.dir"] else None


def load_site_mappings(config: Config) -> MappingSet:
    """Load and validate every mapping file; a broken one stops start-up with FILE:LINE."""
    try:
        return load_mappings(mappings_folder(config))
    except MappingLoadError as error:
        raise StartupError(
            "mappings.dir: the mapping files have errors (see `mwlbroker mappings check`):\n"
            + "\n".join(str(problem) for problem in error.errors),
            exit_code=2,
        ) from None


def build_ingest(
    config: Config,
    db: Database,
    mappings: MappingSet | None = None,
    reconciliation: ReconciliationService | None = None,
) -> IngestService:
    """The intake service with an applier for each message type the mappings handle.

    New steps are offered to reconciliation, which links the performed steps and studies
    that arrived before their order.
    """
    mappings = mappings if mappings is not None else load_site_mappings(config)
    orders = OrderService(mappings)
    reconciliation = reconciliation or build_reconciliation(config, db)
    orders.steps_listeners.append(reconciliation.rematch)
    patients = PatientService(mappings)
    appliers: dict[str, Applier] = {}
    for type_name in ORDER_TYPES:
        if mappings.handles(type_name):
            appliers[type_name] = orders.apply
    for trigger in PATIENT_TRIGGERS:
        if mappings.handles(f"ADT^{trigger}"):
            appliers[f"ADT^{trigger}"] = patients.apply
    return IngestService(
        db,
        accepted_versions=tuple(config["hl7.accepted_versions"]),
        default_codec=CHARSETS[config["hl7.default_charset"].upper()],
        appliers=appliers,
    )


def build_progress(config: Config, db: Database, outbound: OutboundService) -> ProgressService:
    """Exam progress (MPPS, image receipt), queueing a status message per change it makes."""
    progress = ProgressService.from_config(config, db)
    progress.listeners.append(outbound.on_status_changes)
    progress.after_commit.append(outbound.wake)
    return progress


def build_reconciliation(
    config: Config,
    db: Database,
    progress: ProgressService | None = None,
    outbound: OutboundService | None = None,
) -> ReconciliationService:
    """Patient identity reconciliation, moving steps on (and telling the RIS) as progress does."""
    outbound = outbound or OutboundService.from_config(config, db)
    progress = progress or build_progress(config, db, outbound)
    return ReconciliationService(db, progress, outbound)


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


class Periodic:
    """Calls a service function every few seconds on its own thread; a failure is logged.

    (A stand-in for the scheduler to come: each job is one call into a service.)
    """

    def __init__(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        self.name = name
        self.seconds = seconds
        self.job = job
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self.seconds):
            try:
                self.job()
            except Exception:  # the database may be restarting: try again next time
                log.exception("%s failed", self.name)


class Broker:
    """Everything ``mwlbroker serve`` runs, in one process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = open_database(config)
        self.ingest: IngestService | None = None  # built in start(): mappings can fail to load
        self.hl7: MLLPListener | None = None  # bound in start(), once the database is ready
        self.dicom: DicomServer | None = None
        self.outbound = OutboundService.from_config(config, self.db)
        self.progress = build_progress(config, self.db, self.outbound)
        self.reconciliation = build_reconciliation(config, self.db, self.progress, self.outbound)
        self.forward: ForwardService | None = None
        if config["forward.host"]:
            assert self.progress.files is not None
            self.forward = ForwardService.from_config(config, self.db, self.progress.files)
            self.progress.instance_listeners.append(self.forward.on_instance)
            self.progress.after_commit.append(self.forward.wake)
        self.senders: list[OutboundSender] = []
        self.forwarder: Forwarder | None = None
        self.periodic: list[Periodic] = []
        self._stopped = threading.Event()

    def start(self) -> None:
        config = self.config
        self.ingest = build_ingest(config, self.db, reconciliation=self.reconciliation)
        prepare_database(self.db)
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
        try:
            self.dicom = start_dicom_server(config, self.db, self.progress)
        except OSError as error:
            raise StartupError(
                f"dicom.port: cannot listen on {config['dicom.host']}:{config['dicom.port']}: "
                f"{error.strerror or error}"
            ) from None
        for destination in self.outbound.destinations:
            sender = OutboundSender(self.outbound, destination)
            sender.start()
            self.senders.append(sender)
        if self.forward is not None:
            self.forwarder = Forwarder(self.forward)
            self.forwarder.start()
        # Studies whose images have gone quiet complete their steps (progress.complete_on).
        quiet = config["progress.images_quiet_seconds"]
        settle = Periodic(
            "settle-studies", min(max(quiet / 4, 0.2), 5.0), self.progress.settle_studies
        )
        settle.start()
        self.periodic.append(settle)
        log.info(
            "mwlbroker ready: database %s, MLLP %s:%d, DICOM %s on %s:%d",
            self.db.describe(),
            *self.hl7.address,
            config["dicom.ae_title"],
            *self.dicom.address,
            extra={"event": "ready", "hl7_port": self.hl7.port, "dicom_port": self.dicom.port},
        )

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        started = self.hl7 is not None
        if self.hl7 is not None:
            self.hl7.stop()
        if self.dicom is not None:
            self.dicom.stop()  # flushes the query log, so before the database goes
        for job in self.periodic:
            job.stop()
        for sender in self.senders:
            sender.stop()
        if self.forwarder is not None:
            self.forwarder.stop()
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
