"""Write worklist responses from the DICOM JSON model straight to little endian data set bytes.

A pending C-FIND response is a stored item's requested keys (PS3.18 F.2 JSON, text values
only). Turning each into a pydicom Dataset and encoding that costs about 0.6 ms a response,
ten times what writing the bytes takes. This writes exactly the bytes pydicom 3 writes for the
same JSON (defined-length sequences and items, text padded with a space and UIDs with a NUL,
PS3.5 6.2 and 7.5), in Implicit or Explicit VR Little Endian (PS3.5 A.1, A.2), and refuses
(:class:`NotEncodable`) whatever it does not write itself: numbers, binary values, bulk data,
text the character set cannot hold. The caller then asks pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Text VRs written here; those in _CHARSET_VRS use the Specific Character Set (PS3.5 6.1.2.3),
# the others the default repertoire.
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
# PS3.5 7.1.2: explicit VRs with a reserved field and a 32-bit length.
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) Item
_UL = struct.Struct("<L")
_US = struct.Struct("<H")
_TAGS: dict[str, bytes] = {}


class NotEncodable(ValueError):
    """An element this writer leaves to pydicom."""


@dataclass(frozen=True)
class EncodedDataset:
    """A data set already encoded in a little endian transfer syntax, to be sent as it is."""

    data: bytes
    implicit_vr: bool


def encode_json(item: Mapping[str, Any], *, implicit_vr: bool, encoding: str) -> bytes:
    """The data set bytes of a DICOM JSON item, elements in tag order.

    ``encoding`` is the Python codec of the item's Specific Character Set. Raises
    :class:`NotEncodable` for an element outside what this writer handles.
    """
    parts: list[bytes] = []
    _write(item, implicit_vr, encoding, parts)
    return b"".join(parts)


def _write(item: Mapping[str, Any], implicit: bool, encoding: str, parts: list[bytes]) -> None:
    # Fixed-width upper-case hex sorts like the tags it spells.
    for tag in sorted(item):
        element = item[tag]
        vr = element.get("vr")
        values = element.get("Value")
        if not isinstance(vr, str) or len(vr) != 2 or len(tag) != 8:
            raise NotEncodable(f"{tag}: not a tag and VR")
        if vr == "SQ":
            value = _sequence(values or (), implicit, encoding)
        elif not values:
            if len(element) > 1 and "Value" not in element:
                raise NotEncodable(f"{tag}: bulk data or inline binary")
            value = b""
        elif vr in _TEXT_VRS:
            value = _text(tag, vr, values, encoding)
        else:
            raise NotEncodable(f"{tag}: {vr} values")
        parts.append(_header(tag, vr, len(value), implicit))
        parts.append(value)


def _sequence(items: Any, implicit: bool, encoding: str) -> bytes:
    parts: list[bytes] = []
    for entry in items:
        if not isinstance(entry, Mapping):
            raise NotEncodable("a sequence item is not an object")
        body: list[bytes] = []
        _write(entry, implicit, encoding, body)
        encoded = b"".join(body)
        parts.append(_ITEM + _UL.pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def _text(tag: str, vr: str, values: Any, encoding: str) -> bytes:
    if vr == "PN":
        texts = [_person_name(tag, value) for value in values]
    elif all(isinstance(value, str) for value in values):
        texts = values
    else:
        raise NotEncodable(f"{tag}: {vr} value is not text")
    text = "\\".join(texts)
    try:
        data = text.encode(encoding if vr in _CHARSET_VRS else "ascii")
    except UnicodeEncodeError:
        raise NotEncodable(f"{tag}: not in the character set") from None
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


def _person_name(tag: str, value: Any) -> str:
    if not isinstance(value, Mapping) or not all(
        isinstance(value.get(group, ""), str) for group in _PN_GROUPS
    ):
        raise NotEncodable(f"{tag}: PN value is not a name object")
    return "=".join(value.get(group, "") for group in _PN_GROUPS).rstrip("=")


def _header(tag: str, vr: str, length: int, implicit: bool) -> bytes:
    prefix = _TAGS.get(tag)
    if prefix is None:
        try:
            number = int(tag, 16)
        except ValueError:
            raise NotEncodable(f"{tag}: not a tag") from None
        prefix = _TAGS[tag] = _US.pack(number >> 16) + _US.pack(number & 0xFFFF)
    if implicit:
        return prefix + _UL.pack(length)
    if vr in _LONG_VRS:
        return prefix + vr.encode("ascii") + b"\x00\x00" + _UL.pack(length)
    if length > 0xFFFF:
        raise NotEncodable(f"{tag}: {length} bytes do not fit a {vr}")
    return prefix + vr.encode("ascii") + _US.pack(length)
