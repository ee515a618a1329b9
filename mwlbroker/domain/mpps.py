"""Modality Performed Procedure Step as PS3.4 Annex F defines it, on DICOM JSON data sets.

An MPPS is created IN PROGRESS by N-CREATE and ended by N-SET, COMPLETED or DISCONTINUED;
after that it cannot change. The rules here decide whether a request is acceptable and what
status a refusal carries (PS3.4 F.7.2, PS3.7 10.1.5 and 10.1.1, status codes of PS3.7 Annex C);
the data sets are in the DICOM JSON model (PS3.18 F.2), keyed by tags such as ``"00400252"``,
the form the store keeps. Pure Python: no pydicom, no SQL.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mwlbroker.domain.transitions import MAY_START, StepTransition, step_transition
from mwlbroker.domain.worklist import StepStatus

SOP_CLASS_UID = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class

Dataset = dict[str, Any]
"""A data set in the DICOM JSON model: tag -> {"vr": ..., "Value": [...]}."""

# Tags in the DICOM JSON form.
SPECIFIC_CHARACTER_SET = "00080005"  # (0008,0005) Specific Character Set | CS
ACCESSION_NUMBER = "00080050"  # (0008,0050) Accession Number | SH
MODALITY = "00080060"  # (0008,0060) Modality | CS
REFERENCED_PATIENT_SEQUENCE = "00081120"  # (0008,1120) Referenced Patient Sequence | SQ
REFERENCED_SOP_INSTANCE_UID = "00081155"  # (0008,1155) Referenced SOP Instance UID | UI
REFERENCED_IMAGE_SEQUENCE = "00081140"  # (0008,1140) Referenced Image Sequence | SQ
PATIENT_NAME = "00100010"  # (0010,0010) Patient's Name | PN
PATIENT_ID = "00100020"  # (0010,0020) Patient ID | LO
ISSUER_OF_PATIENT_ID = "00100021"  # (0010,0021) Issuer of Patient ID | LO
PATIENT_BIRTH_DATE = "00100030"  # (0010,0030) Patient's Birth Date | DA
PATIENT_SEX = "00100040"  # (0010,0040) Patient's Sex | CS
STUDY_INSTANCE_UID = "0020000D"  # (0020,000D) Study Instance UID | UI
SERIES_INSTANCE_UID = "0020000E"  # (0020,000E) Series Instance UID | UI
STUDY_ID = "00200010"  # (0020,0010) Study ID | SH
ADMISSION_ID = "00380010"  # (0038,0010) Admission ID | LO
SPS_ID = "00400009"  # (0040,0009) Scheduled Procedure Step ID | SH
PERFORMED_STATION_AE_TITLE = "00400241"  # (0040,0241) Performed Station AE Title | AE
PERFORMED_STATION_NAME = "00400242"  # (0040,0242) Performed Station Name | SH
PERFORMED_LOCATION = "00400243"  # (0040,0243) Performed Location | SH
PPS_START_DATE = "00400244"  # (0040,0244) Performed Procedure Step Start Date | DA
PPS_START_TIME = "00400245"  # (0040,0245) Performed Procedure Step Start Time | TM
PPS_END_DATE = "00400250"  # (0040,0250) Performed Procedure Step End Date | DA
PPS_END_TIME = "00400251"  # (0040,0251) Performed Procedure Step End Time | TM
PPS_STATUS = "00400252"  # (0040,0252) Performed Procedure Step Status | CS
PPS_ID = "00400253"  # (0040,0253) Performed Procedure Step ID | SH
PPS_DESCRIPTION = "00400254"  # (0040,0254) Performed Procedure Step Description | LO
SCHEDULED_STEP_ATTRIBUTES_SEQUENCE = "00400270"  # (0040,0270) | SQ
PERFORMED_SERIES_SEQUENCE = "00400340"  # (0040,0340) Performed Series Sequence | SQ
REQUESTED_PROCEDURE_ID = "00401001"  # (0040,1001) Requested Procedure ID | SH
REFERENCED_NON_IMAGE_SEQUENCE = (
    "00400220"  # (0040,0220) Referenced Non-Image Composite SOP Instance
)

_NAMES = {
    MODALITY: "Modality",
    PATIENT_NAME: "Patient's Name",
    PATIENT_ID: "Patient ID",
    ISSUER_OF_PATIENT_ID: "Issuer of Patient ID",
    PATIENT_BIRTH_DATE: "Patient's Birth Date",
    PATIENT_SEX: "Patient's Sex",
    REFERENCED_PATIENT_SEQUENCE: "Referenced Patient Sequence",
    STUDY_INSTANCE_UID: "Study Instance UID",
    SERIES_INSTANCE_UID: "Series Instance UID",
    STUDY_ID: "Study ID",
    ADMISSION_ID: "Admission ID",
    PERFORMED_STATION_AE_TITLE: "Performed Station AE Title",
    PERFORMED_STATION_NAME: "Performed Station Name",
    PERFORMED_LOCATION: "Performed Location",
    PPS_START_DATE: "PPS Start Date",
    PPS_START_TIME: "PPS Start Time",
    PPS_END_DATE: "PPS End Date",
    PPS_END_TIME: "PPS End Time",
    PPS_STATUS: "PPS Status",
    PPS_ID: "PPS ID",
    SCHEDULED_STEP_ATTRIBUTES_SEQUENCE: "Scheduled Step Attributes Sequence",
    PERFORMED_SERIES_SEQUENCE: "Performed Series Sequence",
}


class PerformedStatus(enum.StrEnum):
    """(0040,0252) Performed Procedure Step Status (PS3.3 C.4.14)."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"

    @property
    def is_final(self) -> bool:
        return self is not PerformedStatus.IN_PROGRESS


