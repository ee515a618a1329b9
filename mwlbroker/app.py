"""The composition root: builds the database, services and listeners from the configuration.

Nothing else knows them all, and nothing happens at import time.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from mwlbroker.config import Config
from mwlbroker.dicom.forward import Forwarder
from mwlbroker.dicom.server import DicomServer, start_dicom_server
from mwlbroker.hl7v2.charsets import CHARSETS
from mwlbroker.mapping.engine import MappingSet, load_mappings
from mwlbroker.mapping.loader import MappingLoadError
from mwlbroker.mllp.listener import MLLPListener
from mwlbroker.mllp.outbound import OutboundSender
from mwlbroker.options import (
    dicom_options,
    forward_options,
    outbound_options,
    progress_options,
    retention_policy,
    worklist_query_options,
)
from mwlbroker.scheduling.scheduler import Chore, Scheduler
from mwlbroker.services.accounts import AccountService
from mwlbroker.services.acknowledgments import Acknowledgments
from mwlbroker.services.forward import ForwardService
from mwlbroker.services.ingest import Applier, IngestService
from mwlbroker.services.jobs import Job, JobRunner
from mwlbroker.services.maintenance import MaintenanceService
from mwlbroker.services.metrics import Metrics
from mwlbroker.services.orders import OrderService
from mwlbroker.services.outbound import OutboundService
from mwlbroker.services.patients import PatientService
from mwlbroker.services.progress import ProgressService
from mwlbroker.services.reconciliation import ReconciliationService
from mwlbroker.services.worklist_query import WorklistQueryService
from mwlbroker.store import migrate
from mwlbroker.store.db import Database, DatabaseUnavailable
from mwlbroker.store.files import InstanceFiles
from mwlbroker.tls import TLSConfigError, server_context
from mwlbroker.web import WebContext, create_app
from mwlbroker.web.secret import load_or_create_secret
from mwlbroker.web.server import WebServer

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
    outbound: OutboundService | None = None,
    *,
    acknowledgments: bool = True,
) -> IngestService:
    """The intake service with an applier for each message type the mappings handle.

    New steps are offered to reconciliation, which links the performed steps and studies
    that arrived before their order. Application acknowledgments (enhanced mode) go to
    ``outbound``'s queue; ``acknowledgments=False`` (files loaded by an operator) answers every
    message in original mode with a plain ACK and queues none.
    """
    mappings = mappings if mappings is not None else load_site_mappings(config)
    outbound = outbound or build_outbound(config, db)
    if acknowledgments:
        check_acknowledgment_destinations(mappings, outbound)
    orders = OrderService(mappings)
    reconciliation = reconciliation or build_reconciliation(config, db)
    orders.steps_listeners.append(reconciliation.rematch)
    # The registry's applier names; the intake routes each mapped type to its applier.
    appliers: dict[str, Applier] = {"orders": orders, "patients": PatientService(mappings)}
    return IngestService(
        db,
        accepted_versions=tuple(config["hl7.accepted_versions"]),
        default_codec=CHARSETS[config["hl7.default_charset"].upper()],
        appliers=appliers,
        mapped=mappings.supported_types,
        acknowledgments=Acknowledgments(
            mappings,
            outbound,
            application=config["hl7.application"],
            facility=config["hl7.facility"],
        )
        if acknowledgments
        else None,
    )


def check_acknowledgment_destinations(mappings: MappingSet, outbound: OutboundService) -> None:
    """Every profile's acknowledgment_destination is a configured destination, or start-up stops."""
    names = {destination.name for destination in outbound.destinations}
    for profile in mappings.profiles:
        wanted = profile.acknowledgment_destination
        if profile.enabled and wanted and wanted not in names:
            raise StartupError(
                f"mappings.dir: profile {profile.name} ({profile.file}): "
                f"acknowledgment_destination {wanted!r} is not an [[outbound.destinations]] name "
                f"(configured: {', '.join(sorted(names)) or 'none'})",
                exit_code=2,
            )


def build_outbound(config: Config, db: Database) -> OutboundService:
    """The outbound queue of status messages for the [outbound] destinations."""
    return OutboundService(db, outbound_options(config))


