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
from mwlbroker.hl7v2.charsets import CHARSETS, SUPPORTED
from mwlbroker.hl7v2.header import HL7_NULL, MessageHeader, header_from_line, read_header

__all__ = ["HL7_NULL", "FieldPath", "HL7Message", "MessageHeader", "decode", "parse_message"]

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


class HL7Message:
    """A decoded HL7 v2 message with read access to every field.

    Reading is lazy: the text is split into segments once, a segment into fields the first
    time one of its fields is read, and a field into repetitions, components and
    subcomponents only along the path being read. The mapping reads a few dozen values of a
    message; splitting every field into objects up front cost more than the rest of the
    reading. The answers are python-hl7's (``extract_field`` and its escape handling).
    """

    def __init__(self, text: str, segments: list[str], charset: str, codec: str) -> None:
        self.text = text
        self.charset = charset
        self.codec = codec
        self._lines = segments
        self._separators, self._escape = _separators(text)
        self._field_separator = self._separators[1]
        self._names = [_segment_name(line, self._field_separator) for line in segments]
        self._index: dict[str, list[int]] = {}
        for position, name in enumerate(self._names):
            self._index.setdefault(name, []).append(position)
        self._fields: dict[int, list[str]] = {}
        self._unescaper: hl7.Message | None = None
        self._header: MessageHeader | None = None

    @property
    def segment_names(self) -> list[str]:
        """Segment IDs in message order, Z-segments included."""
        return list(self._names)

    def count(self, segment: str) -> int:
        """How many times a segment occurs."""
        return len(self._index.get(segment, ()))

    def get(self, path: FieldPath | str) -> str | None:
        """The unescaped value at ``path``; ``None`` when absent or empty, ``HL7_NULL`` for ``""``."""
        if isinstance(path, str):
            path = FieldPath.parse(path)
        return self.value(path)

    def fields(self, name: str, occurrence: int = 1) -> list[str] | None:
        """The fields of the ``occurrence``-th segment ``name`` (index n holds field n, as sent)."""
        found = self._index.get(name)
        if not found or occurrence > len(found):
            return None
        position = found[occurrence - 1]
        fields = self._fields.get(position)
        if fields is None:
            fields = self._fields[position] = _split_segment(
                self._lines[position], self._field_separator
            )
        return fields

    def value(self, path: FieldPath) -> str | None:
        """The unescaped value at ``path``, splitting only what lies on the path.

        A path that goes deeper than the value finds nothing unless every further position
        is 1; a value deeper than the path gives its first leaf (python-hl7's rules).
        """
        fields = self.fields(path.segment, path.occurrence)
        if fields is None or path.field >= len(fields):
            return None
        node = fields[path.field]
        if path.segment == "MSH" and path.field in (1, 2):
            # The separators themselves: neither split nor unescaped.
            if path.repetition != 1 or path.component != 1 or path.subcomponent != 1:
                return None
            return node or None
        separators = self._separators
        repetition, component, subcomponent = separators[2], separators[3], separators[4]
        for position, separator in (
            (path.repetition, repetition),
            (path.component, component),
            (path.subcomponent, subcomponent),
        ):
            if separator in node:
                parts = node.split(separator)
                if position > len(parts):
                    return None
                node = parts[position - 1]
            elif position != 1:
                return None
        return self._unescape(node) or None

    def components(self, path: FieldPath | str) -> list[str] | None:
        """The unescaped components of the repetition at ``path``, for types read whole (XPN, XCN).

        Each component is given as its first subcomponent (in v2.5 the surname of an FN family
        name). The path's component and subcomponent are ignored. ``None`` when the repetition
        is absent or empty, ``[HL7_NULL]`` when it is the HL7 null ``""``.
        """
        if isinstance(path, str):
            path = FieldPath.parse(path)
        fields = self.fields(path.segment, path.occurrence)
        if fields is None or path.field >= len(fields):
            return None
        separators = self._separators
        repetition_separator, component, subcomponent = separators[2], separators[3], separators[4]
        repetitions = fields[path.field].split(repetition_separator)
        if path.repetition > len(repetitions):
            return None
        parts = [
            self._unescape(part.split(subcomponent, 1)[0])
            for part in repetitions[path.repetition - 1].split(component)
        ]
        return parts if any(parts) else None

    def subcomponents(self, path: FieldPath | str) -> list[str] | None:
        """The unescaped subcomponents of the component at ``path`` (a CNN inside OBR-34.1).

        ``None`` when the component is absent or empty, ``[HL7_NULL]`` for the HL7 null.
        """
        if isinstance(path, str):
            path = FieldPath.parse(path)
        fields = self.fields(path.segment, path.occurrence)
        if fields is None or path.field >= len(fields):
            return None
        separators = self._separators
        repetitions = fields[path.field].split(separators[2])
        if path.repetition > len(repetitions):
            return None
        components = repetitions[path.repetition - 1].split(separators[3])
        if path.component > len(components):
            return None
        parts = [
            self._unescape(part) for part in components[path.component - 1].split(separators[4])
        ]
        return parts if any(parts) else None

    def repetition_count(self, path: FieldPath) -> int:
        """How many repetitions the field at ``path`` has (0 when absent or empty)."""
        fields = self.fields(path.segment, path.occurrence)
        if fields is None or path.field >= len(fields):
            return 0
        field = fields[path.field]
        return field.count(self._separators[2]) + 1 if field else 0

    def _unescape(self, value: str) -> str:
        if self._escape not in value:
            return value
        if self._unescaper is None:
            self._unescaper = hl7.Message("\r", esc=self._escape, separators=self._separators)
        try:
            return str(self._unescaper.unescape(value))
        except ValueError:
            # python-hl7 gives up on some malformed sequences (``\.spx\``, a count that is not
            # a number): keep the text as written rather than fail the whole message.
            return value

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
        """The MSH fields, read once (:mod:`mwlbroker.hl7v2.header`) and kept."""
        if self._header is None:
            self._header = header_from_line(self._lines[0], self.charset, self._unescape)
        return self._header


