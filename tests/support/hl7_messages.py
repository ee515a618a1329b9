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


def utf8_orm(
    control_id: str,
    *,
    patient: str,
    name: str = "DOE^JOHN",
    birth: str = "19700101",
    sex: str = "M",
    order: str | None = None,
    accession: str | None = None,
    study_uid: str | None = None,
) -> bytes:
    """ORM^O01 NW in UTF-8 for one patient, with a ZDS Study Instance UID when given."""
    order = order or f"PL{control_id}"
    segments = [
        "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ORM^O01|"
        f"{control_id}|P|2.3.1||||||UNICODE UTF-8",
        f"PID|1||{patient}^^^HOSPITAL^MR||{name}||{birth}|{sex}",
        f"ORC|NW|{order}|F{order}||SC||^^^20261127143000^^R",
        f"OBR|1|{order}|F{order}|CTCHEST^CT chest^L||||||||||||||{accession or 'A' + order}|"
        f"R{order}|S{order}||||CT",
    ]
    if study_uid:
        segments.append(f"ZDS|{study_uid}^100^Application^DICOM")
    return hl7(*segments, charset="utf-8")


def a40(control_id: str, survivor: str, prior: str) -> bytes:
    """ADT^A40: the RIS merges patient ``prior`` into ``survivor`` (both MRNs of HOSPITAL)."""
    return hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ADT^A40|{control_id}|P|2.3.1",
        "EVN|A40|20261127101500",
        f"PID|1||{survivor}^^^HOSPITAL^MR",
        f"MRG|{prior}^^^HOSPITAL^MR",
    )
