"""Status messages for the RIS: ORM^O01 (ORC-1 SC) or, for v2.5.1 destinations, OMI^O23.

The fields follow the IHE Radiology Scheduled Workflow mapping the broker reads orders with,
read backwards: PID-3 Patient ID with its assigning authority, PID-5 the name (XPN order),
ORC-2/3 placer and filler order numbers, ORC-5 the status (IP, CM, DC), OBR-18/19/20 accession,
requested procedure and scheduled step IDs, OBR-24 modality, OBR-7/8 when the exam began and
ended; ZDS-1 (ORM) or IPC-1..5 (OMI) the DICOM identifiers.

hl7apy builds each message shape (version and type) once with placeholders; the values of each
message are escaped and filled in, as for the ACKs (:mod:`mwlbroker.hl7v2.writer`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from hl7apy.core import Message

from mwlbroker.domain.outbound import Destination, StatusReport
from mwlbroker.domain.worklist import Attributes
from mwlbroker.hl7v2.writer import encode, escape, fill, placeholders


def build_status_message(
    report: StatusReport,
    destination: Destination,
    *,
    control_id: str,
    application: str = "MWLBROKER",
    facility: str = "",
) -> bytes:
    """The status message for one destination, encoded in its character set."""
    version = destination.version
    placer = report.placer_order_number or ""
    filler = report.filler_order_number or ""
    procedure, step, patient = report.procedure, report.step, report.patient
    charset = destination.charset
    values = {
        "MSH3": escape(application),
        "MSH4": escape(facility),
        "MSH5": escape(destination.receiving_application),
        "MSH6": escape(destination.receiving_facility),
        "MSH7": _timestamp(report.at),
        "MSH10": escape(control_id),
        "MSH18": "" if charset == "ASCII" else charset,
        # CX: ID ^ check digit ^ check digit scheme ^ assigning authority
        "PID3": _joined(escape(_text(patient, "PatientID")), "", "", _hd(patient)),
        "PID5": _xpn(_text(patient, "PatientName")),
        "PID7": escape(_text(patient, "PatientBirthDate")),
        "PID8": escape(_text(patient, "PatientSex")),
        "ORC2": escape(placer),
        "ORC3": escape(filler),
        "ORC5": report.order_status.value,
        "ORC9": _timestamp(report.at),
        "OBR2": escape(placer),
        "OBR3": escape(filler),
        "OBR4": _service(procedure),
        "OBR7": report.started or "",
        "OBR8": report.ended or "",
        "OBR18": escape(_text(procedure, "AccessionNumber")),  # OBR-18 Placer Field 1
        "OBR19": escape(_text(procedure, "RequestedProcedureID")),  # OBR-19 Placer Field 2
        "OBR20": escape(_text(step, "ScheduledProcedureStepID")),  # OBR-20 Filler Field 1
        "OBR24": escape(_text(step, "Modality")),  # OBR-24 Diagnostic Serv Sect ID
        "UID": escape(_text(procedure, "StudyInstanceUID")),
        "IPC1": escape(_text(procedure, "AccessionNumber")),
        "IPC2": escape(_text(procedure, "RequestedProcedureID")),
        "IPC4": escape(_text(step, "ScheduledProcedureStepID")),
        "IPC5": escape(_text(step, "Modality")),
    }
    er7 = fill(_template(version, destination.message_type), values, trailing="|^&")
    lines = er7.split("\r")
    if destination.message_type == "ORM^O01" and values["UID"]:
        # ZDS-1 Study Instance UID ^ 100 ^ Application ^ DICOM (IHE RAD TF-2 4.4.4.1.2.1)
        lines.append(f"ZDS|{values['UID']}^100^Application^DICOM")
    return encode("\r".join(line for line in lines if line) + "\r", charset)


@lru_cache(maxsize=32)
def _template(version: str, message_type: str) -> str:
    """The message's structure for one version and type, built by hl7apy once."""
    if message_type == "OMI^O23":
        return _omi_template(version)
    return _orm_template(version)


