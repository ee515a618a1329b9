"""MLLP peers over real loopback sockets, independent of the broker's own client.

:class:`Peer` is a sender (a RIS or an order filler sending orders); :class:`RIS` receives the
broker's status messages and answers each one as a test decides.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from mwlbroker.mllp.framing import FrameDecoder, frame
from tests.support.hl7_messages import hl7, segment_fields


class Peer:
    """A raw MLLP client: sends bytes exactly as given and reads framed answers."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    def send_raw(self, data: bytes) -> None:
        self.socket.sendall(data)

    def send(self, message: bytes | str) -> bytes:
        if isinstance(message, str):
            message = message.encode("latin-1")
        self.send_raw(frame(message))
        return self.read_ack()

    def read_ack(self) -> bytes:
        while not self.frames:
            data = self.socket.recv(65536)
            if not data:
                raise ConnectionError("closed by the broker before an ACK")
            self.frames.extend(f.payload for f in self.decoder.feed(data))
        return self.frames.pop(0)

    def closed_by_server(self) -> bool:
        """True when the broker closed the connection (reads end of stream)."""
        try:
            return self.socket.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class RIS:
    """An MLLP receiver acting as the RIS: keeps each message and answers it.

    ``answer(message) -> "AA" | "AE" | "AR" | None`` decides each ACK (None: no answer at all).
    Made on a socket that is bound but not yet listening, a connection to it is refused until
    :meth:`listen` is called: the RIS is down, then up, on the same port.
    """

    def __init__(self, answer=None, *, listening: bool = True) -> None:
        self.answer = answer or (lambda _message: "AA")
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        if listening:
            self.listen()

    def listen(self) -> None:
        self.socket.listen(8)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with self._changed:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, connection: socket.socket) -> None:
        decoder = FrameDecoder()
        with connection:
            while not self._stopping.is_set():
                try:
                    data = connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for received in decoder.feed(data):
                    message = received.payload
                    code = self.answer(message)
                    with self._changed:
                        self.received.append(message)
                        self._changed.notify_all()
                    if code is None:
                        continue
                    control_id = segment_fields(message, "MSH")[10]
                    ack = hl7(
                        "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER||20261127150000||ACK|"
                        f"R{control_id}|P|2.3.1",
                        f"MSA|{code}|{control_id}|" + ("" if code == "AA" else "not now"),
                    )
                    connection.sendall(frame(ack))

    def wait_for(self, count: int, timeout: float = 15.0) -> list[bytes]:
        """The messages received, once there are at least ``count``; fails after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(
                    f"the RIS received {len(self.received)} message(s), not {count}, "
                    f"within {timeout} s"
                )
            return list(self.received)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread on Linux
        self.socket.close()

    def __enter__(self) -> RIS:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
