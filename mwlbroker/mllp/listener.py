"""The MLLP listener: one thread per connection, each message ACKed only after its commit."""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time

from mwlbroker.domain.messages import AckCode, CommitCode, HL7ErrorCode
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.batch import build_batch_ack, is_batch, split_batch
from mwlbroker.hl7v2.header import read_header
from mwlbroker.mllp.framing import Frame, FrameDecoder, frame
from mwlbroker.services.batches import ingest_batch_file
from mwlbroker.services.ingest import IngestResult, IngestService
from mwlbroker.services.metrics import Metrics
from mwlbroker.store.db import DatabaseUnavailable

log = logging.getLogger("mwlbroker.hl7v2")

RECV_BYTES = 65536
HANDSHAKE_SECONDS = 30.0  # a peer that opens a connection and says nothing cannot hold it


class MLLPListener:
    """Accepts MLLP connections and hands each message to the ingest service."""

    def __init__(
        self,
        ingest: IngestService,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        max_connections: int = 200,
        idle_timeout: float = 300.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        application: str = "MWLBROKER",
        facility: str = "",
        tls: ssl.SSLContext | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.ingest = ingest
        self.tls = tls
        self.metrics = metrics or Metrics()
        self.idle_timeout = idle_timeout
        self.max_message_bytes = max_message_bytes
        self.application = application
        self.facility = facility
        self._slots = threading.BoundedSemaphore(max_connections)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="mllp-accept",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "MLLP listener on %s:%d%s",
            *self.address,
            " (TLS)" if self.tls is not None else "",
            extra={"event": "listening", "listener": "hl7", "port": self.port},
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting; let each connection finish the message in hand, then close."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Wakes the reader; an ACK being written still goes out.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)
        for thread in list(self._server.threads):
            thread.join(timeout)

    # -- per connection -------------------------------------------------------------------------

    def handle(self, connection: socket.socket, peer: str) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning(
                "MLLP connection from %s refused: %s connections open", peer, self.connection_count
            )
            connection.close()
            return
        if self.tls is not None:
            secured = self._handshake(connection, peer)
            if secured is None:
                self._slots.release()
                return
            connection = secured
        with self._lock:
            self._connections.add(connection)
        self.metrics.hl7_connections.inc()
        try:
            self._serve(connection, peer)
        finally:
            # The slot first: once the connection no longer counts as open, a new one must
            # find its slot free (connection_count is what operators and tests watch).
            self._slots.release()
            with self._lock:
                self._connections.discard(connection)
            self.metrics.hl7_connections.dec()

    def _handshake(self, connection: socket.socket, peer: str) -> socket.socket | None:
        """TLS first, on the connection's own thread: a peer speaking plain MLLP, or one
        without an acceptable certificate, is closed here and never reaches the intake."""
        assert self.tls is not None
        connection.settimeout(min(self.idle_timeout, HANDSHAKE_SECONDS))
        try:
            return self.tls.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as error:
            log.warning(
                "MLLP %s: TLS handshake failed, connection closed: %s",
                peer,
                getattr(error, "reason", None) or error,
                extra={"event": "tls_refused", "peer": peer},
            )
            with contextlib.suppress(OSError):
                connection.close()
            return None

    def _serve(self, connection: socket.socket, peer: str) -> None:
        decoder = FrameDecoder(self.max_message_bytes)
        log.debug("MLLP connection from %s", peer)
        reason = "closed by peer"
        # Idle means "no complete message for idle_timeout", not "no byte": a client sending
        # one byte a second would otherwise hold its slot for ever.
        deadline = time.monotonic() + self.idle_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                connection.settimeout(remaining)
                data = connection.recv(RECV_BYTES)
            except TimeoutError:
                reason = f"no complete message for {self.idle_timeout:g} s"
                break
            except OSError as error:
                reason = f"error: {error}"
                break
            if not data:
                break
            for received in decoder.feed(data):
                if not self._answer(connection, received, peer):
                    return
                deadline = time.monotonic() + self.idle_timeout
            if self._stopping.is_set() and not decoder.pending:
                reason = "broker stopping"
                break
        if decoder.pending:
            # Keep what we got: an operator may need to see what the sender was sending.
            self._store_incomplete(decoder.pending, peer, reason)
        if decoder.discarded:
            log.warning("MLLP %s: %d bytes outside any frame were ignored", peer, decoder.discarded)
        log.debug("MLLP connection from %s ended: %s", peer, reason)
        with contextlib.suppress(OSError):
            connection.close()

    def _answer(self, connection: socket.socket, received: Frame, peer: str) -> bool:
        if not received.truncated and is_batch(received.payload):
            return self._answer_batch(connection, received, peer)
        started = time.perf_counter()
        try:
            result = self.ingest.ingest(received.payload, peer=peer, truncated=received.truncated)
            ack = self._ack(result)
            outcome = "duplicate" if result.duplicate else str(result.status or "unknown")
            kind = result.type_name or "unknown"
        except DatabaseUnavailable as error:
            # Nothing was stored, so nothing may be acknowledged as accepted: the sender keeps
            # the message and resends it (HL7 AR: rejected for reasons unrelated to content).
            log.error("message from %s not stored, database unavailable: %s", peer, error)
            header = read_header(received.payload)
            outcome = "not stored"
            kind = header.type_name if header is not None and header.type_name else "unknown"
            # Enhanced mode: a commit error (CE), where MSH-15 wants to hear of errors.
            acknowledgments = self.ingest.acknowledgments
            accept = acknowledgments.accept_condition(header) if acknowledgments else None
            ack = build_ack(
                header,
                AckCode.REJECT if accept is None else CommitCode.ERROR,
                # The driver's words (host, file, SQL) go to the log above, not to the sender.
                text="message not stored, database unavailable; resend later",
                error_code=HL7ErrorCode.APPLICATION_INTERNAL_ERROR,
                application=self.application,
                facility=self.facility,
            )
            if accept is not None and not accept.wants(False):
                ack = b""
        except Exception:
            log.exception("message from %s could not be handled", peer)
            return False
        try:
            if ack:  # empty: enhanced mode, and MSH-15 wants no commit ACK for this outcome
                connection.sendall(frame(ack))
        except OSError as error:
            log.warning("ACK to %s not delivered: %s", peer, error)
            return False
        self.metrics.hl7_messages.labels(kind, outcome).inc()
        self.metrics.hl7_ack_seconds.observe(time.perf_counter() - started)
        return True

    def _answer_batch(self, connection: socket.socket, received: Frame, peer: str) -> bool:
        """A frame holding an HL7 batch (FHS/BHS): each message taken in as if sent alone, and
        one response batch with an ACK per message, sent once every one is committed."""
        started = time.perf_counter()
        found = split_batch(received.payload)
        try:
            results = ingest_batch_file(self.ingest, found, peer=peer)
            ack = build_batch_ack(
                found,
                # A message whose sender wants no commit ACK for its outcome (MSH-15) has
                # no entry in the response batch.
                [[ack for ack in map(self._ack, batch) if ack] for batch in results],
                application=self.application,
                facility=self.facility,
            )
        except Exception:
            log.exception("batch from %s could not be handled", peer)
            return False
        try:
            connection.sendall(frame(ack))
        except OSError as error:
            log.warning("batch ACK to %s not delivered: %s", peer, error)
            return False
        for result in (result for batch in results for result in batch):
            outcome = "duplicate" if result.duplicate else str(result.status or "not stored")
            self.metrics.hl7_messages.labels(result.type_name or "unknown", outcome).inc()
        self.metrics.hl7_ack_seconds.observe(time.perf_counter() - started)
        return True

    def _ack(self, result: IngestResult) -> bytes:
        if result.silent:
            return b""
        if result.reply is not None:
            return result.reply
        return build_ack(
            result.header,
            result.ack_code,
            text=result.ack_text,
            error_code=result.error_code,
            location=result.error_location,
            application=self.application,
            facility=self.facility,
            codec=result.codec,
            warnings=result.warnings,
        )

    def _store_incomplete(self, payload: bytes, peer: str, reason: str) -> None:
        try:
            result = self.ingest.ingest_incomplete(payload, peer=peer, reason=reason)
            log.warning(
                "MLLP %s: incomplete message kept as id %s (%s)", peer, result.message_id, reason
            )
        except DatabaseUnavailable as error:
            log.error(
                "MLLP %s: incomplete message of %d bytes lost, database unavailable: %s",
                peer,
                len(payload),
                error,
            )


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler]):
        self.threads: list[threading.Thread] = []
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"mllp-{client_address[0]}:{client_address[1]}",
            daemon=True,
        )
        self.threads = [t for t in self.threads if t.is_alive()]
        self.threads.append(thread)
        thread.start()


def _make_handler(listener: MLLPListener) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            host, port = self.client_address[:2]
            listener.handle(self.request, f"{host}:{port}")

    return Handler
