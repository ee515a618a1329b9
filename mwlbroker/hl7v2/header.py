"""The MSH segment, read once into one value: who sent what, in which version and character set.

Every part of the broker that needs the header (the listener's metrics, the intake's checks and
duplicate detection, the message log, the ACK, the mapping's choice of profile) takes this
one :class:`MessageHeader` instead of reading MSH fields itself.

It is read two ways, with the same rules:

* from a decoded message (:meth:`HL7Message.header <mwlbroker.hl7v2.reader.HL7Message.header>`),
  with escape sequences resolved, and
* straight from the bytes (:func:`read_header`), for a message that cannot be decoded or was
  never stored: MSA-2 must still echo its MSH-10 (HL7 v2 chapter 2.9.2), and the log still
  names its sender.

MSH-1 is the field separator itself and MSH-2 the encoding characters, so the segment's n-th
field is at index n of :attr:`MessageHeader.fields` (a plain split would be off by one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

HL7_NULL = '""'
"""The HL7 null value: the sender says "this field has no value any more"."""

_DEFAULT_ENCODING = "^~\\&"  # component, repetition, escape, subcomponent (chapter 2.5.4)


@dataclass(frozen=True)
class MessageHeader:
    """The MSH fields the broker needs before it knows anything else about a message.

    The named values are the first component of each field (MSH-9 also its second and third),
    unescaped, ``""`` when absent or the HL7 null. :attr:`fields` keeps the fields as sent, still
    in HL7 encoding, for an ACK that echoes them (MSH-3/4 become its MSH-5/6).
    """

    fields: tuple[str, ...]  # MSH-n at index n, as sent; index 0 holds "MSH"
    sending_application: str = ""  # MSH-3.1
    sending_facility: str = ""  # MSH-4.1
    receiving_application: str = ""  # MSH-5.1
    receiving_facility: str = ""  # MSH-6.1
    message_time: str = ""  # MSH-7.1 Date/Time of Message
    message_type: str = ""  # MSH-9.1, upper case
    trigger_event: str = ""  # MSH-9.2, upper case
    message_structure: str = ""  # MSH-9.3, upper case
    control_id: str = ""  # MSH-10
    processing_id: str = ""  # MSH-11.1
    version: str = ""  # MSH-12.1
    accept_ack_type: str = ""  # MSH-15 (enhanced mode: AL, NE, ER, SU)
    application_ack_type: str = ""  # MSH-16
    charset: str = ""  # MSH-18, first repetition

    @property
    def field_separator(self) -> str:
        """MSH-1, usually ``|``."""
        return self.sent(1)

    @property
    def encoding_characters(self) -> str:
        """MSH-2, usually ``^~\\&``."""
        return self.sent(2)

    @property
    def type_name(self) -> str:
        """``ORM^O01`` style name used in logs, metrics, lists and the registry."""
        return (
            f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type
        )

    def sent(self, field: int) -> str:
        """MSH-``field`` as sent (still in HL7 encoding); ``""`` when the message has none."""
        return self.fields[field] if field < len(self.fields) else ""


def header_from_line(line: str, charset: str, unescape: Callable[[str], str]) -> MessageHeader:
    """The header of an MSH line, each value unescaped with the message's own escape rules.

    ``charset`` is MSH-18 as the decoder read it. Values follow the reader's accessor: the
    first repetition, then the component, then its first subcomponent.
    """
    fields = split_msh(line)
    encoding = (fields[2] if len(fields) > 2 else "") or _DEFAULT_ENCODING
    # The same defaults as python-hl7 when MSH-2 is short.
    component = encoding[0] if len(encoding) > 0 else "^"
    repetition = encoding[1] if len(encoding) > 1 else "~"
    subcomponent = encoding[3] if len(encoding) > 3 else "&"

    def read(field: int, position: int = 1) -> str:
        if field >= len(fields):
            return ""
        node = fields[field].split(repetition)[0]
        parts = node.split(component)
        if position > len(parts):
            return ""
        value = unescape(parts[position - 1].split(subcomponent)[0])
        return "" if value == HL7_NULL else value

    return MessageHeader(
        fields=tuple(fields),
        sending_application=read(3),
        sending_facility=read(4),
        receiving_application=read(5),
        receiving_facility=read(6),
        message_time=read(7),
        message_type=read(9, 1).upper(),
        trigger_event=read(9, 2).upper(),
        message_structure=read(9, 3).upper(),
        control_id=read(10),
        processing_id=read(11),
        version=read(12),
        accept_ack_type=read(15).upper(),
        application_ack_type=read(16).upper(),
        charset=charset,
    )


def read_header(raw: bytes) -> MessageHeader | None:
    """The header read straight from the bytes, without decoding the message; ``None`` without MSH.

    Bytes are read as Latin-1, which never fails, and escape sequences are left as sent: this is
    the best effort for a message the reader refused, not a second reader.
    """
    line = msh_line(raw)
    if line is None:
        return None
    fields = split_msh(line)
    declared = fields[18].split("~")[0].strip() if len(fields) > 18 else ""
    return header_from_line(line, declared, _as_sent)


def msh_line(raw: bytes) -> str | None:
    """The MSH segment at the start of ``raw`` (Latin-1), or ``None`` when there is none.

    A field separator that is a letter, a digit, a blank or a segment end is no separator:
    such bytes do not start with an MSH segment.
    """
    start = raw.find(b"MSH")
    if start < 0 or start > 3 or len(raw) < start + 8:
        return None
    line = re.split(rb"[\r\n]", raw[start:], maxsplit=1)[0]
    separator = line[3:4]
    if separator.isalnum() or separator in (b"", b" ", b"\r", b"\n"):
        return None
    return line.decode("latin-1")


def split_msh(line: str) -> list[str]:
    """An MSH line as a list where index n holds MSH-n (index 0 holds "MSH").

    MSH-1 is the field separator itself, so a plain split is off by one.
    """
    separator = line[3:4]
    fields = line.split(separator) if separator else [line]
    return ["MSH", separator, *fields[1:]]


def _as_sent(value: str) -> str:
    return value
