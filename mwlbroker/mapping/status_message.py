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
from mwlbroker.mapping.hl7_datatypes import joined, text_of
from mwlbroker.mapping.outbound_fields import header_fields, patient_fields, timestamp


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
        **header_fields(
            destination,
            application=application,
            facility=facility,
            control_id=control_id,
            at=report.at,
        ),
        **patient_fields(patient),
        "ORC2": escape(placer),
        "ORC3": escape(filler),
        "ORC5": report.order_status.value,
        "ORC9": timestamp(report.at),
        "OBR2": escape(placer),
        "OBR3": escape(filler),
        "OBR4": _service(procedure),
        "OBR7": report.started or "",
        "OBR8": report.ended or "",
        "OBR18": escape(text_of(procedure, "AccessionNumber")),  # OBR-18 Placer Field 1
        "OBR19": escape(text_of(procedure, "RequestedProcedureID")),  # OBR-19 Placer Field 2
        "OBR20": escape(text_of(step, "ScheduledProcedureStepID")),  # OBR-20 Filler Field 1
        "OBR24": escape(text_of(step, "Modality")),  # OBR-24 Diagnostic Serv Sect ID
        "UID": escape(text_of(procedure, "StudyInstanceUID")),
        "IPC1": escape(text_of(procedure, "AccessionNumber")),
        "IPC2": escape(text_of(procedure, "RequestedProcedureID")),
        "IPC4": escape(text_of(step, "ScheduledProcedureStepID")),
        "IPC5": escape(text_of(step, "Modality")),
    }
    er7 = fill(_template(version, destination.message_type), values, trailing="|^&")
    lines = er7.split("\r")
    if destination.message_type == "ORM^O01" and values["UID"]:
        # ZDS-1 Study Instance UID ^ 100 ^ Application ^ DICOM (IHE RAD TF-2 4.4.4.1.2.1)
        lines.append(f"ZDS|{values['UID']}^100^Application^DICOM")
    return encode("\r".join(line for line in lines if line) + "\r", charset)


@lru_cache(maxsize=32)
def _template(version: str, message_type: str) -> str:
    """The message's structure for one version and type, built by hl7apy once.

    ORM^O01 and OMI^O23 carry PID and ORC alike; an ORM's OBR sits in its order detail (inside a choice group
    up to v2.4), an OMI's in the order itself, followed by IPC.
    """
    structure = message_type.replace("^", "_")
    message = Message(structure, version=version)
    _header(message, version, message_type)
    _patient(message.add_group(f"{structure}_PATIENT"))
    order = message.add_group(f"{structure}_ORDER")
    _order_control(order.orc)
    if message_type == "OMI^O23":
        _request(order.obr)
        _imaging_procedure_control(order.add_segment("IPC"))
    else:
        detail = order.add_group("ORM_O01_ORDER_DETAIL")
        if version in ("2.3", "2.3.1", "2.4"):
            _request(detail.add_group("ORM_O01_CHOICE").obr)
        else:
            _request(detail.obr)
    return str(message.to_er7())


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


def _imaging_procedure_control(ipc: Any) -> None:
    ipc.ipc_1 = "QQIPC1QQ"  # accession identifier
    ipc.ipc_2 = "QQIPC2QQ"  # requested procedure ID
    ipc.ipc_3 = "QQUIDQQ"  # Study Instance UID
    ipc.ipc_4 = "QQIPC4QQ"  # scheduled procedure step ID
    ipc.ipc_5 = "QQIPC5QQ"  # modality


# -- values -------------------------------------------------------------------------------------


def _service(procedure: Attributes) -> str:
    """OBR-4 Universal Service ID: code ^ meaning ^ scheme of the requested procedure."""
    codes = procedure.get("RequestedProcedureCodeSequence")
    if isinstance(codes, list) and codes and isinstance(codes[0], dict):
        code = codes[0]
        return joined(
            escape(text_of(code, "CodeValue")),
            escape(text_of(code, "CodeMeaning")),
            escape(text_of(code, "CodingSchemeDesignator")),
        )
    description = text_of(procedure, "RequestedProcedureDescription")
    return joined("", escape(description)) if description else ""