def normalise_segments(text: str) -> str:
    """Accept CR, LF or CRLF between segments (HL7 wants CR; files and some senders use LF)."""
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(segment for segment in text.split("\r") if segment.strip())


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
    header = read_header(body)
    if header is None:
        raise MessageRejected(
            "the message does not start with an MSH segment",
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location="MSH",
        )
    declared = header.charset
    codec = CHARSETS.get(declared.upper())
    if codec is None:
        raise MessageRejected(
            f"MSH-18 character set {declared!r} is not supported (supported: {SUPPORTED})",
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
    text = text.strip()  # as python-hl7 reads it: no blanks around the message
    segments = text.split("\r")
    try:
        message = HL7Message(text, segments, declared, codec)
    except ValueError as error:
        raise MessageRejected(
            f"the message cannot be split into segments: {error}",
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
        ) from None
    for name in message.segment_names:
        if not _SEGMENT_ID.fullmatch(name):
            raise MessageRejected(
                f"segment {name[:20]!r} is not a valid segment ID",
                error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
                location=name[:3],
            )
    return message


_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


def _separators(text: str) -> tuple[str, str]:
    """("\\r" + field, repetition, component, subcomponent separators; escape) from MSH-1/2.

    The same defaults as python-hl7 when MSH-2 is short.
    """
    if text[:3] != "MSH" or len(text) < 4:
        raise ValueError(f"first segment is {text[:3]!r}, not MSH")
    field = text[3]
    encoding = text[3 : text.find(field, 4)]
    repetition = encoding[2] if len(encoding) > 2 else "~"
    component = encoding[1] if len(encoding) > 1 else "^"
    subcomponent = encoding[4] if len(encoding) > 4 else "&"
    escape = encoding[3] if len(encoding) > 3 else "\\"
    return "\r" + field + repetition + component + subcomponent, escape


def _segment_name(line: str, field_separator: str) -> str:
    return line.split(field_separator, 1)[0]


def _split_segment(line: str, field_separator: str) -> list[str]:
    """A segment's fields, index n holding field n; MSH-1 and MSH-2 are the separators."""
    if line[:3] in ("MSH", "BHS", "FHS"):
        end = line.find(field_separator, 4)
        rest = line[end + 1 :]
        head = [line[:3], line[3], line[4:end]]
        return head + rest.split(field_separator) if rest else head
    return line.split(field_separator)
