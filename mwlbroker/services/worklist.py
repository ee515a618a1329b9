"""What orders and patient updates share: merging attributes, keeping steps' datasets current.

Every function here runs inside the caller's transaction (the ingest of one message).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mwlbroker.domain.errors import MappingError
from mwlbroker.domain.messages import HL7ErrorCode
from mwlbroker.domain.worklist import CLEAR, Attributes, MappedPatient, MappedStep, StepStatus
from mwlbroker.mapping.worklist_item import worklist_item_json
from mwlbroker.store import worklist as store
from mwlbroker.store.db import Session
from mwlbroker.store.worklist import AuditRow, OrderEventRow, OrderRow, PatientRow, StepRow

OPEN_STATUSES = tuple(s.value for s in StepStatus if not s.is_final)


@dataclass(frozen=True)
class Context:
    """Who is acting, for history and audit: the message being applied."""

    session: Session
    now: datetime
    message_id: int | None
    actor: str  # e.g. "hl7 RIS/HOSPITAL message 12"


def merge(stored: Attributes, update: Attributes) -> Attributes:
    """A new attribute dict: values in ``update`` replace, CLEAR removes, absent keys are kept."""
    merged = dict(stored)
    for keyword, value in update.items():
        if value is CLEAR:
            merged.pop(keyword, None)
        else:
            merged[keyword] = value
    return merged


def _text(attributes: Attributes, keyword: str) -> str:
    value = attributes.get(keyword)
    return value if isinstance(value, str) else ""


def _identify(mapped: MappedPatient) -> tuple[str, str]:
    if not mapped.patient_id:
        raise MappingError(
            "the message gives no Patient ID (PID-3)",
            error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
            location="PID-3",
        )
    return mapped.patient_id, mapped.issuer


def resolve_patient(ctx: Context, patient_id: str, issuer: str) -> PatientRow | None:
    """The patient under this ID, following merges to the survivor."""
    patient = store.find_patient(ctx.session, patient_id, issuer)
    seen: set[int] = set()
    while patient is not None and patient.merged_into_id is not None and patient.id not in seen:
        seen.add(patient.id)
        patient = store.get_patient(ctx.session, patient.merged_into_id)
    return patient


def upsert_patient(ctx: Context, mapped: MappedPatient) -> tuple[PatientRow, bool]:
    """Create the patient or update their demographics; returns (patient, changed)."""
    patient_id, issuer = _identify(mapped)
    patient = resolve_patient(ctx, patient_id, issuer)
    # Identity keys are the lookup, not demographics: never rewrite them from a merged alias.
    update = {
        k: v for k, v in mapped.attributes.items() if k not in ("PatientID", "IssuerOfPatientID")
    }
    if patient is None:
        attributes = merge(
            {"PatientID": patient_id, "IssuerOfPatientID": issuer}
            if issuer
            else {"PatientID": patient_id},
            update,
        )
        patient = PatientRow(
            patient_id=patient_id,
            issuer=issuer,
            attributes=attributes,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        _copy_demographics(patient)
        store.add(ctx.session, patient)
        return patient, True
    merged = merge(patient.attributes, update)
    if merged == patient.attributes:
        return patient, False
    audit(ctx, "update", "patient", patient.id, before=dict(patient.attributes), after=merged)
    patient.attributes = merged
    patient.updated_at = ctx.now
    _copy_demographics(patient)
    return patient, True


def _copy_demographics(patient: PatientRow) -> None:
    patient.patient_name = _text(patient.attributes, "PatientName")[:324]
    patient.birth_date = _text(patient.attributes, "PatientBirthDate")[:64]
    patient.sex = _text(patient.attributes, "PatientSex")[:64]


def patient_snapshot(patient: PatientRow) -> dict[str, Any]:
    return {
        "id": patient.id,
        "patient_id": patient.patient_id,
        "issuer": patient.issuer,
        "attributes": dict(patient.attributes),
        "merged_into_id": patient.merged_into_id,
    }


def refresh_step(step: StepRow, patient: PatientRow, order: OrderRow) -> None:
    """Recompute the step's query columns and its worklist dataset from its parts."""
    procedure = step.attributes.get("procedure", {})
    sps = step.attributes.get("step", {})
    status = StepStatus(step.status)
    step.dataset = worklist_item_json(
        patient.attributes, order.attributes, MappedStep(procedure, sps), status
    )
    step.patient_pk = patient.id
    step.patient_id = patient.patient_id
    step.issuer = patient.issuer
    step.patient_name = patient.patient_name
    step.accession_number = _text(procedure, "AccessionNumber") or None
    step.requested_procedure_id = _text(procedure, "RequestedProcedureID") or None
    step.study_instance_uid = _text(procedure, "StudyInstanceUID") or None
    step.sps_id = _text(sps, "ScheduledProcedureStepID") or None
    step.modality = _text(sps, "Modality") or None
    step.station_ae = _text(sps, "ScheduledStationAETitle") or None
    step.station_name = _text(sps, "ScheduledStationName") or None
    step.start_datetime = start_datetime(sps)


def propagate_patient(ctx: Context, patient: PatientRow, *, all_steps: bool = False) -> int:
    """Bring the patient's open worklist items (or all their steps) up to date; returns how many."""
    statuses = None if all_steps else OPEN_STATUSES
    steps = store.steps_of_patient(ctx.session, patient.id, statuses=statuses)
    orders: dict[int, OrderRow] = {}
    for step in steps:
        if step.order_id not in orders:
            order = store.get_order(ctx.session, step.order_id)
            assert order is not None
            orders[step.order_id] = order
        refresh_step(step, patient, orders[step.order_id])
        step.updated_at = ctx.now
    return len(steps)


def start_datetime(sps: Attributes) -> str | None:
    """(0040,0002) + (0040,0003) as one sortable YYYYMMDDHHMMSS string."""
    date = _text(sps, "ScheduledProcedureStepStartDate")
    if len(date) != 8 or not date.isdigit():
        return None
    time = "".join(
        ch for ch in _text(sps, "ScheduledProcedureStepStartTime").split(".")[0] if ch.isdigit()
    )
    return date + time[:6].ljust(6, "0")


def record(
    ctx: Context,
    order: OrderRow,
    event: str,
    *,
    step: StepRow | None = None,
    before: str | None = None,
    after: str | None = None,
    detail: str = "",
) -> None:
    store.append(
        ctx.session,
        OrderEventRow(
            order_id=order.id,
            step_id=step.id if step is not None else None,
            message_id=ctx.message_id,
            at=ctx.now,
            event=event,
            status_before=before,
            status_after=after,
            detail=detail[:2000],
        ),
    )


def audit(
    ctx: Context,
    action: str,
    entity: str,
    entity_id: int | None,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    store.append(
        ctx.session,
        AuditRow(
            at=ctx.now,
            actor=ctx.actor[:200],
            action=action,
            entity=entity,
            entity_id=entity_id,
            message_id=ctx.message_id,
            before=before,
            after=after,
        ),
    )