def build_forward(config: Config, db: Database, files: InstanceFiles) -> ForwardService:
    """The forward queue of received instances for the [forward] PACS, spooled in ``files``."""
    return ForwardService(
        db, forward_options(config), files, keep_files=config["storage.keep_files"]
    )


def build_worklist_query(config: Config, db: Database) -> WorklistQueryService:
    """The Modality Worklist query service; its query log starts with ``start()``."""
    return WorklistQueryService(db, worklist_query_options(config))


def build_progress(config: Config, db: Database, outbound: OutboundService) -> ProgressService:
    """Exam progress (MPPS, image receipt), queueing a status message per change it makes."""
    progress = ProgressService(db, progress_options(config))
    progress.listeners.append(outbound.on_status_changes)
    progress.after_commit.append(outbound.wakeup.wake)
    return progress


def build_reconciliation(
    config: Config,
    db: Database,
    progress: ProgressService | None = None,
    outbound: OutboundService | None = None,
) -> ReconciliationService:
    """Patient identity reconciliation, moving steps on (and telling the RIS) as progress does."""
    outbound = outbound or build_outbound(config, db)
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


def build_jobs(
    config: Config,
    db: Database,
    outbound: OutboundService,
    progress: ProgressService,
    reconciliation: ReconciliationService,
) -> JobRunner:
    """The scheduled jobs ([jobs] schedules, [retention] ages), ready to run by name."""
    maintenance = MaintenanceService(db, retention_policy(config), progress.files)

    def sweep() -> str:
        done = reconciliation.sweep_duplicates()
        return (
            f"{done.candidates} likely duplicate pair(s) among {done.patients} patient(s) "
            f"in {done.seconds:.1f} s"
        )

    jobs = [
        Job(
            "expire_steps",
            "take steps whose start passed retention.expire_steps_hours ago off the worklist",
            config["jobs.expire_steps"],
            maintenance.expire_steps,
        ),
        Job(
            "retention",
            "purge messages, outbound messages, MPPS, studies, query log and job runs by age",
            config["jobs.retention"],
            maintenance.purge,
        ),
        Job(
            "outbound_retry",
            "give outbound messages held as failed another round of attempts",
            config["jobs.outbound_retry"],
            outbound.retry_failed,
        ),
        Job(
            "duplicate_sweep",
            "find likely duplicate patients for the reconciliation list",
            config["jobs.duplicate_sweep"],
            sweep,
        ),
        Job(
            "health_check",
            "reach the database and record how long it took",
            config["jobs.health_check"],
            maintenance.health_check,
        ),
    ]
    return JobRunner(db, jobs, lease_seconds=config["jobs.lease_seconds"])


def _listener_tls(config: Config, section: str) -> ssl.SSLContext | None:
    """The TLS context of the ``hl7`` or ``dicom`` listener from its tls_* settings, or None
    for plain MLLP/DICOM; a bad file stops start-up (exit code 2) naming the setting."""
    cert, key, ca = (config[f"{section}.tls_{name}"] for name in ("cert", "key", "ca"))
    if not (cert or key):
        if ca:
            raise StartupError(
                f"{section}.tls_ca needs {section}.tls_cert and {section}.tls_key", exit_code=2
            )
        return None
    try:
        return server_context(cert, key, ca, setting=f"{section}.tls")
    except TLSConfigError as error:
        raise StartupError(str(error), exit_code=2) from None


