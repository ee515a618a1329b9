"""The broker's DICOM listener: one AE serving Modality Worklist C-FIND, MPPS, Storage and
Verification.

Latency matters more than throughput here: a modality waits for its worklist. pynetdicom sends
a response's command and data set as two small PDUs, and with Nagle's algorithm the second
waits for the peer's delayed ACK of the first (40 ms or more per message). The accepted
sockets therefore run with TCP_NODELAY, and on Linux re-arm TCP_QUICKACK after every read so
that a client with Nagle on gets its ACK at once.

pynetdicom's reactor sends whatever is queued before it reads the socket, so while a handler
streams pending responses a C-CANCEL (or an A-ABORT) waits behind all of them. Each accepted
association is therefore made to read first whenever the peer has sent something.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    Verification,
)
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from mwlbroker.config import Config
from mwlbroker.dicom.handlers import (
    handle_echo,
    handle_find,
    handle_n_create,
    handle_n_set,
    handle_rejected,
    handle_store,
)
from mwlbroker.dicom.storage import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from mwlbroker.services.progress import ProgressService
from mwlbroker.services.worklist_query import WorklistQueryService
from mwlbroker.store.db import Database

log = logging.getLogger("mwlbroker.dicom")

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


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

    @classmethod
    def from_config(cls, config: Config) -> DicomOptions:
        return cls(
            host=config["dicom.host"],
            port=config["dicom.port"],
            ae_title=config["dicom.ae_title"],
            max_associations=config["dicom.max_associations"],
            acse_timeout=config["dicom.acse_timeout"],
            dimse_timeout=config["dicom.dimse_timeout"],
            network_timeout=config["dicom.network_timeout"],
            max_pdu=config["dicom.max_pdu"],
            allowed_calling_aets=tuple(config["dicom.allowed_calling_aets"]),
            require_called_aet=config["dicom.require_called_aet"],
        )


class DicomServer:
    """The AE and its listening socket; :meth:`start` binds and serves, :meth:`stop` ends it."""

    def __init__(
        self,
        options: DicomOptions,
        worklist: WorklistQueryService,
        progress: ProgressService,
        *,
        owns_worklist: bool = False,
    ) -> None:
        self.options = options
        self.worklist = worklist
        self.progress = progress
        self._owns_worklist = owns_worklist
        self._server: _Server | None = None
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
        # pynetdicom formats every PDU and data set for its log unless told not to; on the
        # response path that costs more than the query itself.
        _config.LOG_HANDLER_LEVEL = "none"
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False

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
        handlers = [
            (evt.EVT_C_FIND, handle_find, [self.worklist]),
            (evt.EVT_N_CREATE, handle_n_create, [self.progress]),
            (evt.EVT_N_SET, handle_n_set, [self.progress]),
            (evt.EVT_C_STORE, handle_store, [self.progress]),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_REJECTED, handle_rejected),
        ]
        server = ae.make_server(
            (options.host, options.port),
            evt_handlers=handlers,
            server_class=_Server,
            request_handler=_ResponsiveRequestHandler,
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
            "DICOM listener on %s:%d as %s",
            *self.address,
            options.ae_title,
            extra={"event": "listening", "listener": "dicom", "port": self.port},
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, abort associations still open, and flush the query log."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            for association in server.active_associations:
                association.abort()
            if self._thread is not None:
                self._thread.join(timeout)
        if self._owns_worklist:
            self.worklist.close(timeout)


def start_dicom_server(
    config: Config, db: Database, progress: ProgressService | None = None
) -> DicomServer:
    """Build the worklist query service and the DICOM listener from the settings, and start it.

    ``progress`` follows MPPS (built from the settings when not given). The returned server
    owns the worklist service it built: ``stop()`` also flushes its query log.
    """
    worklist = WorklistQueryService.from_config(config, db)
    if progress is None:
        progress = ProgressService.from_config(config, db)
    server = DicomServer(DicomOptions.from_config(config), worklist, progress, owns_worklist=True)
    try:
        server.start()
    except BaseException:
        worklist.close()
        raise
    return server


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded association server with low-latency accepted sockets."""

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None
        client, address = self.socket.accept()
        client = _low_latency(client)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True)
        return client, address

    def shutdown(self) -> None:
        # AssociationServer.shutdown also unregisters from AE._servers, which only
        # AE.start_server registers in; this server was made with AE.make_server.
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class _ResponsiveRequestHandler(RequestHandler):
    """Creates each association with a reactor that reads the peer before sending more."""

    def _create_association(self) -> Association:
        association = super()._create_association()
        _read_before_sending(association)
        return association


def _read_before_sending(association: Association) -> None:
    """Let the DUL reactor read an incoming PDU (a C-CANCEL) before its next queued send.

    The reactor calls ``_process_recv_primitive`` first on every turn and reads the socket
    only when that finds nothing to send (pynetdicom 3.0, ``DULServiceProvider.run_reactor``).
    Answering "nothing to send" while the peer has data waiting makes it read that first.
    """
    dul = association.dul
    send_queued = dul._process_recv_primitive

    def process_recv_primitive() -> bool:
        if dul.to_provider_queue.queue and _peer_has_sent(dul.socket):
            return False
        return send_queued()

    dul._process_recv_primitive = process_recv_primitive


def _peer_has_sent(association_socket: Any) -> bool:
    raw = getattr(association_socket, "socket", None)
    if raw is None:
        return False
    try:
        readable, _, _ = select.select([raw], [], [], 0)
    except (OSError, ValueError):
        return False  # the reactor's own check reports a closed connection
    return bool(readable)


class _QuickAckSocket(socket.socket):
    """A socket that asks for an immediate ACK again after each read (Linux TCP_QUICKACK)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        with contextlib.suppress(OSError):
            self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # type: ignore[arg-type]
        return data


def _low_latency(client: socket.socket) -> socket.socket:
    if _QUICKACK is not None and client.family in (socket.AF_INET, socket.AF_INET6):
        timeout = client.gettimeout()
        client = _QuickAckSocket(client.family, client.type, client.proto, client.detach())
        client.settimeout(timeout)
        client.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client
