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

Each DIMSE message also leaves as one P-DATA-TF PDU when it fits the peer's maximum PDU
length (PS3.8 9.3.5: a PDU carries one or more PDVs), not one PDU for the command and another
for the data set: every PDU costs the reactor a turn of its state machine. Worklist responses
arrive from the handler already encoded (:class:`EncodedDataset`); pynetdicom's C-FIND service
is taught to send those bytes as they are instead of encoding a pydicom Dataset. And pynetdicom
deep-copies the AE's presentation contexts for every association (hundreds of UIDs, each
validated again: most of an association's setup); each association gets a shallow copy.

With a TLS context (dicom.tls_cert), pynetdicom would do the handshake in its accept loop, so
one silent client would hold up every other connection. Accepted sockets are wrapped without a
handshake; it happens on the association's own thread, bounded by dicom.acse_timeout, and a
peer that fails it (plain DICOM, no or a foreign client certificate) is logged and closed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from pynetdicom import AE, _config, evt, service_class
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
from pynetdicom.dimse_primitives import C_FIND, DimsePrimitiveType
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    Verification,
)
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from mwlbroker.dicom.handlers import (
    handle_echo,
    handle_find,
    handle_n_create,
    handle_n_set,
    handle_rejected,
    handle_store,
)
from mwlbroker.dicom.json_encoding import EncodedDataset
from mwlbroker.dicom.metered import metered_find, metered_mpps, metered_store
from mwlbroker.dicom.storage import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from mwlbroker.services.metrics import Metrics
from mwlbroker.services.progress import ProgressService
from mwlbroker.services.worklist_query import WorklistQueryService

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


