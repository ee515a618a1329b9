"""Send HL7 messages over MLLP and wait for each ACK, the way a RIS does."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mwlbroker.domain.errors import MessageRejected
from mwlbroker.hl7v2.reader import FieldPath, parse_message
from mwlbroker.mllp.framing import FrameDecoder, frame


class SendError(Exception):
    """The peer could not be reached, closed the connection, or did not answer in time."""


class AckTimeout(SendError):
    """The message was sent but no ACK came back in time."""


@dataclass(frozen=True)
class Reply:
    """The ACK for one sent message, split into what a person wants to read."""

    ack: bytes

    @property
    def text(self) -> str:
        return self.ack.decode("utf-8", errors="replace")

    @property
    def segments(self) -> list[str]:
        return [s for s in self.text.replace("\n", "\r").split("\r") if s]

    def field(self, segment: str, number: int) -> str:
        for line in self.segments:
            if line.startswith(segment):
                fields = line.split(line[3:4] or "|")
                index = number - 1 if segment == "MSH" else number
                return fields[index] if index < len(fields) else ""
        return ""

    @property
    def code(self) -> str:
        """MSA-1, e.g. AA."""
        return self.field("MSA", 1)

    @property
    def reason(self) -> str:
        """The peer's words on the outcome, unescaped: MSA-3, else ERR-8 (where v2.7+ puts them,
        MSA-3 being withdrawn), else the text of ERR-3's code."""
        try:
            message = parse_message(self.ack)
        except MessageRejected:
            return self.field("MSA", 3) or self.field("ERR", 8)
        for path in ("MSA-3", "ERR-8", "ERR-3.2", "ERR-1.4.2"):
            text = message.value(FieldPath.parse(path))
            if text:
                return text
        return ""

    @property
    def acks(self) -> list[Reply]:
        """The ACKs in the reply: itself, or each ACK message of a response batch (FHS/BHS)."""
        segments = self.segments
        if not segments or segments[0][:3] not in ("FHS", "BHS"):
            return [self]
        found: list[list[str]] = []
        for segment in segments:
            if segment.startswith("MSH"):
                found.append([segment])
            elif found and segment[:3] not in ("BHS", "BTS", "FHS", "FTS"):
                found[-1].append(segment)
        return [Reply(("\r".join(ack) + "\r").encode("utf-8")) for ack in found]


class MLLPClient:
    """One MLLP connection; messages are sent one at a time, each waiting for its ACK."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.peer = f"{host}:{port}"
        try:
            self._socket = socket.create_connection((host, port), timeout=timeout)
        except OSError as error:
            raise SendError(f"cannot connect to {host}:{port}: {error.strerror or error}") from None
        if tls is not None:
            try:
                self._socket = tls.wrap_socket(self._socket, server_hostname=host)
            except (ssl.SSLError, OSError) as error:
                self._socket.close()
                reason = getattr(error, "reason", None) or error
                raise SendError(f"TLS with {host}:{port} failed: {reason}") from None
        self._decoder = FrameDecoder(64 * 1024 * 1024)

    def send(self, message: bytes) -> Reply:
        try:
            self._socket.sendall(frame(message))
            while True:
                data = self._socket.recv(65536)
                if not data:
                    raise SendError(f"{self.peer}: the connection was closed before an ACK arrived")
                frames = self._decoder.feed(data)
                if frames:
                    return Reply(frames[0].payload)
        except TimeoutError:
            raise AckTimeout(f"{self.peer}: no ACK within {self.timeout:g} s") from None
        except OSError as error:
            raise SendError(f"{self.peer}: connection failed: {error.strerror or error}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def split_file(content: bytes) -> list[bytes]:
    """The messages in a file: one, or several each starting with an MSH line.

    Segment ends are turned into CR as HL7 wants, whatever the file uses.
    """
    text = content.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    lines = [line for line in text.split(b"\r") if line.strip()]
    if not lines or not lines[0].lstrip(b"\xef\xbb\xbf").startswith(b"MSH"):
        return [content]  # not HL7 as far as we can tell: send it as it is
    messages: list[list[bytes]] = []
    for line in lines:
        if line.lstrip(b"\xef\xbb\xbf").startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return [b"\r".join(segments) + b"\r" for segments in messages]


def send_all(
    host: str,
    port: int,
    messages: Iterable[bytes],
    *,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Reply]:
    """Send each message on one connection and yield its ACK."""
    with MLLPClient(host, port, timeout=timeout, tls=tls) as client:
        for message in messages:
            yield client.send(message)
