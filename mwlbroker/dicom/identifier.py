"""Read a C-FIND identifier into plain elements: tags, VRs and text in its character set.

Values are decoded here from the raw bytes, not through pydicom's value conversion: query keys
may be longer than their VR allows (PS3.4 C.2.2.2, e.g. a date range in a DA), which pydicom
would warn about, and bytes that are not valid in the declared Specific Character Set must be
refused (PS3.5 6.1) rather than turned into replacement characters.
"""

from __future__ import annotations

from typing import Any

from pydicom.charset import decode_bytes, python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import PN_DELIMS, TEXT_VR_DELIMS

from mwlbroker.domain.query import Element, FindStatus, QueryError

# VRs whose text is in the Specific Character Set (PS3.5 6.1.2.3); the others are ASCII.
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_NUMERIC_VRS = frozenset({"US", "UL", "SS", "SL", "UV", "SV", "FL", "FD", "AT"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_SPECIFIC_CHARACTER_SET = 0x00080005


def read_identifier(dataset: Dataset) -> list[Element]:
    """The identifier's keys, in tag order; raises :class:`QueryError` for undecodable bytes."""
    try:
        return _elements(dataset, _encodings(dataset))
    except QueryError:
        raise
    except Exception as error:  # pydicom raises many types for a malformed data set
        raise QueryError(f"identifier cannot be decoded: {error}") from None


def _encodings(dataset: Dataset) -> list[str]:
    element = dataset.get_item(_SPECIFIC_CHARACTER_SET)
    if element is None:
        return [python_encoding[""]]
    raw = element.value
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else _joined(raw)
    terms = [term.strip() for term in text.split("\\")]
    if not terms[0]:
        terms[0] = "ISO_IR 6"
    encodings = []
    for term in terms:
        if term not in python_encoding:
            raise QueryError(
                f"Specific Character Set {term!r} is not supported",
                FindStatus.UNABLE_TO_PROCESS,
                f"{_SPECIFIC_CHARACTER_SET:08X}",
            )
        encodings.append(python_encoding[term])
    return encodings


def _elements(dataset: Dataset, encodings: list[str]) -> list[Element]:
    elements = []
    for tag in sorted(dataset.keys()):
        raw = dataset.get_item(tag)
        if raw is None:
            continue
        vr = _vr(tag, raw)
        keyword = keyword_for_tag(tag) or ""
        name = f"{tag:08X}"
        if vr == "SQ":
            sequence = dataset[tag].value or []
            items = tuple(tuple(_elements(item, encodings)) for item in sequence)
            elements.append(Element(name, "SQ", keyword, items=items))
            continue
        value = _text(dataset, tag, raw, vr, encodings, keyword or name)
        elements.append(Element(name, vr, keyword, value))
    return elements


def _vr(tag: BaseTag, raw: RawDataElement | DataElement) -> str:
    if raw.VR:
        return str(raw.VR).split(" or ")[0]
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"  # a private or unknown tag in implicit VR


def _text(
    dataset: Dataset,
    tag: BaseTag,
    raw: RawDataElement | DataElement,
    vr: str,
    encodings: list[str],
    name: str,
) -> str:
    if isinstance(raw, DataElement):
        return _joined(raw.value)
    if not raw.value:
        return ""
    if vr in _NUMERIC_VRS:
        return _joined(dataset[tag].value)
    if vr in _BINARY_VRS:
        return ""  # return keys only; nothing to match
    value: bytes = raw.value
    if vr in _CHARSET_VRS:
        if b"\x1b" in value:  # ISO 2022 code extensions
            delimiters = PN_DELIMS | {0x3D} if vr == "PN" else TEXT_VR_DELIMS | {0x5C}
            return decode_bytes(value, encodings, delimiters)
        try:
            return value.decode(encodings[0])
        except UnicodeDecodeError:
            raise QueryError(
                f"{name}: bytes not valid in the Specific Character Set",
                tag=f"{tag:08X}",
            ) from None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise QueryError(f"{name}: {vr} value is not ASCII", tag=f"{tag:08X}") from None


def _joined(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_joined(v) for v in value)
    return str(value)
