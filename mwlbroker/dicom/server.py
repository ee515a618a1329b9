"""The broker's DICOM listener: one AE serving Modality Worklist C-FIND, MPPS, Storage and
Verification.

Latency matters more than throughput here: a modality waits for its worklist. The AE's server
and its associations are therefore tuned (low-latency sockets, one PDU per message, worklist
responses sent as already-encoded bytes, a reactor that reads a C-CANCEL first, the TLS
handshake off the accept loop); :mod:`mwlbroker.dicom.association_tuning` does all of that,
and is the only module that touches pynetdicom's internals.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass

from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    Verification,
)

from mwlbroker.dicom.association_tuning import (
    TunedAssociationServer,
    make_server,
    tune_process,
)
from mwlbroker.dicom.handlers import (
    handle_echo,
    handle_find,
    handle_n_create,
    handle_n_set,
    handle_rejected,
    handle_store,
)
from mwlbroker.dicom.metered import metered_find, metered_mpps, metered_store
from mwlbroker.dicom.storage import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from mwlbroker.services.metrics import Metrics
from mwlbroker.services.progress import ProgressService
from mwlbroker.services.worklist_query import WorklistQueryService

log = logging.getLogger("mwlbroker.dicom")


@dataclass(frozen=True)
class DicomOptions:
    """The [dicom] settings of the listener itself."""

    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "MWLBROKER"
    max_associations: int = 20
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0
    max_pdu: int = 16382
    allowed_calling_aets: tuple[str, ...] = ()
    require_called_aet: bool = False


class DicomServer:
    """The AE and its listening socket; :meth:`start` binds and serves, :meth:`stop` ends it."""

    def __init__(
        self,
        options: DicomOptions,
        worklist: WorklistQueryService,
        progress: ProgressService,
        *,
        metrics: Metrics | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.options = options
        self.tls = tls
        self.worklist = worklist
        self.progress = progress
        self.metrics = metrics or Metrics()
        self._server: TunedAssociationServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the DICOM listener is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self) -> None:
        """Bind the port and serve on a thread; raises OSError when the port cannot be bound."""
        options = self.options
        tune_process()  # process-wide, before the server binds its default handlers

        ae = AE(ae_title=options.ae_title)
        ae.maximum_associations = options.max_associations
        ae.acse_timeout = options.acse_timeout
        ae.dimse_timeout = options.dimse_timeout
        ae.network_timeout = options.network_timeout
        ae.maximum_pdu_size = options.max_pdu
        # PS3.8 9.3.4: rejected-permanent, service-user, calling / called AE title not recognized
        ae.require_calling_aet = list(options.allowed_calling_aets)
        ae.require_called_aet = options.require_called_aet
        ae.add_supported_context(ModalityWorklistInformationFind)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        ae.add_supported_context(Verification)
        for storage_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(storage_class, list(TRANSFER_SYNTAXES))
        metrics = self.metrics
        handlers = [
            (evt.EVT_C_FIND, metered_find(handle_find, metrics), [self.worklist]),
            (evt.EVT_N_CREATE, metered_mpps(handle_n_create, metrics, "N-CREATE"), [self.progress]),
            (evt.EVT_N_SET, metered_mpps(handle_n_set, metrics, "N-SET"), [self.progress]),
            (evt.EVT_C_STORE, metered_store(handle_store, metrics), [self.progress]),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_REJECTED, handle_rejected),
            (evt.EVT_CONN_OPEN, lambda _event: metrics.dicom_associations.inc()),
            (evt.EVT_CONN_CLOSE, lambda _event: metrics.dicom_associations.dec()),
        ]
        server = make_server(
            ae, (options.host, options.port), evt_handlers=handlers, ssl_context=self.tls
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="dicom-accept",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "DICOM listener on %s:%d as %s%s",
            *self.address,
            options.ae_title,
            " (TLS)" if self.tls is not None else "",
            extra={"event": "listening", "listener": "dicom", "port": self.port},
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting and abort associations still open (the worklist's owner closes it)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            for association in server.active_associations:
                association.abort()
            if self._thread is not None:
                self._thread.join(timeout)


def start_dicom_server(
    options: DicomOptions,
    worklist: WorklistQueryService,
    progress: ProgressService,
    metrics: Metrics | None = None,
    *,
    tls: ssl.SSLContext | None = None,
) -> DicomServer:
    """Start the DICOM listener on the services the composition root built and hands it.

    ``worklist`` answers C-FIND (its query log is started and closed by its owner, not here),
    ``progress`` follows MPPS and received images; with ``tls`` the listener speaks DICOM over
    TLS only.
    """
    server = DicomServer(options, worklist, progress, metrics=metrics, tls=tls)
    server.start()
    return server
