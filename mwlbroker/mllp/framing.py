"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): <VT> message <FS><CR>.

A small incremental decoder instead of python-hl7's MLLP streams, which are asyncio-only: the
broker is threaded (pynetdicom, the WSGI server and APScheduler are), and one model is simplest.
The decoder copes with what senders do on the wire: frames split across reads, several frames
in one read, bytes before the start block, a missing trailing CR. Memory stays bounded: a frame
over the size limit keeps only its head, and the rest is skipped up to the end block.
"""

from __future__ import annotations

from dataclasses import dataclass

START_BLOCK = b"\x0b"  # <VT>
END_BLOCK = b"\x1c"  # <FS>
CARRIAGE_RETURN = b"\x0d"


def frame(message: bytes) -> bytes:
    """Wrap one message for the wire."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


@dataclass(frozen=True)
class Frame:
    """One received message; ``truncated`` when it was over the limit and only its head is kept."""

    payload: bytes
    truncated: bool = False
    size: int = 0  # bytes received for this frame, the skipped part of a truncated one included


class FrameDecoder:
    """Turns a byte stream into frames; feed it whatever ``recv`` returned."""

    def __init__(self, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self._overflow = 0  # bytes skipped beyond the limit in the current frame
        self.discarded = 0  # bytes outside any frame, for the log

    @property
    def pending(self) -> bytes:
        """Bytes of a frame begun but not ended (what a closed connection leaves behind)."""
        return bytes(self._buffer) if self._in_frame else b""

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        view = memoryview(data)
        position = 0
        while position < len(view):
            if not self._in_frame:
                start = data.find(START_BLOCK, position)
                if start < 0:
                    self.discarded += len(data) - position
                    break
                self.discarded += start - position
                position = start + 1
                self._in_frame = True
                self._buffer.clear()
                self._overflow = 0
                continue
            end = data.find(END_BLOCK, position)
            restart = data.find(START_BLOCK, position)
            if 0 <= restart < (end if end >= 0 else len(data)):
                # A new start block inside a frame: the sender gave up on the last one.
                self.discarded += len(self._buffer) + restart - position
                self._buffer.clear()
                self._overflow = 0
                position = restart + 1
                continue
            chunk_end = end if end >= 0 else len(data)
            self._append(view[position:chunk_end])
            if end < 0:
                break
            frames.append(
                Frame(
                    bytes(self._buffer),
                    truncated=self._overflow > 0,
                    size=len(self._buffer) + self._overflow,
                )
            )
            self._buffer.clear()
            self._in_frame = False
            position = end + 1
            if data[position : position + 1] == CARRIAGE_RETURN:
                position += 1
        return frames

    def _append(self, chunk: memoryview) -> None:
        room = self.max_message_bytes - len(self._buffer)
        if len(chunk) <= room:
            self._buffer += chunk
        else:
            self._buffer += chunk[: max(room, 0)]
            self._overflow += len(chunk) - max(room, 0)
