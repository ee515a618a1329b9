"""Names of HL7 segment fields, from hl7apy's copy of the standard, for people to read."""

from __future__ import annotations

from functools import lru_cache

from hl7apy import load_reference

_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8")


@lru_cache(maxsize=512)
def field_names(segment: str, version: str) -> dict[int, str]:
    """Field number -> name ("Patient Name") for a segment in an HL7 version; {} if unknown.

    Z-segments and versions hl7apy does not know have no names; 2.5.1 stands in for a
    version it does not carry.
    """
    version = version if version in _VERSIONS else "2.5.1"
    try:
        reference = load_reference(segment, "Segment", version)
    except Exception:  # hl7apy raises several types for an unknown segment
        return {}
    names: dict[int, str] = {}
    for child in reference[1]:
        code, detail = child[0], child[1]
        try:
            number = int(code.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        names[number] = str(detail[3]).replace("_", " ").title()
    return names
