"""Names of HL7 segment fields, from hl7apy's copy of the standard, for people to read."""

from __future__ import annotations

from functools import lru_cache

from hl7apy import load_reference

# The versions hl7apy carries tables for; another 2.x is named by the nearest older one.
_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2")


@lru_cache(maxsize=512)
def field_names(segment: str, version: str) -> dict[int, str]:
    """Field number -> name ("Patient Name") for a segment in an HL7 version; {} if unknown.

    Z-segments have no names. A version hl7apy does not carry is named by the nearest older
    one it does (2.7.1 by 2.7), and 2.5.1 stands in for what is no version at all.
    """
    version = _reference_version(version)
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


def _reference_version(version: str) -> str:
    if version in _VERSIONS:
        return version
    parts = version.split(".")
    if not all(part.isdigit() for part in parts):
        return "2.5.1"
    wanted = tuple(int(part) for part in parts)
    older = [v for v in _VERSIONS if tuple(int(p) for p in v.split(".")) <= wanted]
    return older[-1] if older and wanted[0] == 2 else "2.5.1"
