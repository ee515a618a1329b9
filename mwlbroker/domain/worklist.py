"""Patients, orders and scheduled procedure steps as the mapping produces them.

Attribute values are keyed by DICOM keyword and already in DICOM form (PN ``DOE^JOHN``,
DA ``20261127``, TM ``143000``; code sequences as lists of dicts). A keyword that is absent
means "keep what is stored"; the value :data:`CLEAR` means the sender sent the HL7 null ``""``
and the stored value must be removed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Final

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.messages import MessageWarning


class _Clear:
    """The HL7 null carried into the domain: remove the stored value."""

    _instance: _Clear | None = None

    def __new__(cls) -> _Clear:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "CLEAR"

    def __bool__(self) -> bool:
        return False


CLEAR: Final = _Clear()

Value = Any
"""str, a list of dicts for a sequence, or CLEAR."""
Attributes = dict[str, Value]


class StepStatus(enum.StrEnum):
    """(0040,0020) Scheduled Procedure Step Status, plus HELD, REMOVED and EXPIRED.

    HELD (ORC-1 HD), REMOVED (a step an order update no longer lists) and EXPIRED (a step whose
    start passed long ago without it being performed, see the expire_steps job) are not DICOM
    terms: such steps are never served, only kept in history. An expired step is not final: an
    order update from the RIS can schedule it again.
    """

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"
    HELD = "HELD"
    REMOVED = "REMOVED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {StepStatus.COMPLETED, StepStatus.DISCONTINUED, StepStatus.CANCELED, StepStatus.REMOVED}
)

# Keywords that live inside the Scheduled Procedure Step Sequence item (PS3.4 Table K.6-1).
SPS_KEYWORDS = frozenset(
    {
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledProcedureStepEndDate",
        "ScheduledProcedureStepEndTime",
        "Modality",
        "AnatomicalOrientationType",
        "RequestedContrastAgent",
        "ScheduledPerformingPhysicianName",
        "ScheduledPerformingPhysicianIdentificationSequence",
        "ScheduledProcedureStepDescription",
        "ScheduledProtocolCodeSequence",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepStatus",
        "ScheduledStationName",
        "ScheduledProcedureStepLocation",
        "PreMedication",
        "CommentsOnTheScheduledProcedureStep",
        "ScheduledSpecimenSequence",
    }
)


@dataclass
class MappedPatient:
    """Patient-level attributes (PatientID, IssuerOfPatientID, PatientName, ...)."""

    attributes: Attributes = field(default_factory=dict)

    @property
    def patient_id(self) -> str | None:  # (0010,0020) Patient ID
        value = self.attributes.get("PatientID")
        return value if isinstance(value, str) and value else None

    @property
    def issuer(self) -> str:  # (0010,0021) Issuer of Patient ID; "" when not given
        value = self.attributes.get("IssuerOfPatientID")
        return value if isinstance(value, str) else ""


@dataclass
class MappedStep:
    """One worklist item: its requested procedure attributes and its SPS item attributes."""

    procedure: Attributes = field(default_factory=dict)  # AccessionNumber, StudyInstanceUID, ...
    step: Attributes = field(default_factory=dict)  # inside ScheduledProcedureStepSequence

    def _text(self, attributes: Attributes, keyword: str) -> str | None:
        value = attributes.get(keyword)
        return value if isinstance(value, str) and value else None

    @property
    def sps_id(self) -> str | None:  # (0040,0009) Scheduled Procedure Step ID
        return self._text(self.step, "ScheduledProcedureStepID")

    @property
    def accession_number(self) -> str | None:  # (0008,0050) Accession Number
        return self._text(self.procedure, "AccessionNumber")

    @property
    def requested_procedure_id(self) -> str | None:  # (0040,1001) Requested Procedure ID
        return self._text(self.procedure, "RequestedProcedureID")

    @property
    def study_instance_uid(self) -> str | None:  # (0020,000D) Study Instance UID
        return self._text(self.procedure, "StudyInstanceUID")


# Segments of the patient and the visit, before the orders: a location there stays as it is.
_PATIENT_LEVEL = frozenset(
    {"MSH", "SFT", "EVN", "PID", "PD1", "NK1", "PV1", "PV2", "IN1", "IN2", "GT1", "AL1", "MRG"}
)


@dataclass(frozen=True)
class OrderGroup:
    """Where an order sits in a message that carries several (ORC groups of different orders)."""

    number: int  # 1, 2, ... in message order
    orc: int  # occurrence of the order's first ORC segment
    placer: str | None = None  # ORC-2 (else OBR-2)
    filler: str | None = None  # ORC-3 (else OBR-3)

    @property
    def name(self) -> str:
        """``order 2 (ORC[3], placer PL2)``: how errors and reports name the order."""
        number = f"placer {self.placer}" if self.placer else None
        number = number or (f"filler {self.filler}" if self.filler else None)
        return f"order {self.number} (ORC[{self.orc}]{', ' + number if number else ''})"

    def locate(self, error: MessageError) -> MessageError:
        """``error`` as the sender should hear it: naming this order, ERR-2 at its ORC.

        A location on the patient or the visit (PID-3) stays; one on the ORC gets this
        order's occurrence (ORC-1 -> ORC[3]-1); one inside the order's segments (OBR, IPC,
        ZDS...) points at the order's ORC, since the text names the item.
        """
        location = error.location or ""
        match = re.match(r"^([A-Z][A-Z0-9]{2})(\[\d+\])?(-.*)?$", location)
        if match and not match[2] and match[1] not in _PATIENT_LEVEL:
            field = (match[3] or "") if match[1] == "ORC" else ""
            location = f"ORC[{self.orc}]{field}"
        elif not match:
            location = f"ORC[{self.orc}]"
        return type(error)(
            f"{self.name}: {error.text}", error_code=error.error_code, location=location
        )


@dataclass
class MappedOrder:
    """What an ORM^O01 / OMI^O23 (or SIU) message says about an order."""

    order_control: str  # ORC-1, e.g. NW
    order_status: str  # ORC-5, "" when empty
    step_status: StepStatus  # from the mapping's status table for (ORC-1, ORC-5)
    placer_order_number: str | None  # ORC-2 (else OBR-2)
    filler_order_number: str | None  # ORC-3 (else OBR-3)
    patient: MappedPatient
    order: Attributes = field(default_factory=dict)  # request level: physicians, visit, ...
    steps: list[MappedStep] = field(default_factory=list)
    profile: str = ""  # name of the mapping profile that produced it
    merged_patient: str = "refuse"  # the profile's policy for a merged-away Patient ID
    group: OrderGroup | None = None  # None: the message's only order
    warnings: list[MessageWarning] = field(default_factory=list)  # values cut to fit, say


@dataclass
class MappedPatientEvent:
    """What an ADT message says: a patient's new attributes, for merges (A40 ...) and A47 the
    prior ID, for visit events (A02 ...) the visit as it is now, for A24/A37 the linked ID."""

    trigger: str  # MSH-9.2, e.g. A08
    patient: MappedPatient
    prior_patient_id: str | None = None  # MRG-1.1
    prior_issuer: str = ""  # MRG-1.4
    profile: str = ""
    visit: Attributes = field(default_factory=dict)  # CurrentPatientLocation, AdmissionID ...
    linked_patient_id: str | None = None  # A24 / A37: the second PID's PID-3.1
    linked_issuer: str = ""  # ... PID-3.4
    merged_patient: str = "refuse"  # the profile's policy for a merged-away Patient ID
    warnings: list[MessageWarning] = field(default_factory=list)  # values cut to fit, say