class NStatus(enum.IntEnum):
    """DIMSE N-CREATE / N-SET statuses an MPPS SCP answers with (PS3.7 Annex C, PS3.4 F.7.2)."""

    SUCCESS = 0x0000
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110  # also: PPS object may no longer be updated (PS3.4 F.7.2.2.2)
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_OBJECT_INSTANCE = 0x0117
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    RESOURCE_LIMITATION = 0x0213


# PS3.4 F.7.2.2.2: the Error ID that goes with 0110 for a final step asked to change.
ERROR_ID_MAY_NO_LONGER_BE_UPDATED = 0xA710


class MPPSRefused(Exception):
    """A request the SCP does not accept: the status, a short error comment, the tags at fault.

    ``comment`` goes into (0000,0902) Error Comment, at most 64 characters; ``detail`` is the
    longer explanation for the log.
    """

    def __init__(
        self,
        status: NStatus,
        comment: str,
        *,
        tags: Iterable[str] = (),
        error_id: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(detail or comment)
        self.status = status
        self.comment = comment[:64]
        self.tags = tuple(tags)
        self.error_id = error_id
        self.detail = detail or comment


# -- reading DICOM JSON -------------------------------------------------------------------------


def values(dataset: Mapping[str, Any], tag: str) -> list[Any]:
    """The element's values; [] when absent or empty."""
    element = dataset.get(tag)
    if not isinstance(element, Mapping):
        return []
    found = element.get("Value")
    return list(found) if isinstance(found, list) else []


def text(dataset: Mapping[str, Any], tag: str) -> str:
    """The first value as text (a person name's alphabetic group); "" when absent or empty."""
    found = values(dataset, tag)
    if not found:
        return ""
    first = found[0]
    if isinstance(first, Mapping):  # PN in DICOM JSON
        return str(first.get("Alphabetic", "")).strip()
    return str(first).strip()


def items(dataset: Mapping[str, Any], tag: str) -> list[Mapping[str, Any]]:
    """The items of a sequence; [] when absent or empty."""
    return [item for item in values(dataset, tag) if isinstance(item, Mapping)]


def describe_tag(tag: str) -> str:
    """ "(0040,0252) PPS Status" for the log and error comments."""
    name = _NAMES.get(tag, "")
    return f"({tag[:4]},{tag[4:]})" + (f" {name}" if name else "")


# -- what a performed step refers to -----------------------------------------------------------


@dataclass(frozen=True)
class StepReference:
    """One item of the Scheduled Step Attributes Sequence: which scheduled step was performed."""

    study_instance_uid: str
    accession_number: str = ""
    requested_procedure_id: str = ""
    sps_id: str = ""

    @property
    def is_unscheduled(self) -> bool:
        """IHE unscheduled case: nothing but a (new) Study Instance UID identifies the order."""
        return not (self.accession_number or self.requested_procedure_id or self.sps_id)


def step_references(dataset: Mapping[str, Any]) -> list[StepReference]:
    """The Scheduled Step Attributes Sequence (0040,0270) items, in order."""
    return [
        StepReference(
            study_instance_uid=text(item, STUDY_INSTANCE_UID),
            accession_number=text(item, ACCESSION_NUMBER),
            requested_procedure_id=text(item, REQUESTED_PROCEDURE_ID),
            sps_id=text(item, SPS_ID),
        )
        for item in items(dataset, SCHEDULED_STEP_ATTRIBUTES_SEQUENCE)
    ]


def performed_instances(dataset: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(series UID, SOP instance UID) of every instance the Performed Series Sequence lists."""
    found = []
    for series in items(dataset, PERFORMED_SERIES_SEQUENCE):
        series_uid = text(series, SERIES_INSTANCE_UID)
        for sequence in (REFERENCED_IMAGE_SEQUENCE, REFERENCED_NON_IMAGE_SEQUENCE):
            for reference in items(series, sequence):
                uid = text(reference, REFERENCED_SOP_INSTANCE_UID)
                if uid:
                    found.append((series_uid, uid))
    return found


def start_datetime(dataset: Mapping[str, Any]) -> str | None:
    """(0040,0244) + (0040,0245) as YYYYMMDDHHMMSS."""
    return _datetime(text(dataset, PPS_START_DATE), text(dataset, PPS_START_TIME))


def end_datetime(dataset: Mapping[str, Any]) -> str | None:
    """(0040,0250) + (0040,0251) as YYYYMMDDHHMMSS; None until the step has ended."""
    return _datetime(text(dataset, PPS_END_DATE), text(dataset, PPS_END_TIME))


def _datetime(date: str, time: str) -> str | None:
    if not _DA.fullmatch(date):
        return None
    digits = "".join(ch for ch in time.split(".")[0] if ch.isdigit())
    return date + digits[:6].ljust(6, "0")


# -- the rules of PS3.4 Table F.7.2-1 ----------------------------------------------------------

# Type 1 on N-CREATE: present with a value.
_CREATE_TYPE_1 = (
    SCHEDULED_STEP_ATTRIBUTES_SEQUENCE,
    PPS_ID,
    PERFORMED_STATION_AE_TITLE,
    PPS_START_DATE,
    PPS_START_TIME,
    PPS_STATUS,
    MODALITY,
)
# "Not allowed" in N-SET: fixed once the step is created.
_NOT_SETTABLE = (
    SCHEDULED_STEP_ATTRIBUTES_SEQUENCE,
    PATIENT_NAME,
    PATIENT_ID,
    ISSUER_OF_PATIENT_ID,
    PATIENT_BIRTH_DATE,
    PATIENT_SEX,
    REFERENCED_PATIENT_SEQUENCE,
    ADMISSION_ID,
    PPS_ID,
    PERFORMED_STATION_AE_TITLE,
    PERFORMED_STATION_NAME,
    PERFORMED_LOCATION,
    PPS_START_DATE,
    PPS_START_TIME,
    MODALITY,
    STUDY_ID,
)
# Final state (COMPLETED or DISCONTINUED): these must have a value.
_FINAL_TYPE_1 = (PPS_END_DATE, PPS_END_TIME)

_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")


def is_valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, no leading zeros in a component, at most 64 characters."""
    return len(uid) <= 64 and bool(_UID.fullmatch(uid))


def check_create(sop_instance_uid: str, dataset: Mapping[str, Any]) -> None:
    """Refuse an N-CREATE the SCP must not accept (PS3.4 F.7.2.1); returns quietly if fine."""
    if not is_valid_uid(sop_instance_uid):
        raise MPPSRefused(
            NStatus.INVALID_OBJECT_INSTANCE,
            "Affected SOP Instance UID is not a valid UID",
            detail=f"Affected SOP Instance UID {sop_instance_uid!r} is not a valid UID (PS3.5 9.1)",
        )
    for tag in _CREATE_TYPE_1:
        _require(dataset, tag, "N-CREATE")
    for index, item in enumerate(items(dataset, SCHEDULED_STEP_ATTRIBUTES_SEQUENCE), 1):
        _require(item, STUDY_INSTANCE_UID, f"N-CREATE (Scheduled Step Attributes item {index})")
        uid = text(item, STUDY_INSTANCE_UID)
        if not is_valid_uid(uid):
            raise MPPSRefused(
                NStatus.INVALID_ATTRIBUTE_VALUE,
                f"Study Instance UID {uid[:30]} is not a valid UID",
                tags=(SCHEDULED_STEP_ATTRIBUTES_SEQUENCE,),
                detail=f"Study Instance UID {uid!r} in Scheduled Step Attributes item {index} "
                "is not a valid UID (PS3.5 9.1)",
            )
    status = text(dataset, PPS_STATUS)
    if status != PerformedStatus.IN_PROGRESS:
        raise MPPSRefused(
            NStatus.INVALID_ATTRIBUTE_VALUE,
            f"PPS Status must be IN PROGRESS on N-CREATE, not {status[:16]}",
            tags=(PPS_STATUS,),
            detail=f"(0040,0252) Performed Procedure Step Status is {status!r}; an N-CREATE "
            "creates the step IN PROGRESS (PS3.4 F.7.2.1)",
        )
    _check_formats(dataset)


def check_set(stored: Mapping[str, Any], modification: Mapping[str, Any]) -> PerformedStatus:
    """Refuse an N-SET the SCP must not accept (PS3.4 F.7.2.2); returns the status it leads to.

    ``stored`` is the step as it is now. A final step cannot change at all; attributes that
    N-SET may not touch are refused when their value differs (a modality that sends them again
    unchanged is not at fault); the status, when given, must be one of the three.
    """
    current = PerformedStatus(text(stored, PPS_STATUS) or PerformedStatus.IN_PROGRESS)
    if current.is_final:
        raise MPPSRefused(
            NStatus.PROCESSING_FAILURE,
            "Performed Procedure Step Object may no longer be updated",
            error_id=ERROR_ID_MAY_NO_LONGER_BE_UPDATED,
            detail=f"the performed procedure step is {current}; a final step cannot change "
            "(PS3.4 F.7.2.2.2)",
        )
    for tag in _NOT_SETTABLE:
        if tag in modification and not _same(stored.get(tag), modification[tag]):
            raise MPPSRefused(
                NStatus.INVALID_ATTRIBUTE_VALUE,
                f"{describe_tag(tag)} may not be changed by N-SET"[:64],
                tags=(tag,),
                detail=f"{describe_tag(tag)} is fixed at N-CREATE; N-SET may not change it "
                "(PS3.4 Table F.7.2-1)",
            )
    status = current
    if PPS_STATUS in modification:
        given = text(modification, PPS_STATUS)
        try:
            status = PerformedStatus(given)
        except ValueError:
            raise MPPSRefused(
                NStatus.INVALID_ATTRIBUTE_VALUE,
                f"PPS Status {given[:16]!r} is not IN PROGRESS/COMPLETED/DISCONTINUED",
                tags=(PPS_STATUS,),
                detail=f"(0040,0252) Performed Procedure Step Status {given!r} is not one of "
                "IN PROGRESS, COMPLETED, DISCONTINUED (PS3.3 C.4.14)",
            ) from None
    _check_formats(modification)
    if status.is_final:
        merged = apply_set(stored, modification)
        for tag in _FINAL_TYPE_1:
            _require(merged, tag, f"the final state ({status})")
        if status is PerformedStatus.COMPLETED:
            series = items(merged, PERFORMED_SERIES_SEQUENCE)
            if not series:
                raise MPPSRefused(
                    NStatus.MISSING_ATTRIBUTE_VALUE,
                    "COMPLETED needs a Performed Series Sequence item",
                    tags=(PERFORMED_SERIES_SEQUENCE,),
                    detail="(0040,0340) Performed Series Sequence is Type 1 in the final state: "
                    "a COMPLETED step lists at least one series (PS3.4 Table F.7.2-1)",
                )
            for index, item in enumerate(series, 1):
                _require(item, SERIES_INSTANCE_UID, f"Performed Series Sequence item {index}")
    return status


def apply_set(stored: Mapping[str, Any], modification: Mapping[str, Any]) -> Dataset:
    """The step after an N-SET: each attribute given replaces the stored one (PS3.7 10.1.1)."""
    merged = dict(stored)
    for tag, element in modification.items():
        merged[tag] = element
    return merged


def _require(dataset: Mapping[str, Any], tag: str, where: str) -> None:
    if tag not in dataset:
        raise MPPSRefused(
            NStatus.MISSING_ATTRIBUTE,
            f"{describe_tag(tag)} is missing"[:64],
            tags=(tag,),
            detail=f"{describe_tag(tag)} is Type 1 in {where} and is missing (PS3.4 Table F.7.2-1)",
        )
    if not values(dataset, tag) or (
        not items(dataset, tag) and not any(str(v).strip() for v in values(dataset, tag))
    ):
        raise MPPSRefused(
            NStatus.MISSING_ATTRIBUTE_VALUE,
            f"{describe_tag(tag)} has no value"[:64],
            tags=(tag,),
            detail=f"{describe_tag(tag)} is Type 1 in {where} and is empty (PS3.4 Table F.7.2-1)",
        )


def _check_formats(dataset: Mapping[str, Any]) -> None:
    for tag, pattern in (
        (PPS_START_DATE, _DA),
        (PPS_END_DATE, _DA),
        (PPS_START_TIME, _TM),
        (PPS_END_TIME, _TM),
    ):
        value = text(dataset, tag)
        if value and not pattern.fullmatch(value):
            raise MPPSRefused(
                NStatus.INVALID_ATTRIBUTE_VALUE,
                f"{describe_tag(tag)} {value[:20]!r} is not valid"[:64],
                tags=(tag,),
                detail=f"{describe_tag(tag)} {value!r} is not a valid "
                f"{'date (YYYYMMDD)' if pattern is _DA else 'time (HHMMSS.FFFFFF)'}",
            )


def _same(stored: Any, given: Any) -> bool:
    """Whether two DICOM JSON elements carry the same values (the VR and padding aside)."""
    return _normalised(stored) == _normalised(given)


def _normalised(element: Any) -> Any:
    if not isinstance(element, Mapping):
        return []
    found = element.get("Value") or []
    result: list[Any] = []
    for value in found:
        if isinstance(value, Mapping) and element.get("vr") == "SQ":
            result.append({tag: _normalised(sub) for tag, sub in value.items()})
        elif isinstance(value, Mapping):
            result.append({k: str(v).strip() for k, v in value.items() if str(v).strip()})
        else:
            result.append(str(value).strip() if isinstance(value, str) else value)
    while result and result[-1] in ("", {}):
        result.pop()
    return result


# -- what the step status becomes ----------------------------------------------------------------


class CompleteOn(enum.StrEnum):
    """What completes a scheduled step: its MPPS, its images, or both ([progress] complete_on)."""

    MPPS = "mpps"
    IMAGES = "images"
    BOTH = "both"


class Images(enum.IntEnum):
    """How far the images of a step have come."""

    NONE = 0  # none received
    ARRIVING = 1  # some received; more may come
    RECEIVED = 2  # every listed instance is in, or the study has gone quiet


def performed_step_status(
    performed: Iterable[PerformedStatus], images: Images, complete_on: CompleteOn
) -> StepStatus | None:
    """The scheduled step status its performed steps and images call for; None: nothing yet.

    COMPLETED once the completion rule is met; DISCONTINUED when every MPPS was discontinued
    and the rule is not met; STARTED while anything is under way.
    """
    statuses = set(performed)
    mpps_done = PerformedStatus.COMPLETED in statuses
    images_done = images is Images.RECEIVED
    done = {
        CompleteOn.MPPS: mpps_done,
        CompleteOn.IMAGES: images_done,
        CompleteOn.BOTH: mpps_done and images_done,
    }[complete_on]
    if done:
        return StepStatus.COMPLETED
    if PerformedStatus.IN_PROGRESS in statuses or mpps_done:
        return StepStatus.STARTED
    if statuses and statuses == {PerformedStatus.DISCONTINUED}:
        return StepStatus.DISCONTINUED
    if images is not Images.NONE and complete_on is not CompleteOn.MPPS:
        return StepStatus.STARTED
    return None


def performed_transition(current: StepStatus, wanted: StepStatus | None) -> StepTransition | None:
    """The change a scheduled step's performed steps and images call for, or None to leave it:
    forward only, never back (a step is started only from a status before its start)."""
    if wanted is None:
        return None
    return step_transition(
        current, wanted, only_from=MAY_START if wanted == StepStatus.STARTED else None
    )
