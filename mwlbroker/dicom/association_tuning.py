"""How the broker's associations differ from stock pynetdicom: the one module that touches its
internals.

Everything here leans on names pynetdicom does not promise to keep (a leading underscore, or
a method whose steps are copied and changed), so it lives in one place, and
``tests/test_pynetdicom_seam.py`` fingerprints each of them: it fails, naming what changed,
when the installed pynetdicom is not the one these were checked against. The rest of the DICOM
edge uses only the public names below: :func:`tune_process`, :func:`make_server`,
:class:`TunedAssociationServer`, :class:`ClientAE` and :func:`packed_pdvs`.

Latency matters more than throughput on the listener: a modality waits for its worklist.
pynetdicom sends a response's command and data set as two small PDUs, and with Nagle's
algorithm the second waits for the peer's delayed ACK of the first (40 ms or more per
message). The accepted sockets therefore run with TCP_NODELAY, and on Linux re-arm
TCP_QUICKACK after every read so that a client with Nagle on gets its ACK at once.

pynetdicom's reactor sends whatever is queued before it reads the socket, so while a handler
streams pending responses a C-CANCEL (or an A-ABORT) waits behind all of them. Each accepted
association is therefore made to read first whenever the peer has sent something; and its
reactor waits for the peer or for something to send instead of sleeping 1 ms a turn.

Each DIMSE message also leaves as one P-DATA-TF PDU when it fits the peer's maximum PDU
length (PS3.8 9.3.5: a PDU carries one or more PDVs), not one PDU for the command and another
for the data set: every PDU costs the reactor a turn of its state machine. Worklist responses
arrive from the handler already encoded (:class:`EncodedDataset`); pynetdicom's C-FIND service
is taught to send those bytes as they are instead of encoding a pydicom Dataset. And pynetdicom
deep-copies the AE's presentation contexts for every association (hundreds of UIDs, each
validated again: most of an association's setup); each association gets a shallow copy.

With a TLS context, pynetdicom would do the handshake in its accept loop, so one silent client
would hold up every other connection. Accepted sockets are wrapped without a handshake; it
happens on the association's own thread, bounded by the ACSE timeout, and a peer that fails it
(plain DICOM, no or a foreign client certificate) is logged and closed.

As a requestor (the PACS forwarder, the worklist SCU, the modality emulator), pynetdicom leaks
the socket when the connection is refused: it calls ``shutdown()`` before ``close()`` in one
``try``, and shutdown of a socket that never connected raises first. A forwarder retrying a
PACS that is down would leak one socket per attempt; :class:`ClientAE` always closes it.

Internals relied on, checked against pynetdicom 3.0.4 (:data:`CHECKED_AGAINST`):

- ``pynetdicom._config.LOG_HANDLER_LEVEL``, ``pynetdicom._config.LOG_REQUEST_IDENTIFIERS``
  and ``pynetdicom._config.LOG_RESPONSE_IDENTIFIERS``: process-wide switches, set by
  :func:`tune_process` before a server exists, because
  ``pynetdicom.transport.AssociationServer._bind_defaults`` reads the first when the server is
  built (pynetdicom formats every PDU and data set for its log unless told not to).
- ``pynetdicom.service_class.encode``: the name ``pynetdicom.service_class.ServiceClass._c_find_scp``
  calls to encode each pending identifier; replaced once, process-wide, by one that passes an
  :class:`EncodedDataset` through and hands anything else to ``pynetdicom.dsutils.encode``.
- ``pynetdicom.dimse.DIMSEServiceProvider.send_msg``: replaced on each accepted association by
  the same steps with the PDVs packed; it builds messages from ``pynetdicom.dimse._RQ_TO_MESSAGE``
  and ``pynetdicom.dimse._RSP_TO_MESSAGE``, and writes PDVs as
  ``pynetdicom.dimse_messages.DIMSEMessage.encode_msg`` does (PS3.8 E.2 header bits).
- ``pynetdicom.dul.DULServiceProvider.run_reactor``: sends before it reads and sleeps
  ``_run_loop_delay`` on an idle turn; on each accepted association
  ``pynetdicom.dul.DULServiceProvider._process_recv_primitive`` and
  ``pynetdicom.dul.DULServiceProvider._is_transport_event`` are wrapped, and ``_kill_thread``
  (set in ``pynetdicom.dul.DULServiceProvider.__init__``) is read, to change that order and wait.
- ``pynetdicom.transport.RequestHandler._create_association``: extended, and relied on to
  deep-copy the server's ``contexts``; ``pynetdicom.presentation.PresentationContext.__init__``
  keeps the transfer syntaxes in ``_transfer_syntax``, which the shallow copy copies.
- ``pynetdicom.ae.ApplicationEntity.make_server``: builds ``server_class(ae, address, ae_title,
  contexts, ...)`` as ``pynetdicom.transport.AssociationServer.__init__`` takes them;
  ``pynetdicom.transport.AssociationServer.get_request`` is replaced (no handshake there) and
  ``pynetdicom.transport.AssociationServer.shutdown`` bypassed, since it unregisters from
  ``AE._servers``, where only ``AE.start_server`` registers.
- ``pynetdicom.ae.ApplicationEntity._create_socket`` and
  ``pynetdicom.transport.AssociationSocket._shutdown_socket``: overridden by :class:`ClientAE`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import select
import socket
import socketserver
import ssl
import time
from collections.abc import Iterable, Iterator
from io import BytesIO
from typing import Any, cast

from pynetdicom import AE, _config, evt, service_class
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
from pynetdicom.dimse_primitives import C_FIND, DimsePrimitiveType
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import (
    AddressInformation,
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from mwlbroker.dicom.json_encoding import EncodedDataset

log = logging.getLogger("mwlbroker.dicom")

CHECKED_AGAINST = ("3.0.4",)  # pynetdicom versions whose internals were read against this module

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def tune_process() -> None:
    """Apply the process-wide pynetdicom settings the listener needs; safe to call again.

    Called when the listener starts, before its server is built (never at import): pynetdicom
    reads these globals for every association of the process, so importing the DICOM edge
    alone leaves a stock pynetdicom.
    """
    # pynetdicom formats every PDU and data set for its log unless told not to; on the
    # response path that costs more than the query itself.
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _send_encoded_datasets()


def make_server(
    ae: AE,
    address: tuple[str, int],
    *,
    evt_handlers: list[Any],
    ssl_context: ssl.SSLContext | None,
) -> TunedAssociationServer:
    """Bind ``address`` and return the AE's server, not yet serving, with tuned associations.

    Raises OSError when the port cannot be bound.
    """
    return cast(
        TunedAssociationServer,
        ae.make_server(
            address,
            evt_handlers=evt_handlers,
            ssl_context=ssl_context,
            server_class=TunedAssociationServer,
            request_handler=_ResponsiveRequestHandler,
        ),
    )


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
    # inspect.unwrap() then finds pynetdicom's own encode behind it, as a check of the seam does.
    encode_or_pass.__wrapped__ = encode_dataset  # type: ignore[attr-defined]
    service_class.encode = encode_or_pass


class TunedAssociationServer(ThreadedAssociationServer):
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
        """Stop serving and close the listening socket."""
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


class _ClosingSocket(AssociationSocket):
    """An association socket that closes even when its shutdown fails (never connected)."""

    def _shutdown_socket(self) -> None:
        sock = self.socket
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


class ClientAE(AE):
    """An AE for outgoing associations whose socket is closed whatever happens."""

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        sock = _ClosingSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock
