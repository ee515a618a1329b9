"""HL7 batches (HL7 v2.5 chapter 2.10.3): split FHS/BHS ... BTS/FTS into messages, and answer them.

A batch is only a way of carrying messages: each one inside is taken in as if it had been sent
alone (same duplicate check, same mapping, same transaction), so this module does two things
and nothing else:

* :func:`split_batch` cuts the bytes into their parts, keeping each message's bytes exactly as
  they came. The structure is the standard's ::

      [FHS] { [BHS] { [MSH ...] } [BTS] } [FTS]

  Every header and trailer is optional, so the same function splits a file of bare messages
  one after another (a RIS downtime backlog). Segments may end in CR, LF or CRLF. Lines
  between messages that belong to none (garbage, a truncated message without its MSH) become
  a part of their own, so they are answered AR with a reason and the rest is taken in. BTS-1
  Batch Message Count and FTS-1 File Batch Count are checked; a count that disagrees is a
  :attr:`Batch.problems` entry, not a refusal: every message is still processed and the
  mismatch is reported where the sender reads it (the answer's BTS-2 / FTS-2 comments).

* :func:`build_batch_ack` writes the response batch, one acknowledgment message per part as
  HAPI and Mirth answer a batch (chapter 2.10.3's option of acknowledging every message): BHS
  answering the received BHS (BHS-5/6 its sender, BHS-12 Reference Batch Control ID its
  BHS-11), an ACK (MSH, MSA, ERR) per message, and BTS-1 the number of ACKs; FHS/FTS around
  it when the batch came in an FHS.

The header and trailer fields are read with the separators the batch declares in BHS-1/2 (or
FHS-1/2); each message inside declares its own in its MSH.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mwlbroker.hl7v2.ack import next_control_id
from mwlbroker.hl7v2.writer import escape

FILE_HEADER, BATCH_HEADER, BATCH_TRAILER, FILE_TRAILER = "FHS", "BHS", "BTS", "FTS"
_WRAPPERS = (FILE_HEADER, BATCH_HEADER, BATCH_TRAILER, FILE_TRAILER)
_OUR_ENCODING = "^~\\&"
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n|$)")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ControlSegment:
    """A batch or file header or trailer as sent: index n of :attr:`fields` holds field n.

    For FHS and BHS, as for MSH, field 1 is the field separator and field 2 the encoding
    characters. Values are still in HL7 encoding (the batch's own separators).
    """

    name: str
    fields: tuple[str, ...]

    def sent(self, number: int) -> str:
        """Field ``number`` as sent; ``""`` when absent."""
        return self.fields[number] if number < len(self.fields) else ""

    @property
    def encoding_characters(self) -> str:
        return self.sent(2) if self.name in (FILE_HEADER, BATCH_HEADER) else ""


@dataclass(frozen=True)
class Part:
    """One message of a batch, or text between messages that is none (``is_message`` False)."""

    raw: bytes  # the bytes exactly as received, line ends included
    line: int  # the line it starts on, counted from 1 in what was split
    is_message: bool = True


@dataclass
class Batch:
    """The messages between a BHS and its BTS (either may be missing)."""

    header: ControlSegment | None = None
    trailer: ControlSegment | None = None
    parts: list[Part] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def message_count(self) -> int:
        """The parts that start with an MSH: what the sender counts in BTS-1."""
        return sum(1 for part in self.parts if part.is_message)


@dataclass
class BatchFile:
    """Everything one frame or file held: an optional FHS/FTS around one or more batches."""

    header: ControlSegment | None = None
    trailer: ControlSegment | None = None
    batches: list[Batch] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def parts(self) -> list[Part]:
        """Every part of every batch, in the order received."""
        return [part for batch in self.batches for part in batch.parts]

    @property
    def all_problems(self) -> list[str]:
        """The file's problems and each batch's, for a log line or a summary."""
        return [*self.problems, *(p for batch in self.batches for p in batch.problems)]


def is_batch(raw: bytes) -> bool:
    """Whether ``raw`` starts with an FHS or a BHS segment (blank lines or a UTF-8 BOM aside)."""
    head = raw[:64].lstrip(_BOM + b" \t\r\n")
    return head[:3] in (b"FHS", b"BHS") and _separator_at(head, 3)


def split_batch(raw: bytes) -> BatchFile:
    """The batches and messages in ``raw``, each message's bytes exactly as they came."""
    found = BatchFile()
    batch: Batch | None = None  # the batch messages go into now
    part_start: int | None = None  # offset where the open part begins
    part_line = 0
    part_is_message = False
    separator = "|"  # the batch's field separator, from FHS-1 or BHS-1

    def close_part(end: int) -> None:
        nonlocal part_start, batch
        if part_start is None:
            return
        if batch is None:
            batch = Batch()
            found.batches.append(batch)
        batch.parts.append(Part(raw[part_start:end], part_line, part_is_message))
        part_start = None

    offset = len(_BOM) if raw.startswith(_BOM) else 0
    number = 0
    for match in _LINE.finditer(raw, offset):
        start, text = match.start(), match.group()
        if not text:
            break
        number += 1
        line = text.rstrip(b"\r\n")
        name = line[:3].decode("latin-1")
        if name in _WRAPPERS and (len(line) == 3 or _separator_at(line, 3)):
            close_part(start)
            if name in (FILE_HEADER, BATCH_HEADER) and len(line) > 3:
                separator = chr(line[3])
            segment = _control_segment(name, line.decode("latin-1"), separator)
            if name == FILE_HEADER:
                if found.header is not None or found.batches:
                    found.problems.append(f"line {number}: a second FHS inside one file")
                found.header = segment
            elif name == BATCH_HEADER:
                batch = Batch(header=segment)
                found.batches.append(batch)
            elif name == BATCH_TRAILER:
                if batch is None:  # a BTS with no batch before it: an empty batch
                    batch = Batch()
                    found.batches.append(batch)
                batch.trailer = segment
                batch = None  # what follows a BTS is a new batch
            else:
                found.trailer = segment
                batch = None
            continue
        if line[:3] == b"MSH" and _separator_at(line, 3):
            close_part(start)
            part_start, part_line, part_is_message = start, number, True
            continue
        if not line.strip():
            continue  # blank lines between messages are nothing
        if part_start is None:
            # Text that belongs to no message: kept as a part of its own, to be answered.
            part_start, part_line, part_is_message = start, number, False
    close_part(len(raw))
    _check_counts(found)
    return found


def build_batch_ack(
    received: BatchFile,
    acks: Sequence[Sequence[bytes]],
    *,
    application: str = "MWLBROKER",
    facility: str = "",
) -> bytes:
    """The response batch: for each received batch, BHS, ``acks`` (one per part), BTS.

    ``acks[i]`` are the acknowledgment messages for ``received.batches[i]``'s parts, in order.
    The batch's problems (a count that disagrees) go in BTS-2 Batch Comment, the file's in
    FTS-2 File Trailer Comment. FHS/FTS wrap it all when the batch came with an FHS (or an FTS).
    """
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    ours = (escape(application), escape(facility))
    lines: list[bytes] = []
    in_file = received.header is not None or received.trailer is not None
    if in_file:
        lines.append(_answering_header(FILE_HEADER, received.header, ours, now))
    batches = received.batches
    for batch, batch_acks in zip(batches, acks, strict=True):
        lines.append(_answering_header(BATCH_HEADER, batch.header, ours, now))
        lines.extend(ack if ack.endswith(b"\r") else ack + b"\r" for ack in batch_acks)
        lines.append(_trailer(BATCH_TRAILER, len(batch_acks), batch.problems))
    if in_file:
        lines.append(_trailer(FILE_TRAILER, len(batches), received.problems))
    return b"".join(lines)


# -- helpers --------------------------------------------------------------------------------------


def _separator_at(line: bytes, index: int) -> bool:
    """A field separator is any character but a letter, a digit, a blank or a line end."""
    char = line[index : index + 1]
    return bool(char) and not char.isalnum() and char not in (b" ", b"\t", b"\r", b"\n")


def _control_segment(name: str, line: str, separator: str) -> ControlSegment:
    if name in (FILE_HEADER, BATCH_HEADER):
        own = line[3:4]
        fields = line.split(own) if own else [line]
        # FHS-1 / BHS-1 is the separator itself, as for MSH: field n at index n.
        return ControlSegment(name, (name, own, *fields[1:]))
    return ControlSegment(name, tuple(line.split(separator)))


def _check_counts(found: BatchFile) -> None:
    """BTS-1 against the messages of each batch, FTS-1 against the number of batches."""
    for position, batch in enumerate(found.batches, 1):
        if batch.trailer is None:
            continue
        name = _batch_name(batch, position, len(found.batches))
        problem = _count_problem(
            "BTS-1 Batch Message Count", batch.trailer.sent(1), batch.message_count, "message"
        )
        if problem:
            batch.problems.append(f"{name}: {problem}")
    if found.trailer is not None:
        problem = _count_problem(
            "FTS-1 File Batch Count", found.trailer.sent(1), len(found.batches), "batch"
        )
        if problem:
            found.problems.append(problem)


def _batch_name(batch: Batch, position: int, total: int) -> str:
    control_id = batch.header.sent(11) if batch.header is not None else ""
    if control_id:
        return f"batch {control_id}"
    return f"batch {position} of {total}" if total > 1 else "batch"


def _count_problem(what: str, sent: str, actual: int, noun: str) -> str | None:
    value = sent.strip()
    if not value:
        return None  # optional: a sender that does not count is not wrong
    if not value.isdigit():
        return f"{what} {value!r} is not a number; {actual} {_plural(noun, actual)} received"
    if int(value) != actual:
        return f"{what} says {int(value)} but {actual} {_plural(noun, actual)} received"
    return None


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun + " was"
    return ("batches" if noun == "batch" else noun + "s") + " were"


def _recode(value: str, encoding: str) -> str:
    """A field as sent in a batch with ``encoding`` characters, in the standard ``^~\\&``."""
    if not encoding or encoding == _OUR_ENCODING:
        return value
    table = {ord(theirs): ours for theirs, ours in zip(encoding, _OUR_ENCODING, strict=False)}
    return value.translate(table)


def _answering_header(
    name: str, received: ControlSegment | None, ours: tuple[str, str], now: str
) -> bytes:
    """FHS or BHS of the response: from us, to the received header's sender, referring to it."""

    def theirs(number: int) -> str:
        if received is None:
            return ""
        return _recode(received.sent(number), received.encoding_characters)

    fields = [
        name,
        _OUR_ENCODING,
        *ours,  # -3/-4 Sending Application / Facility
        theirs(3),  # -5 Receiving Application: who sent the batch
        theirs(4),  # -6 Receiving Facility
        now,  # -7 Creation Date/Time
        "",  # -8 Security
        "",  # -9 Name/ID/Type
        "",  # -10 Comment
        next_control_id(),  # -11 Control ID of the response
        theirs(11),  # -12 Reference Control ID: the received batch's (or file's) -11
    ]
    return ("|".join(fields).rstrip("|") + "\r").encode("latin-1", errors="replace")


def _trailer(name: str, count: int, problems: Sequence[str]) -> bytes:
    """BTS (-1 Batch Message Count, -2 Batch Comment) or FTS (-1 File Batch Count, -2 comment)."""
    # BTS-2 / FTS-2 are ST of 80 characters.
    comment = escape("; ".join(problems)[:80])
    return (f"{name}|{count}|{comment}".rstrip("|") + "\r").encode("latin-1", errors="replace")
