"""ADT^A40 for the RIS: a merge made here, told back as the RIS itself would say it.

PID carries the surviving patient (PID-3 ID ^^^ assigning authority, PID-5 name in XPN order,
PID-7, PID-8) and MRG-1 the merged-away patient's ID (IHE ITI PAM / RAD Patient Information
Reconciliation). The values are escaped as in the status messages.
"""

from __future__ import annotations

from datetime import datetime

from mwlbroker.domain.outbound import Destination
from mwlbroker.domain.worklist import Attributes
from mwlbroker.hl7v2.writer import encode, escape
from mwlbroker.mapping.hl7_datatypes import cx, text_of, xpn


def build_merge_message(
    survivor: Attributes,
    prior: Attributes,
    destination: Destination,
    *,
    control_id: str,
    at: datetime,
    application: str = "MWLBROKER",
    facility: str = "",
) -> bytes:
    """ADT^A40 (ADT_A39 structure from v2.4 on) merging ``prior`` into ``survivor``."""
    version = destination.version
    charset = destination.charset
    when = at.astimezone().strftime("%Y%m%d%H%M%S")
    message_type = "ADT^A40" if version in ("2.3", "2.3.1") else "ADT^A40^ADT_A39"
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                escape(application),
                escape(facility),
                escape(destination.receiving_application),
                escape(destination.receiving_facility),
                when,
                "",
                message_type,
                escape(control_id),
                "P",
                version,
                "",
                "",
                "",
                "",
                "" if charset == "ASCII" else charset,
            ]
        ),
        f"EVN|A40|{when}",
        "|".join(
            [
                "PID",
                "1",
                "",
                cx(survivor),  # PID-3 Patient Identifier List
                "",
                xpn(text_of(survivor, "PatientName")),  # PID-5
                "",
                escape(text_of(survivor, "PatientBirthDate")),  # PID-7
                escape(text_of(survivor, "PatientSex")),  # PID-8
            ]
        ),
        f"MRG|{cx(prior)}",  # MRG-1 Prior Patient Identifier List
    ]
    text = "\r".join(segment.rstrip("|") for segment in segments) + "\r"
    return encode(text, charset)
