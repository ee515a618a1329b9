"""The one table from HL7 MSH-18 Character Set to the Python codec that reads and writes it.

Reading (:func:`mwlbroker.hl7v2.reader.decode`) and writing (ACKs, status and merge messages)
use the same table, so a set the broker accepts from a sender is a set it can answer in.
"""

from __future__ import annotations

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

SUPPORTED = "ASCII, 8859/1 to 8859/9, 8859/15, UNICODE UTF-8"
"""The sets of :data:`CHARSETS` as a sender's administrator would name them."""


def codec_for(charset: str, default: str = "utf-8") -> str:
    """The Python codec for an MSH-18 value (case-insensitive); ``default`` when unknown."""
    return CHARSETS.get(charset.strip().upper(), default)
