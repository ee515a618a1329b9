"""DICOM attributes written as the HL7 v2 data types of the messages the broker sends.

The status messages and the ADT^A40 carry the same patient in the same PID fields, so they
write it the same way: values escaped (chapter 2.7), trailing empty components dropped
(chapter 2.5.3).
"""

from __future__ import annotations

from mwlbroker.domain.worklist import Attributes
from mwlbroker.hl7v2.writer import escape


def text_of(attributes: Attributes, keyword: str) -> str:
    """The attribute's string value, or "" when it is absent or not a string."""
    value = attributes.get(keyword)
    return value if isinstance(value, str) else ""


def joined(*components: str) -> str:
    """Components joined with ^, the empty ones at the end left out."""
    return "^".join(components).rstrip("^")


def cx(patient: Attributes) -> str:
    """CX: ID ^ check digit ^ check digit scheme ^ assigning authority (an HD, whose own
    components would be subcomponents)."""
    issuer = escape(text_of(patient, "IssuerOfPatientID"))
    return joined(escape(text_of(patient, "PatientID")), "", "", issuer)


def xpn(name: str) -> str:
    """DICOM PN family^given^middle^prefix^suffix -> HL7 XPN family^given^middle^suffix^prefix."""
    alphabetic = name.split("=")[0]
    parts = (alphabetic.split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (escape(part) for part in parts)
    return joined(family, given, middle, suffix, prefix)
