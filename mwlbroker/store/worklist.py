"""Queries on patients, orders, procedure steps, their history and the audit trail."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from mwlbroker.store.insert import append_row, insert_row
from mwlbroker.store.tables import AuditRow, OrderEventRow, OrderRow, PatientRow, StepRow

__all__ = [
    "AuditRow",
    "OrderEventRow",
    "OrderRow",
    "PatientRow",
    "StepRow",
    "add",
    "append",
    "audit_for",
    "events_for_order",
    "find_order",
    "find_patient",
    "get_order",
    "get_patient",
    "orders_created_by",
    "orders_of_message",
    "orders_of_patient",
    "patients_with_id",
    "search_steps",
    "steps_of_order",
    "steps_of_patient",
    "study_uid_owners",
]


def add(session: Session, row: object, *, flush: bool = True) -> None:
    """Insert any row; ``flush`` gives it its id now (history and audit rows need none)."""
    if flush:
        insert_row(session, row)  # type: ignore[type-var]
    else:
        session.add(row)


def append(session: Session, row: object) -> None:
    """Insert a history or audit row at once, without keeping it in the session."""
    append_row(session, row)  # type: ignore[arg-type]


_PATIENT_ID = (
    select(PatientRow.id)
    .where(PatientRow.patient_id == bindparam("pid"), PatientRow.issuer == bindparam("issuer"))
    .with_for_update()
)


def find_patient(session: Session, patient_id: str, issuer: str = "") -> PatientRow | None:
    pk = session.execute(_PATIENT_ID, {"pid": patient_id, "issuer": issuer}).scalar()
    return None if pk is None else session.get(PatientRow, pk)


def get_patient(session: Session, pk: int, *, for_update: bool = False) -> PatientRow | None:
    return session.get(PatientRow, pk, with_for_update=for_update)


def patients_with_id(session: Session, patient_id: str) -> Sequence[PatientRow]:
    """Every patient with this Patient ID, whatever the issuer."""
    query = select(PatientRow).where(PatientRow.patient_id == patient_id).order_by(PatientRow.id)
    return session.scalars(query).all()


def orders_created_by(session: Session, message_ids: Iterable[int]) -> dict[int, list[OrderRow]]:
    """The orders each of these messages created, by message id."""
    ids = sorted(set(message_ids))
    if not ids:
        return {}
    query = select(OrderRow).where(OrderRow.created_message_id.in_(ids)).order_by(OrderRow.id)
    found: dict[int, list[OrderRow]] = {}
    for order in session.scalars(query):
        found.setdefault(order.created_message_id or 0, []).append(order)
    return found


def orders_of_message(session: Session, message_id: int) -> Sequence[OrderRow]:
    """The orders a message created or was the last to change (one message may carry several)."""
    query = (
        select(OrderRow)
        .where(
            or_(
                OrderRow.created_message_id == message_id,
                OrderRow.updated_message_id == message_id,
            )
        )
        .order_by(OrderRow.id)
    )
    return session.scalars(query).all()


def get_order(session: Session, pk: int) -> OrderRow | None:
    return session.get(OrderRow, pk)


_ORDER_IDS = (
    select(OrderRow.id, OrderRow.placer_order_number)
    .where(
        or_(
            OrderRow.placer_order_number == bindparam("placer"),
            OrderRow.filler_order_number == bindparam("filler"),
        )
    )
    .order_by(OrderRow.id)
    .with_for_update()
)


def find_order(
    session: Session,
    *,
    placer: str | None,
    filler: str | None,
    accession_numbers: Iterable[str] = (),
) -> OrderRow | None:
    """The order a message refers to: by placer order number, else filler, else accession."""
    if placer or filler:
        # One lean statement for both numbers; a placer match wins over a filler match.
        rows = session.execute(
            _ORDER_IDS, {"placer": placer or None, "filler": filler or None}
        ).all()
        for pk, order_placer in rows:
            if placer and order_placer == placer:
                return session.get(OrderRow, pk)
        if rows:
            return session.get(OrderRow, rows[0][0])
    accessions = [a for a in accession_numbers if a]
    if accessions and not placer and not filler:
        step = session.scalars(
            select(StepRow).where(StepRow.accession_number.in_(accessions)).limit(1)
        ).first()
        if step is not None:
            return session.get(OrderRow, step.order_id, with_for_update=True)
    return None


def steps_of_order(session: Session, order_id: int) -> Sequence[StepRow]:
    query = select(StepRow).where(StepRow.order_id == order_id).order_by(StepRow.id)
    return session.scalars(query.with_for_update()).all()


def steps_of_patient(
    session: Session, patient_pk: int, *, statuses: Iterable[str] | None = None
) -> Sequence[StepRow]:
    query = select(StepRow).where(StepRow.patient_pk == patient_pk).order_by(StepRow.id)
    if statuses is not None:
        query = query.where(StepRow.status.in_(list(statuses)))
    return session.scalars(query.with_for_update()).all()


def orders_of_patient(session: Session, patient_pk: int) -> Sequence[OrderRow]:
    query = select(OrderRow).where(OrderRow.patient_pk == patient_pk).order_by(OrderRow.id)
    return session.scalars(query.with_for_update()).all()


_STUDY_UID_OWNERS = select(
    StepRow.study_instance_uid, StepRow.patient_id, StepRow.accession_number
).where(
    StepRow.study_instance_uid.in_(bindparam("uids", expanding=True)),
    StepRow.patient_pk != bindparam("patient_pk"),
)


def study_uid_owners(
    session: Session, study_uids: Iterable[str], *, other_than_patient: int
) -> Sequence[Any]:
    """(study_instance_uid, patient_id, accession_number) of steps of other patients."""
    uids = [u for u in study_uids if u]
    if not uids:
        return []
    return session.execute(
        _STUDY_UID_OWNERS, {"uids": uids, "patient_pk": other_than_patient}
    ).all()


def events_for_order(session: Session, order_id: int) -> Sequence[OrderEventRow]:
    query = select(OrderEventRow).where(OrderEventRow.order_id == order_id)
    return session.scalars(query.order_by(OrderEventRow.id)).all()


def audit_for(session: Session, entity: str, entity_id: int) -> Sequence[AuditRow]:
    query = select(AuditRow).where(AuditRow.entity == entity, AuditRow.entity_id == entity_id)
    return session.scalars(query.order_by(AuditRow.id)).all()


def search_steps(
    session: Session,
    *,
    patient_id: str | None = None,
    accession_number: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> Sequence[StepRow]:
    """Steps for the command line and tests; the C-FIND query builder has its own."""
    query = select(StepRow).order_by(StepRow.start_datetime, StepRow.id).limit(limit)
    if patient_id:
        query = query.where(StepRow.patient_id == patient_id)
    if accession_number:
        query = query.where(StepRow.accession_number == accession_number)
    if status:
        query = query.where(StepRow.status == status)
    return session.scalars(query).all()
