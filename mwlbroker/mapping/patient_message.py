"""ADT^A40 for the RIS: a merge made here, told back as the RIS itself would say it.

PID carries the surviving patient (PID-3 ID ^^^ assigning authority, PID-5 name in XPN order,
PID-7, PID-8) and MRG-1 the merged-away patient's ID (IHE ITI PAM / RAD Patient Information
Reconciliation). MSH and PID are filled as in the status messages
(:mod:`mwlbroker.mapping.outbound_fields`).
"""

from __future__ import annotations

from datetime import datetime

from mwlbroker.domain.outbound import Destination
from mwlbroker.domain.worklist import Attributes
from mwlbroker.hl7v2.writer import encode, fill
from mwlbroker.mapping.hl7_datatypes import cx
from mwlbroker.mapping.outbound_fields import header_fields, patient_fields


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
    values = {
        **header_fields(
            destination, application=application, facility=facility, control_id=control_id, at=at
        ),
        # MSH-9.3 Message Structure: from v2.4 on
        "MSH9": "ADT^A40" if version in ("2.3", "2.3.1") else "ADT^A40^ADT_A39",
        "MSH12": version,
        **patient_fields(survivor),
        "MRG1": cx(prior),  # MRG-1 Prior Patient Identifier List
    }
    return encode(fill(_TEMPLATE, values, trailing="|") + "\r", destination.charset)


# The A40 is too small to be worth building with hl7apy: its four segments, with the
# placeholders :func:`mwlbroker.hl7v2.writer.fill` replaces (EVN-2 is MSH-7's time).
_TEMPLATE = "\r".join(
    [
        "MSH|^~\\&|QQMSH3QQ|QQMSH4QQ|QQMSH5QQ|QQMSH6QQ|QQMSH7QQ||QQMSH9QQ|QQMSH10QQ|P|QQMSH12QQ"
        "|||||QQMSH18QQ",
        "EVN|A40|QQMSH7QQ",
        "PID|1||QQPID3QQ||QQPID5QQ||QQPID7QQ|QQPID8QQ",
        "MRG|QQMRG1QQ",
    ]
)