class DicomServer:
    """The AE and its listening socket; :meth:`start` binds and serves, :meth:`stop` ends it."""

    def __init__(
        self,
        options: DicomOptions,
        worklist: WorklistQueryService,
        progress: ProgressService,
        *,
        owns_worklist: bool = False,
        metrics: Metrics | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.options = options
        self.tls = tls
        self.worklist = worklist
        self.progress = progress
        self.metrics = metrics or Metrics()
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
        _send_encoded_datasets()

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
        server = ae.make_server(
            (options.host, options.port),
            evt_handlers=handlers,
            ssl_context=self.tls,
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
            "DICOM listener on %s:%d as %s%s",
            *self.address,
            options.ae_title,
            " (TLS)" if self.tls is not None else "",
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


def _send_encoded_datasets() -> None:
    """Let pynetdicom's service classes send an :class:`EncodedDataset` as its bytes.

    They call ``pynetdicom.dsutils.encode`` (imported into ``service_class``) on what a handler
    yields; anything other than an EncodedDataset still goes to it. Installed once.
    """
    encode_dataset = service_class.encode
    if getattr(encode_dataset, "passes_encoded", False):
        return

    def encode_or_pass(
        dataset: Any, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False
    ) -> bytes | None:
        if isinstance(dataset, EncodedDataset):
            if dataset.implicit_vr == is_implicit_vr and is_little_endian and not deflated:
                return dataset.data
            log.error("a data set encoded for another transfer syntax was not sent")
            return None  # pynetdicom answers 0xC312, unable to encode
        return encode_dataset(dataset, is_implicit_vr, is_little_endian, deflated)

    encode_or_pass.passes_encoded = True  # type: ignore[attr-defined]
    service_class.encode = encode_or_pass


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded association server with low-latency accepted sockets."""

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int],
        ae_title: str,
        contexts: list[PresentationContext],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(ae, address, ae_title, _SharedContexts(contexts), *args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None
        client, address = self.socket.accept()
        client = _low_latency(client)
        if self.ssl_context:
            # No handshake here, on the accept loop: _ResponsiveRequestHandler does it.
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def shutdown(self) -> None:
        # AssociationServer.shutdown also unregisters from AE._servers, which only
        # AE.start_server registers in; this server was made with AE.make_server.
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class _ResponsiveRequestHandler(RequestHandler):
    """Creates each association with a reactor that reads the peer before sending more."""

    def handle(self) -> None:
        # On this connection's own thread (ThreadingMixIn), not the accept loop.
        if isinstance(self.request, ssl.SSLSocket) and not _tls_handshake(
            self.request, self.client_address, self.server.ae.acse_timeout
        ):
            return
        super().handle()

    def _create_association(self) -> Association:
        association = super()._create_association()
        _read_before_sending(association)
        _one_pdu_per_message(association)
        _wake_on_work(association)
        return association


class _SharedContexts(list[PresentationContext]):
    """The AE's supported contexts; a "deep" copy copies each context, sharing its UIDs.

    ``RequestHandler._create_association`` deep-copies them for every association. UIDs are
    immutable strings, and pydicom validates each again when a deep copy rebuilds it.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for context in self:
            duplicate = copy.copy(context)
            duplicate._transfer_syntax = list(context._transfer_syntax)
            copies.append(duplicate)
        return copies


def _tls_handshake(connection: ssl.SSLSocket, address: Any, timeout: float | None) -> bool:
    """Complete the TLS handshake within ``timeout``; on failure log it and close the socket.

    A peer speaking plain DICOM, presenting no certificate or one the site CA did not sign, or
    saying nothing at all, is refused here before any association exists.
    """
    peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
    previous = connection.gettimeout()
    connection.settimeout(timeout)
    try:
        connection.do_handshake()
    except (ssl.SSLError, OSError) as error:
        log.warning(
            "DICOM %s: TLS handshake failed, connection closed: %s",
            peer,
            getattr(error, "reason", None) or error,
            extra={"event": "tls_refused", "peer": peer},
        )
        with contextlib.suppress(OSError):
            connection.close()
        return False
    connection.settimeout(previous)
    return True


def _one_pdu_per_message(association: Association) -> None:
    """Send a DIMSE message's command and data set in one P-DATA-TF PDU when they fit.

    The same steps as pynetdicom 3.0's ``DIMSEServiceProvider.send_msg``, with the message's
    PDVs packed into as few PDUs as the peer's maximum PDU length allows. The pending
    responses of one C-FIND share their command set, byte for byte: it is encoded once.
    """
    dimse = association.dimse
    commands: dict[tuple[Any, ...], bytes] = {}

    def send_msg(primitive: DimsePrimitiveType, context_id: int) -> None:
        limit = dimse.maximum_pdu_size
        key = _pending_find_key(primitive, context_id)
        if key is not None and association.get_handlers(evt.EVT_DIMSE_SENT):
            key = None  # someone watches each message: build each one
        command = commands.get(key) if key is not None else None
        if command is None:
            if primitive.MessageIDBeingRespondedTo is None:
                message = _RQ_TO_MESSAGE[primitive.__class__]()
            else:
                message = _RSP_TO_MESSAGE[primitive.__class__]()
            message.primitive_to_message(primitive)
            message.context_id = context_id
            evt.trigger(association, evt.EVT_DIMSE_SENT, {"message": message})
            if key is None:
                for pdata in packed_pdvs(message.encode_msg(context_id, limit), limit):
                    dimse.dul.send_pdu(pdata)
                time.sleep(0)
                return
            command = commands[key] = cast(bytes, encode(message.command_set, True, True))
        identifier = cast(BytesIO, primitive.Identifier).getvalue()
        for pdata in packed_pdvs(_message_pdvs(context_id, command, identifier, limit), limit):
            dimse.dul.send_pdu(pdata)
        # This thread goes straight on to build the next response, holding the interpreter
        # lock; the reactor thread that sends this one would wait for it up to the switch
        # interval (5 ms). Let it have the lock now.
        time.sleep(0)

    dimse.send_msg = send_msg


def _pending_find_key(primitive: DimsePrimitiveType, context_id: int) -> tuple[Any, ...] | None:
    """What a pending C-FIND response's command set depends on; None for other messages."""
    if (
        type(primitive) is C_FIND
        and primitive.MessageIDBeingRespondedTo is not None
        and primitive.Status in _PENDING
        and isinstance(primitive.Identifier, BytesIO)
        and primitive.OffendingElement is None
        and primitive.ErrorComment is None
    ):
        return (
            context_id,
            primitive.MessageIDBeingRespondedTo,
            primitive.AffectedSOPClassUID,
            primitive.Status,
        )
    return None


_PENDING = (0xFF00, 0xFF01)  # PS3.4 C.4.1.1.4


def _message_pdvs(context_id: int, command: bytes, dataset: bytes, limit: int) -> Iterator[P_DATA]:
    """A message's PDVs as pynetdicom's ``encode_msg`` makes them (PS3.8 E.2 header bits)."""
    for data, more, last in ((command, 0x01, 0x03), (dataset, 0x00, 0x02)):
        if not data:
            continue
        step = len(data) if limit == 0 else limit - 6
        for start in range(0, len(data), step):
            header = last if start + step >= len(data) else more
            pdata = P_DATA()
            pdata.presentation_data_value_list.append(
                (context_id, bytes((header,)) + data[start : start + step])
            )
            yield pdata


def packed_pdvs(fragments: Iterable[P_DATA], max_pdu: int) -> Iterator[P_DATA]:
    """The PDVs of ``fragments`` in as few P-DATA primitives as ``max_pdu`` allows, in order.

    A PDV item is its length (4 bytes), the context ID (1) and the value (PS3.8 9.3.5.1);
    the items of one PDU fill at most the maximum length, 0 meaning no limit.
    """
    packed: P_DATA | None = None
    size = 0
    for fragment in fragments:
        for item in fragment.presentation_data_value_list:
            item_size = 5 + len(item[1])
            if packed is not None and (max_pdu == 0 or size + item_size <= max_pdu):
                packed.presentation_data_value_list.append(item)
                size += item_size
                continue
            if packed is not None:
                yield packed
            packed = P_DATA()
            packed.presentation_data_value_list.append(item)
            size = item_size
    if packed is not None:
        yield packed


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


_IDLE_WAIT = 0.005  # seconds: how often an idle reactor still checks its timers and kill flag


def _wake_on_work(association: Association) -> None:
    """Make the DUL reactor wait for the peer or for something to send, instead of polling.

    pynetdicom 3.0's reactor sleeps 1 ms whenever a turn finds nothing to do, so every PDU
    in or out waits up to 1 ms. Its idle turn ends in ``_is_transport_event``, which here
    blocks until the socket is readable or ``send_pdu`` queues a primitive (a byte on a
    socket pair wakes it), at most :data:`_IDLE_WAIT`, and then queues the send itself so
    that the same turn carries it out.
    """
    dul = association.dul
    waker, wakened = socket.socketpair()
    waker.setblocking(False)
    wakened.setblocking(False)
    queue_primitive = dul.send_pdu
    is_transport_event = dul._is_transport_event

    def send_pdu(primitive: Any) -> None:
        queue_primitive(primitive)
        with contextlib.suppress(OSError):
            waker.send(b"\0")

    def wait_for_work() -> bool:
        raw = getattr(dul.socket, "socket", None)
        if (
            raw is None
            or _tls_pending(raw)  # decrypted bytes the socket no longer signals
            or not dul.event_queue.empty()  # events still to act on: no waiting
            or dul.state_machine.current_state == "Sta13"
            or dul._kill_thread
        ):
            return is_transport_event()
        try:
            readable, _, _ = select.select([raw, wakened], [], [], _IDLE_WAIT)
        except (OSError, ValueError):
            return is_transport_event()  # closed: pynetdicom's own check reports it
        if wakened in readable:
            with contextlib.suppress(OSError):
                wakened.recv(4096)
        if raw in readable:
            return is_transport_event()
        return dul._process_recv_primitive()

    def close(_event: evt.Event) -> None:
        waker.close()
        wakened.close()

    dul.send_pdu = send_pdu
    dul._is_transport_event = wait_for_work
    association.bind(evt.EVT_CONN_CLOSE, close)


def _tls_pending(raw: Any) -> bool:
    """Whether TLS has decrypted bytes buffered that select() on the socket cannot see."""
    return isinstance(raw, ssl.SSLSocket) and bool(raw.pending())


def _peer_has_sent(association_socket: Any) -> bool:
    raw = getattr(association_socket, "socket", None)
    if raw is None:
        return False
    if _tls_pending(raw):
        return True
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
