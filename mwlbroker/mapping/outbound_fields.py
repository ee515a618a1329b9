"""The fields every message the broker sends fills alike: the MSH header and the patient in PID.

A status message (ORM^O01 / OMI^O23) and an ADT^A40 come from the same sending application to
the same destination, and carry the patient in the same PID fields; so both take these values
from here, keyed by their :func:`mwlbroker.hl7v2.writer.fill` placeholder names.
"""

from __future__ import annotations

from datetime import datetime

from mwlbroker.domain.outbound import Destination
from mwlbroker.domain.worklist import Attributes
from mwlbroker.hl7v2.writer import escape
from mwlbroker.mapping.hl7_datatypes import cx, text_of, xpn


def header_fields(
    destination: Destination, *, application: str, facility: str, control_id: str, at: datetime
) -> dict[str, str]:
    """MSH-3 to MSH-7, MSH-10 and MSH-18 of a message to ``destination``."""
    charset = destination.charset
    return {
        "MSH3": escape(application),  # MSH-3 Sending Application
        "MSH4": escape(facility),  # MSH-4 Sending Facility
        "MSH5": escape(destination.receiving_application),
        "MSH6": escape(destination.receiving_facility),
        "MSH7": timestamp(at),  # MSH-7 Date/Time of Message
        "MSH10": escape(control_id),  # MSH-10 Message Control ID
        # MSH-18 Character Set: left empty for the default, ASCII
        "MSH18": "" if charset == "ASCII" else charset,
    }


def patient_fields(patient: Attributes) -> dict[str, str]:
    """PID-3, PID-5, PID-7 and PID-8: the patient as the RIS knows them."""
    return {
        "PID3": cx(patient),  # PID-3 Patient Identifier List
        "PID5": xpn(text_of(patient, "PatientName")),  # PID-5 Patient Name
        "PID7": escape(text_of(patient, "PatientBirthDate")),  # PID-7 Date/Time of Birth
        "PID8": escape(text_of(patient, "PatientSex")),  # PID-8 Administrative Sex
    }


def timestamp(moment: datetime) -> str:
    """HL7 TS in the site's local time, to the second."""
    return moment.astimezone().strftime("%Y%m%d%H%M%S")
