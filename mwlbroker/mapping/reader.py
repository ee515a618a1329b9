"""Read HL7 v2 messages as real senders write them, fast enough for the intake hot path.

Decoding follows MSH-18 (ASCII, 8859/x, UNICODE UTF-8); segments may end in CR, LF or CRLF;
Z-segments and missing optional fields are tolerated. Field values are read through one
accessor, :meth:`HL7Message.get`, that keeps "absent" (``None``) apart from the HL7 null
``""`` (:data:`HL7_NULL`), which tells the receiver to clear a stored value.

python-hl7 does the splitting and escape handling (about 0.1 ms for a 1 KB order); hl7apy's
schema-aware parse costs over ten milliseconds and is kept for building messages.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import hl7

from mwlbroker.domain.errors import MessageRejected
from mwlbroker.domain.messages import HL7ErrorCode

HL7_NULL = '""'
"""The HL7 null value: the sender says "this field has no value any more"."""

# MSH-18 Character Set (HL7 table 0211) -> Python codec. DICOM-style terms are accepted too,
# because some RIS copy them from their DICOM configuration.
CHARSETS: dict[str, str] = {
    "": "ascii",
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "ISO_IR 6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "ISO_IR 100": "latin-1",
    "8859/2": "iso8859_2",
    "8859/3": "iso8859_3",
    "8859/4": "iso8859_4",
    "8859/5": "iso8859_5",
    "8859/6": "iso8859_6",
    "8859/7": "iso8859_7",
    "8859/8": "iso8859_8",
    "8859/9": "iso8859_9",
    "8859/15": "iso8859_15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "ISO_IR 192": "utf-8",
}

_PATH = re.compile(
    r"^(?P<segment>[A-Z][A-Z0-9]{2})(?:\[(?P<occurrence>\d+)\])?"
    r"-(?P<field>\d+)(?:\((?P<repetition>\d+)\))?"
    r"(?:\.(?P<component>\d+))?(?:\.(?P<subcomponent>\d+))?$"
)


@dataclass(frozen=True)
class FieldPath:
    """Where a value sits: ``PID-3(2).4.1`` is PID, field 3, repetition 2, component 4, sub 1.

    ``OBR[2]-18`` reads the second OBR segment. Every number counts from 1, as HL7 does.
    """

    segment: str
    field: int
    repetition: int = 1
    component: int = 1
    subcomponent: int = 1
    occurrence: int = 1

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        match = _PATH.match(text.strip())
        if not match or int(match["field"]) < 1:
            raise ValueError(
                f"{text!r} is not an HL7 field path such as PID-3, OBR-4.2 or PID-3(2).4"
            )
        parts = match.groupdict()
        numbers = {
            name: int(parts[name]) if parts[name] else 1
            for name in ("field", "repetition", "component", "subcomponent", "occurrence")
        }
        if min(numbers.values()) < 1:
            raise ValueError(f"{text!r}: positions count from 1")
        return cls(segment=parts["segment"], **numbers)

    def __str__(self) -> str:
        text = self.segment
        if self.occurrence != 1:
            text += f"[{self.occurrence}]"
        text += f"-{self.field}"
        if self.repetition != 1:
            text += f"({self.repetition})"
        if self.component != 1 or self.subcomponent != 1:
            text += f".{self.component}"
        if self.subcomponent != 1:
            text += f".{self.subcomponent}"
        return text


@dataclass(frozen=True)
class MessageHeader:
    """The MSH fields the broker needs before it knows anything else about a message."""

    sending_application: str  # MSH-3.1
    sending_facility: str  # MSH-4.1
    receiving_application: str  # MSH-5.1
    receiving_facility: str  # MSH-6.1
    message_type: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    message_structure: str  # MSH-9.3
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version: str  # MSH-12.1
    charset: str  # MSH-18 (first repetition)

    @property
    def type_name(self) -> str:
        """``ORM^O01`` style name used in logs and lists."""
        return (
            f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type
        )


class HL7Message:
    """A decoded HL7 v2 message with read access to every field."""

    def __init__(self, text: str, parsed: hl7.Message, charset: str, codec: str) -> None:
        self.text = text
        self.charset = charset
        self.codec = codec
        self._parsed = parsed
        self._counts: dict[str, int] = {}
        for segment in parsed:
            name = str(segment[0])
            self._counts[name] = self._counts.get(name, 0) + 1

    @property
    def segment_names(self) -> list[str]:
        """Segment IDs in message order, Z-segments included."""
        return [str(segment[0]) for segment in self._parsed]

    def count(self, segment: str) -> int:
        """How many times a segment occurs."""
        return self._counts.get(segment, 0)

    def get(self, path: FieldPath | str) -> str | None:
        """The unescaped value at ``path``; ``None`` when absent or empty, ``HL7_NULL`` for ``""``."""
        if isinstance(path, str):
            path = FieldPath.parse(path)
        if path.occurrence > self._counts.get(path.segment, 0):
            return None
        try:
            value = self._parsed.extract_field(
                path.segment,
                path.occurrence,
                path.field,
                path.repetition,
                path.component,
                path.subcomponent,
            )
        except (IndexError, KeyError):
            return None
        return value if value != "" else None

    # -- added for the mapping engine: indexed reads (same answers as get) ---------------------

    def segment(self, name: str, occurrence: int = 1) -> hl7.Segment | None:
        """The ``occurrence``-th segment named ``name``; ``None`` when there are fewer."""
        index: dict[str, list[hl7.Segment]] | None = self.__dict__.get("_segment_index")
        if index is None:
            index = {}
            for segment in self._parsed:
                index.setdefault(str(segment[0]), []).append(segment)
            self.__dict__["_segment_index"] = index
        found = index.get(name)
        return found[occurrence - 1] if found and occurrence <= len(found) else None

    def value(self, path: FieldPath) -> str | None:
        """Same answer as :meth:`get`, through a segment index: for the mapping's many reads.

        :meth:`get` goes through python-hl7's accessor, which scans every segment per read;
        this walks the parsed lists directly (about ten times faster).
        """
        segment = self.segment(path.segment, path.occurrence)
        if segment is None or path.field >= len(segment):
            return None
        node: object = list.__getitem__(segment, path.field)
        for position in (path.repetition, path.component, path.subcomponent):
            if isinstance(node, str):
                if position != 1:
                    return None  # the path goes deeper than the value
                continue
            assert isinstance(node, list)
            if position > len(node):
                return None
            node = list.__getitem__(node, position - 1)
        while not isinstance(node, str):  # the value goes deeper than the path: first leaf
            assert isinstance(node, list)
            node = list.__getitem__(node, 0) if node else ""
        if path.segment == "MSH" and path.field in (1, 2):
            return node or None  # the separators themselves are not escaped
        return self._parsed.unescape(node) or None

    def components(self, path: FieldPath | str) -> list[str] | None:
        """The unescaped components of the repetition at ``path``, for types read whole (XPN, XCN).

        Each component is given as its first subcomponent (in v2.5 the surname of an FN family
        name). The path's component and subcomponent are ignored. ``None`` when the repetition
        is absent or empty, ``[HL7_NULL]`` when it is the HL7 null ``""``.
        """
        if isinstance(path, str):
            path = FieldPath.parse(path)
        segment = self.segment(path.segment, path.occurrence)
        if segment is None or path.field >= len(segment):
            return None
        field = list.__getitem__(segment, path.field)
        if isinstance(field, str):
            repetition = field if path.repetition == 1 else ""
        elif path.repetition > len(field):
            return None
        else:
            repetition = list.__getitem__(field, path.repetition - 1)
        if isinstance(repetition, str):  # a value without component separators
            return [self._parsed.unescape(repetition)] if repetition else None
        parts = [
            self._parsed.unescape(part if isinstance(part, str) else (part[0] if part else ""))
            for part in repetition
        ]
        return parts if any(parts) else None

    def repetition_count(self, path: FieldPath) -> int:
        """How many repetitions the field at ``path`` has (0 when absent), through the index."""
        segment = self.segment(path.segment, path.occurrence)
        if segment is None or path.field >= len(segment):
            return 0
        field = list.__getitem__(segment, path.field)
        if isinstance(field, str):
            return 1 if field else 0
        return len(field) if any(field) else 0

    def repetitions(self, segment: str, field: int, occurrence: int = 1) -> int:
        """How many repetitions a field has (0 when absent or empty)."""
        lines = [line for line in self.text.split("\r") if line[:3] == segment]
        if occurrence > len(lines):
            return 0
        line = lines[occurrence - 1]
        separator, repetition_separator = line[3:4], self.text[5:6]
        fields = line.split(separator)
        index = field - 1 if segment == "MSH" else field
        if index >= len(fields) or not fields[index]:
            return 0
        return fields[index].count(repetition_separator) + 1

    def header(self) -> MessageHeader:
        """The MSH fields; raises :class:`MessageRejected` when a required one is missing."""

        def msh(field: int, component: int = 1) -> str:
            value = self.get(FieldPath("MSH", field, component=component))
            return "" if value is None or value == HL7_NULL else value

        header = MessageHeader(
            sending_application=msh(3),
            sending_facility=msh(4),
            receiving_application=msh(5),
            receiving_facility=msh(6),
            message_type=msh(9, 1).upper(),
            trigger_event=msh(9, 2).upper(),
            message_structure=msh(9, 3).upper(),
            control_id=msh(10),
            processing_id=msh(11),
            version=msh(12),
            charset=self.charset,
        )
        return header


def normalise_segments(text: str) -> str:
    """Accept CR, LF or CRLF between segments (HL7 wants CR; files and some senders use LF)."""
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(segment for segment in text.split("\r") if segment.strip())


def read_header_bytes(raw: bytes) -> tuple[list[str], bytes]:
    """The MSH fields split on the message's own field separator, read without decoding.

    Used for ACKs of messages that cannot be decoded: MSA-2 must still echo MSH-10.
    Returns ``([], b"")`` when there is no MSH segment to read.
    """
    start = raw.find(b"MSH")
    if start < 0 or start > 3 or len(raw) < start + 8:
        return [], b""
    line = re.split(rb"[\r\n]", raw[start:], maxsplit=1)[0]
    separator = line[3:4]
    if separator.isalnum() or separator in (b"", b" ", b"\r", b"\n"):
        return [], b""
    return split_msh(line.decode("latin-1")), separator


def split_msh(line: str) -> list[str]:
    """An MSH line as a list where index n holds MSH-n (index 0 holds "MSH").

    MSH-1 is the field separator itself, so a plain split is off by one.
    """
    separator = line[3:4]
    fields = line.split(separator) if separator else [line]
    return ["MSH", separator, *fields[1:]]


def content_digest(text: str) -> str:
    """A fingerprint of the message that ignores MSH-7, so a resend with a new time still matches."""
    lines = text.split("\r")
    if lines and lines[0].startswith("MSH") and len(lines[0]) > 3:
        fields = lines[0].split(lines[0][3])
        if len(fields) > 6:
            fields[6] = ""  # MSH-7 Date/Time of Message
        lines[0] = lines[0][3].join(fields)
    return hashlib.sha256("\r".join(lines).encode("utf-8")).hexdigest()


def decode(raw: bytes, default_codec: str = "latin-1") -> tuple[str, str, str]:
    """Decode the bytes as MSH-18 says; returns (text, MSH-18 as sent, Python codec)."""
    body = raw.lstrip(b"\xef\xbb\xbf \t\r\n")  # a UTF-8 BOM or blank lines before MSH
    fields, _ = read_header_bytes(body)
    if not fields:
        raise MessageRejected(
            "the message does not start with an MSH segment",
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location="MSH",
        )
    declared = fields[18].split("~")[0].strip() if len(fields) > 18 else ""
    codec = CHARSETS.get(declared.upper())
    if codec is None:
        raise MessageRejected(
            f"MSH-18 character set {declared!r} is not supported "
            f"(supported: ASCII, 8859/1 to 8859/9, 8859/15, UNICODE UTF-8)",
            error_code=HL7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location="MSH-18",
        )
    if codec == "ascii":
        # Many senders leave MSH-18 empty and send UTF-8 or Latin-1 anyway: take what decodes.
        for candidate in ("ascii", "utf-8", default_codec):
            try:
                return body.decode(candidate), declared, candidate
            except UnicodeDecodeError:
                continue
    try:
        return body.decode(codec), declared, codec
    except UnicodeDecodeError as error:
        raise MessageRejected(
            f"MSH-18 says {declared!r} but byte 0x{body[error.start]:02X} at offset "
            f"{error.start} is not valid {codec}",
            error_code=HL7ErrorCode.DATA_TYPE_ERROR,
            location="MSH-18",
        ) from None


def parse_message(raw: bytes, default_codec: str = "latin-1") -> HL7Message:
    """Decode and split a message; raises :class:`MessageRejected` when it cannot be read."""
    text, declared, codec = decode(raw, default_codec)
    text = normalise_segments(text)
    try:
        parsed = hl7.parse(text)
    except Exception as error:  # python-hl7 raises several types for broken structure
        raise MessageRejected(
            f"the message cannot be split into segments: {error}",
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
        ) from None
    for segment in parsed:
        name = str(segment[0])
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", name):
            raise MessageRejected(
                f"segment {name[:20]!r} is not a valid segment ID",
                error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
                location=name[:3],
            )
    return HL7Message(text, parsed, declared, codec)
