"""Queries on performed procedure steps and the scheduled steps they refer to."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mwlbroker.store.tables import PerformedStepLinkRow, PerformedStepRow, StepRow

__all__ = [
    "PerformedStepLinkRow",
    "PerformedStepRow",
    "find_performed_step",
    "link",
    "list_performed_steps",
    "performed_steps_of",
    "steps_of_performed_step",
    "steps_referred_to",
]


def find_performed_step(
    session: Session, sop_instance_uid: str, *, for_update: bool = False
) -> PerformedStepRow | None:
    query = select(PerformedStepRow).where(PerformedStepRow.sop_instance_uid == sop_instance_uid)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def steps_referred_to(
    session: Session,
    *,
    study_instance_uid: str = "",
    accession_number: str = "",
    requested_procedure_id: str = "",
    sps_id: str = "",
    patient_id: str = "",
) -> list[StepRow]:
    """The scheduled steps a reference names, locked for the update that follows.

    By Study Instance UID first; else by Accession Number, and then the Patient ID must agree
    when it is given (an accession typed at the console is easier to get wrong than a UID
    copied from the worklist). The Requested Procedure ID and SPS ID, where given, must agree.
    """

    def narrowed(found: Sequence[StepRow]) -> list[StepRow]:
        return [
            step
            for step in found
            if (not sps_id or step.sps_id == sps_id)
            and (
                not requested_procedure_id or step.requested_procedure_id == requested_procedure_id
            )
        ]

    if study_instance_uid:
        query = select(StepRow).where(StepRow.study_instance_uid == study_instance_uid)
        found = narrowed(session.scalars(query.order_by(StepRow.id).with_for_update()).all())
        if found:
            return found
    if accession_number:
        query = select(StepRow).where(StepRow.accession_number == accession_number)
        if patient_id:
            query = query.where(StepRow.patient_id == patient_id)
        return narrowed(session.scalars(query.order_by(StepRow.id).with_for_update()).all())
    return []


def link(session: Session, performed_step_id: int, step_id: int) -> None:
    """Record that a performed step performed a scheduled step (once)."""
    existing = session.scalars(
        select(PerformedStepLinkRow).where(
            PerformedStepLinkRow.performed_step_id == performed_step_id,
            PerformedStepLinkRow.step_id == step_id,
        )
    ).first()
    if existing is None:
        session.add(PerformedStepLinkRow(performed_step_id=performed_step_id, step_id=step_id))


def steps_of_performed_step(session: Session, performed_step_id: int) -> Sequence[StepRow]:
    """The scheduled steps a performed step is linked to, locked for update."""
    query = (
        select(StepRow)
        .join(PerformedStepLinkRow, PerformedStepLinkRow.step_id == StepRow.id)
        .where(PerformedStepLinkRow.performed_step_id == performed_step_id)
        .order_by(StepRow.id)
    )
    return session.scalars(query.with_for_update(of=StepRow)).all()


def performed_steps_of(session: Session, step_id: int) -> Sequence[PerformedStepRow]:
    """Every performed step linked to a scheduled step, oldest first."""
    query = (
        select(PerformedStepRow)
        .join(PerformedStepLinkRow, PerformedStepLinkRow.performed_step_id == PerformedStepRow.id)
        .where(PerformedStepLinkRow.step_id == step_id)
        .order_by(PerformedStepRow.id)
    )
    return session.scalars(query).all()


def list_performed_steps(
    session: Session, *, scheduled: bool | None = None, limit: int = 100
) -> Sequence[PerformedStepRow]:
    """Newest performed steps first; ``scheduled=False`` lists those waiting for reconciliation."""
    query = select(PerformedStepRow).order_by(PerformedStepRow.id.desc()).limit(limit)
    if scheduled is not None:
        query = query.where(PerformedStepRow.scheduled == scheduled)
    return session.scalars(query).all()
