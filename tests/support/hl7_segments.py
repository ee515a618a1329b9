"""HL7 v2 segments written by field number, so a test never miscounts the bars.

``segment("OBR", {18: "ACC1", 24: "CT"})`` is ``OBR|...`` with OBR-18 and OBR-24 in place and
every other field empty; a vendor's shape is then the set of fields it fills, as its
interface specification lists them. MSH is written whole by :func:`msh`.
"""

from __future__ import annotations

from collections.abc import Mapping


def segment(name: str, fields: Mapping[int, str]) -> str:
    """Segment ``name`` with ``fields[n]`` as field n (counting from 1) and the rest empty."""
    last = max(fields, default=0)
    return "|".join([name, *(fields.get(number, "") for number in range(1, last + 1))])


def msh(control_id: str, message_type: str, version: str, sender: str = "RIS") -> str:
    """An MSH from ``sender`` at HOSPITAL to the broker, MSH-9 and MSH-12 as given."""
    return (
        f"MSH|^~\\&|{sender}|HOSPITAL|MWLBROKER|RADIOLOGY|20261206080000||{message_type}|"
        f"{control_id}|P|{version}"
    )


def wire(*segments: str) -> bytes:
    """The segments as one message on the wire: CR after each, ASCII."""
    return ("\r".join(segments) + "\r").encode("ascii")
