"""What the broker tells the RIS: a status report per scheduled step, and where it goes.

A status report is built in the transaction that changed the step, from what the broker
holds; the message for each destination is made from it then and kept byte for byte until it
is acknowledged. Pure Python.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from mwlbroker.domain.worklist import Attributes, StepStatus


class OrderStatus(enum.StrEnum):
    """ORC-5 Order Status (HL7 table 0038) of the status messages the broker sends."""

    IN_PROCESS = "IP"
    COMPLETED = "CM"
    DISCONTINUED = "DC"


# The step statuses the RIS hears about, and how.
ORDER_STATUS_OF = {
    StepStatus.STARTED: OrderStatus.IN_PROCESS,
    StepStatus.COMPLETED: OrderStatus.COMPLETED,
    StepStatus.DISCONTINUED: OrderStatus.DISCONTINUED,
}

# HL7 versions a destination can take, and MSH-18 character sets it can be sent in.
VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
CHARSETS = ("ASCII", "8859/1", "UNICODE UTF-8")


class DeliveryStatus(enum.StrEnum):
    """Where an outbound message stands."""

    PENDING = "pending"  # waiting for its turn, its next attempt, or an answer
    SENT = "sent"  # acknowledged (MSA-1 AA or CA)
    FAILED = "failed"  # refused too often: held, with the later messages of its order


@dataclass(frozen=True)
class Destination:
    """An HL7 receiver of status messages: ``[[outbound.destinations]]``."""

    name: str
    host: str
    port: int
    version: str = "2.3.1"  # 2.5.1: OMI^O23; earlier: ORM^O01
    receiving_application: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    charset: str = "UNICODE UTF-8"  # MSH-18
    tls: bool = False  # MLLP over TLS
    tls_ca: str = ""  # CA (PEM) the destination's certificate is checked against; "": system's
    tls_cert: str = ""  # our client certificate (PEM), if the destination asks for one
    tls_key: str = ""

    @property
    def message_type(self) -> str:
        """OMI^O23 (imaging order, v2.5.1) or ORM^O01 (general order) for this destination."""
        return "OMI^O23" if self.version == "2.5.1" else "ORM^O01"


@dataclass(frozen=True)
class StatusReport:
    """One scheduled step's new status with everything the message about it says."""

    order_status: OrderStatus  # ORC-5
    placer_order_number: str | None  # ORC-2
    filler_order_number: str | None  # ORC-3
    patient: Attributes  # PatientID, IssuerOfPatientID, PatientName, ...
    order: Attributes  # request level: physicians, visit
    procedure: Attributes  # AccessionNumber, RequestedProcedureID, StudyInstanceUID, codes
    step: Attributes  # ScheduledProcedureStepID, Modality, ...
    at: datetime  # when the change was made (ORC-9)
    started: str | None = None  # performed start, YYYYMMDDHHMMSS (OBR-7)
    ended: str | None = None  # performed end, YYYYMMDDHHMMSS (OBR-8)
