"""HL7 v2 messages as the tests write and read them: built from segment strings, split by field.

Written here by hand rather than with the broker's own reader, so that a test checks the broker
against an independent reading of the standard's encoding rules (HL7 v2 chapter 2).
"""

from __future__ import annotations


def ack_fields(ack: bytes) -> dict[str, list[str]]:
    """Segments of an ACK by ID, fields split so that index n is field n (MSH-n for MSH)."""
    segments: dict[str, list[str]] = {}
    for line in ack.decode("latin-1").split("\r"):
        if not line:
            continue
        parts = line.split("|")
        if parts[0] == "MSH":
            parts = ["MSH", "|", *parts[1:]]
        segments[parts[0]] = parts
    return segments


def hl7(*segments: str, charset: str = "latin-1") -> bytes:
    """A message from segment strings, CR-terminated as on the wire."""
    return ("\r".join(segments) + "\r").encode(charset)


def orm(
    control_id: str = "C1",
    *,
    version: str = "2.3.1",
    sender: str = "RIS",
    patient: str = "PID1",
    msg_type: str = "ORM^O01",
    control: str = "NW",
    order_status: str = "SC",
    order: str | None = None,
    extra: str = "",
) -> bytes:
    """A small but complete ORM^O01; the order number defaults to one per control ID."""
    order = order or f"PL{control_id}"
    return hl7(
        f"MSH|^~\\&|{sender}|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||{msg_type}|{control_id}|P|{version}",
        f"PID|1||{patient}^^^HOSPITAL^MR||DOE^JOHN||19700101|M",
        f"ORC|{control}|{order}|F{order}||{order_status}||^^^20261127143000^^R",
        f"OBR|1|{order}|F{order}|CTCHEST^CT chest^L||||||||||||||A{order}|R{order}|S{order}||||CT{extra}",
    )


def segment_fields(message: bytes, segment: str, occurrence: int = 1) -> list[str]:
    """The fields of a segment, so that index n is field n (MSH-n for MSH); [] if absent."""
    seen = 0
    for line in message.decode("utf-8", errors="replace").split("\r"):
        if line.startswith(segment + "|"):
            seen += 1
            if seen == occurrence:
                parts = line.split("|")
                return ["MSH", "|", *parts[1:]] if segment == "MSH" else parts
    return []