class Broker:
    """Everything ``mwlbroker serve`` runs, in one process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = open_database(config)
        self.ingest: IngestService | None = None  # built in start(): mappings can fail to load
        self.hl7: MLLPListener | None = None  # bound in start(), once the database is ready
        self.dicom: DicomServer | None = None
        self.worklist = build_worklist_query(config, self.db)  # its query log starts in start()
        self.outbound = build_outbound(config, self.db)
        self.progress = build_progress(config, self.db, self.outbound)
        self.reconciliation = build_reconciliation(config, self.db, self.progress, self.outbound)
        self.forward: ForwardService | None = None
        if config["forward.host"]:
            assert self.progress.files is not None
            self.forward = build_forward(config, self.db, self.progress.files)
            self.progress.instance_listeners.append(self.forward.on_instance)
            self.progress.after_commit.append(self.forward.wakeup.wake)
        self.senders: list[OutboundSender] = []
        self.forwarder: Forwarder | None = None
        self.jobs = build_jobs(config, self.db, self.outbound, self.progress, self.reconciliation)
        self.scheduler: Scheduler | None = None
        self.accounts = AccountService(self.db)
        self.metrics = Metrics(self.db, leader=lambda: self.jobs.leader)
        self.web: WebServer | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()

    def listeners(self) -> dict[str, bool]:
        """Each listener and whether it is up: all of them once start() is through."""
        ready = self._ready.is_set() and not self._stopped.is_set()
        return {
            "hl7": ready and self.hl7 is not None,
            "dicom": ready and self.dicom is not None,
            "web": ready and self.web is not None,
        }

    def build_web_app(self) -> Any:
        """The Flask application of the web page and API, on this broker's services."""
        config = self.config
        context = WebContext(
            db=self.db,
            accounts=self.accounts,
            ingest=lambda: self.ingest,
            listeners=self.listeners,
            destinations=tuple(d.name for d in self.outbound.destinations),
            metrics=self.metrics,
            jobs=self.jobs,
            worklist_statuses=tuple(config["dicom.worklist_statuses"]),
            reconciliation=self.reconciliation,
        )
        return create_app(
            context,
            secret_key=config["web.secret_key"] or load_or_create_secret(),
            secure_cookies=config["web.secure_cookies"],
            proxy_hops=config["web.proxy_hops"],
        )

    def start(self) -> None:
        config = self.config
        self.ingest = build_ingest(
            config, self.db, reconciliation=self.reconciliation, outbound=self.outbound
        )
        prepare_database(self.db)
        # Every certificate is checked before anything listens.
        hl7_tls, dicom_tls = _listener_tls(config, "hl7"), _listener_tls(config, "dicom")
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
                tls=hl7_tls,
                metrics=self.metrics,
            )
        except OSError as error:
            raise StartupError(
                f"hl7.port: cannot listen on {config['hl7.host']}:{config['hl7.port']}: "
                f"{error.strerror or error}"
            ) from None
        self.hl7.start()
        self.worklist.start()
        try:
            self.dicom = start_dicom_server(
                dicom_options(config), self.worklist, self.progress, self.metrics, tls=dicom_tls
            )
        except OSError as error:
            raise StartupError(
                f"dicom.port: cannot listen on {config['dicom.host']}:{config['dicom.port']}: "
                f"{error.strerror or error}"
            ) from None
        try:
            self.web = WebServer(self.build_web_app(), config["web.host"], config["web.port"])
        except OSError as error:
            raise StartupError(
                f"web.port: cannot listen on {config['web.host']}:{config['web.port']}: "
                f"{error.strerror or error}"
            ) from None
        self.web.start()
        for destination in self.outbound.destinations:
            try:
                sender = OutboundSender(self.outbound, destination)
            except TLSConfigError as error:
                raise StartupError(str(error), exit_code=2) from None
            sender.start()
            self.senders.append(sender)
        if self.forward is not None:
            try:
                self.forwarder = Forwarder(self.forward)
            except TLSConfigError as error:
                raise StartupError(str(error), exit_code=2) from None
            self.forwarder.start()
        # Studies whose images have gone quiet complete their steps (progress.complete_on).
        quiet = config["progress.images_quiet_seconds"]
        settle = Chore(
            "settle-studies", min(max(quiet / 4, 0.2), 5.0), self.progress.settle_studies
        )
        self.scheduler = Scheduler(self.jobs, [settle])
        self.scheduler.start()
        self._ready.set()
        log.info(
            "mwlbroker ready: database %s, MLLP %s:%d, DICOM %s on %s:%d, HTTP %s:%d",
            self.db.describe(),
            *self.hl7.address,
            config["dicom.ae_title"],
            *self.dicom.address,
            *self.web.address,
            extra={
                "event": "ready",
                "hl7_port": self.hl7.port,
                "dicom_port": self.dicom.port,
                "web_port": self.web.port,
            },
        )

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        started = self.hl7 is not None
        if self.web is not None:
            self.web.stop()
        if self.hl7 is not None:
            self.hl7.stop()
        if self.dicom is not None:
            self.dicom.stop()
        self.worklist.close()  # flushes the query log, so before the database goes
        if self.scheduler is not None:
            self.scheduler.stop()
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