def _header(message: Message, version: str, message_type: str) -> None:
    header = message.msh
    placeholders(header, 3, 4, 5, 6, 7, 10, 18)
    structure = message_type.replace("^", "_")
    # MSH-9.3 Message Structure: v2.3.1 senders leave it out in practice; 2.4 on give it.
    header.msh_9 = message_type if version in ("2.3", "2.3.1") else f"{message_type}^{structure}"
    header.msh_11 = "P"
    header.msh_12 = version


def _patient(group: Any) -> None:
    pid = group.pid
    pid.pid_1 = "1"
    placeholders(pid, 3, 5, 7, 8)


def _order_control(orc: Any) -> None:
    orc.orc_1 = "SC"  # ORC-1 Order Control: status changed
    placeholders(orc, 2, 3, 5, 9)


def _request(obr: Any) -> None:
    obr.obr_1 = "1"
    placeholders(obr, 2, 3, 4, 7, 8, 18, 19, 20, 24)


def _orm_template(version: str) -> str:
    message = Message("ORM_O01", version=version)
    _header(message, version, "ORM^O01")
    _patient(message.add_group("ORM_O01_PATIENT"))
    order = message.add_group("ORM_O01_ORDER")
    _order_control(order.orc)
    detail = order.add_group("ORM_O01_ORDER_DETAIL")
    if version in ("2.3", "2.3.1", "2.4"):
        _request(detail.add_group("ORM_O01_CHOICE").obr)
    else:
        _request(detail.obr)
    return str(message.to_er7())


def _omi_template(version: str) -> str:
    message = Message("OMI_O23", version=version)
    _header(message, version, "OMI^O23")
    _patient(message.add_group("OMI_O23_PATIENT"))
    order = message.add_group("OMI_O23_ORDER")
    _order_control(order.orc)
    _request(order.obr)
    ipc = order.add_segment("IPC")  # Imaging Procedure Control
    ipc.ipc_1 = "QQIPC1QQ"  # accession identifier
    ipc.ipc_2 = "QQIPC2QQ"  # requested procedure ID
    ipc.ipc_3 = "QQUIDQQ"  # Study Instance UID
    ipc.ipc_4 = "QQIPC4QQ"  # scheduled procedure step ID
    ipc.ipc_5 = "QQIPC5QQ"  # modality
    return str(message.to_er7())


# -- values -------------------------------------------------------------------------------------


def _text(attributes: Attributes, keyword: str) -> str:
    value = attributes.get(keyword)
    return value if isinstance(value, str) else ""


def _joined(*components: str) -> str:
    return "^".join(components).rstrip("^")


def _hd(patient: Attributes) -> str:
    # HD within CX: its components are subcomponents (&).
    return escape(_text(patient, "IssuerOfPatientID"))


def _xpn(name: str) -> str:
    """DICOM PN family^given^middle^prefix^suffix -> HL7 XPN family^given^middle^suffix^prefix."""
    alphabetic = name.split("=")[0]
    parts = (alphabetic.split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (escape(part) for part in parts)
    return _joined(family, given, middle, suffix, prefix)


def _service(procedure: Attributes) -> str:
    """OBR-4 Universal Service ID: code ^ meaning ^ scheme of the requested procedure."""
    codes = procedure.get("RequestedProcedureCodeSequence")
    if isinstance(codes, list) and codes and isinstance(codes[0], dict):
        code = codes[0]
        return _joined(
            escape(_text(code, "CodeValue")),
            escape(_text(code, "CodeMeaning")),
            escape(_text(code, "CodingSchemeDesignator")),
        )
    description = _text(procedure, "RequestedProcedureDescription")
    return _joined("", escape(description)) if description else ""


def _timestamp(moment: Any) -> str:
    """HL7 TS in the site's local time, to the second."""
    return str(moment.astimezone().strftime("%Y%m%d%H%M%S"))
