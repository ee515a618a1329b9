"""Linking two Patient IDs of one person (ADT^A24), and undoing it (ADT^A37).

A link does not merge: both patients keep their own orders and worklist items. Each carries
the other's ID in its Other Patient IDs Sequence (0010,1002), so a modality (and a PACS after
it) sees that the two records are the same person. The first PID of the message is the
patient, the second the one linked to it (ADT_A24 structure: PID [PD1] [PV1] [DB1] PID ...).
"""

from __future__ import annotations

from typing import Any

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.messages import HL7ErrorCode
from mwlbroker.services.worklist import Context, audit, propagate_patient, resolve_patient
from mwlbroker.store.worklist import PatientRow

OTHER_IDS = "OtherPatientIDsSequence"  # (0010,1002) Other Patient IDs Sequence | SQ


def link_patients(ctx: Context, patient: PatientRow, linked_id: str, linked_issuer: str) -> None:
    """Each of the two patients names the other among its Other Patient IDs."""
    _not_itself(patient, linked_id, linked_issuer, "link")
    _set(ctx, patient, linked_id, linked_issuer, linked=True)
    other = resolve_patient(ctx, linked_id, linked_issuer)
    if other is not None and other.id != patient.id:
        _set(ctx, other, patient.patient_id, patient.issuer, linked=True)


def unlink_patients(ctx: Context, patient: PatientRow, linked_id: str, linked_issuer: str) -> None:
    """Neither of the two patients names the other among its Other Patient IDs any more."""
    _not_itself(patient, linked_id, linked_issuer, "unlink")
    _set(ctx, patient, linked_id, linked_issuer, linked=False)
    other = resolve_patient(ctx, linked_id, linked_issuer)
    if other is not None and other.id != patient.id:
        _set(ctx, other, patient.patient_id, patient.issuer, linked=False)


def _not_itself(patient: PatientRow, linked_id: str, issuer: str, what: str) -> None:
    if (linked_id, issuer) == (patient.patient_id, patient.issuer):
        raise MessageError(
            f"the second PID names patient {linked_id} again: a patient cannot {what} itself",
            error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER,
            location="PID-3",
        )


def _item(patient_id: str, issuer: str) -> dict[str, Any]:
    item: dict[str, Any] = {"PatientID": patient_id}
    if issuer:
        item["IssuerOfPatientID"] = issuer
    item["TypeOfPatientID"] = "TEXT"  # (0010,0022) Type 1 in the item: TEXT, RFID or BARCODE
    return item


def _same(item: dict[str, Any], patient_id: str, issuer: str) -> bool:
    return (item.get("PatientID"), item.get("IssuerOfPatientID", "")) == (patient_id, issuer)


def _set(ctx: Context, patient: PatientRow, other_id: str, issuer: str, *, linked: bool) -> None:
    current = [dict(item) for item in patient.attributes.get(OTHER_IDS) or []]
    kept = [item for item in current if not _same(item, other_id, issuer)]
    wanted = [*kept, _item(other_id, issuer)] if linked else kept
    if wanted == current:
        return  # the same link (or unlink) again
    before = dict(patient.attributes)
    attributes = dict(patient.attributes)
    if wanted:
        attributes[OTHER_IDS] = wanted
    else:
        attributes.pop(OTHER_IDS, None)
    patient.attributes = attributes
    patient.updated_at = ctx.now
    audit(
        ctx, "link" if linked else "unlink", "patient", patient.id, before=before, after=attributes
    )
    propagate_patient(ctx, patient)
