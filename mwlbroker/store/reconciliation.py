"""Queries for patient identity reconciliation: people to compare, candidates, dismissals, merges,
and the unmatched exams waiting for an order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, insert, or_, select
from sqlalchemy.orm import Session, aliased

from mwlbroker.store.tables import (
    AuditRow,
    DuplicateCandidateRow,
    DuplicateDismissalRow,
    MessageRow,
    OrderRow,
    PatientMergeRow,
    PatientRow,
    PerformedStepLinkRow,
    PerformedStepRow,
    StepRow,
    StudyRow,
)

__all__ = [
    "DuplicateCandidateRow",
    "DuplicateDismissalRow",
    "PatientMergeRow",
    "active_people",
    "candidates",
    "dismissed_pairs",
    "drop_candidates",
    "find_dismissal",
    "first_order_of",
    "get_step",
    "links_of_steps",
    "merges",
    "merges_after",
    "orders_created_since",
    "patient_updates",
    "replace_candidates",
    "steps_by_accession",
    "steps_naming",
    "steps_of_patients",
    "studies_of_orders",
    "unmatched_studies_for",
    "unscheduled_performed_steps_for",
]


def active_people(session: Session, *, batch: int = 5000) -> Iterator[Any]:
    """(pk, patient_id, issuer, patient_name, birth_date, sex) of every patient not merged away
    and with a birth date, streamed in batches."""
    query = (
        select(
            PatientRow.id,
            PatientRow.patient_id,
            PatientRow.issuer,
            PatientRow.patient_name,
            PatientRow.birth_date,
            PatientRow.sex,
        )
        .where(PatientRow.merged_into_id.is_(None), PatientRow.birth_date != "")
        .execution_options(yield_per=batch)
    )
    yield from session.execute(query)


def dismissed_pairs(session: Session) -> set[tuple[int, int]]:
    """(lower pk, higher pk) of every pair staff said is not one person."""
    query = select(DuplicateDismissalRow.patient_pk, DuplicateDismissalRow.other_pk)
    return {(a, b) for a, b in session.execute(query)}


def find_dismissal(session: Session, first: int, second: int) -> DuplicateDismissalRow | None:
    query = select(DuplicateDismissalRow).where(
        DuplicateDismissalRow.patient_pk == first, DuplicateDismissalRow.other_pk == second
    )
    return session.scalars(query).first()


def replace_candidates(
    session: Session, rows: Iterable[tuple[int, int, float, list[str]]], found_at: datetime
) -> int:
    """Put the sweep's pairs (first pk, second pk, score, reasons) in place of the last sweep's."""
    session.execute(delete(DuplicateCandidateRow))
    values = [
        {"patient_pk": a, "other_pk": b, "score": score, "reasons": reasons, "found_at": found_at}
        for a, b, score, reasons in rows
    ]
    if values:
        session.execute(insert(DuplicateCandidateRow), values)
    return len(values)


def drop_candidates(session: Session, *, patient_pk: int, other_pk: int | None = None) -> None:
    """Forget stored candidates of one patient (merged away), or of one pair (dismissed)."""
    if other_pk is None:
        condition = or_(
            DuplicateCandidateRow.patient_pk == patient_pk,
            DuplicateCandidateRow.other_pk == patient_pk,
        )
    else:
        condition = (DuplicateCandidateRow.patient_pk == patient_pk) & (
            DuplicateCandidateRow.other_pk == other_pk
        )
    session.execute(delete(DuplicateCandidateRow).where(condition))


def candidates(
    session: Session, *, min_score: float = 0.0, limit: int = 100
) -> Sequence[tuple[DuplicateCandidateRow, PatientRow, PatientRow]]:
    """The stored candidates, best first, with both patients; pairs where either was merged
    away since the sweep, or that were dismissed since, are left out."""
    first, second = aliased(PatientRow), aliased(PatientRow)
    dismissed = select(DuplicateDismissalRow.id).where(
        DuplicateDismissalRow.patient_pk == DuplicateCandidateRow.patient_pk,
        DuplicateDismissalRow.other_pk == DuplicateCandidateRow.other_pk,
    )
    query = (
        select(DuplicateCandidateRow, first, second)
        .join(first, first.id == DuplicateCandidateRow.patient_pk)
        .join(second, second.id == DuplicateCandidateRow.other_pk)
        .where(
            DuplicateCandidateRow.score >= min_score,
            first.merged_into_id.is_(None),
            second.merged_into_id.is_(None),
            ~dismissed.exists(),
        )
        .order_by(DuplicateCandidateRow.score.desc(), DuplicateCandidateRow.id)
        .limit(limit)
    )
    return [(c, a, b) for c, a, b in session.execute(query)]


def patient_updates(session: Session) -> Iterator[tuple[AuditRow, str, str, str | None]]:
    """Every audited demographics update of a patient, by patient then time, with the message
    that made it: (audit, MSH-9.1, MSH-9.2, MSH-10); the message fields are empty once purged."""
    query = (
        select(AuditRow, MessageRow.message_type, MessageRow.trigger_event, MessageRow.control_id)
        .outerjoin(MessageRow, MessageRow.id == AuditRow.message_id)
        .where(AuditRow.entity == "patient", AuditRow.action == "update")
        .order_by(AuditRow.entity_id, AuditRow.id)
        .execution_options(yield_per=2000)
    )
    for audit, kind, trigger, control_id in session.execute(query):
        yield audit, kind or "", trigger or "", control_id


def first_order_of(session: Session, patient: PatientRow) -> OrderRow | None:
    """The order created with the patient (same transaction, same time), if any."""
    query = (
        select(OrderRow)
        .where(OrderRow.patient_pk == patient.id, OrderRow.created_at == patient.created_at)
        .order_by(OrderRow.id)
        .limit(1)
    )
    return session.scalars(query).first()


def links_of_steps(session: Session, step_ids: Sequence[int]) -> Sequence[PerformedStepLinkRow]:
    if not step_ids:
        return []
    query = select(PerformedStepLinkRow).where(PerformedStepLinkRow.step_id.in_(list(step_ids)))
    return session.scalars(query.order_by(PerformedStepLinkRow.id)).all()


def studies_of_orders(session: Session, order_ids: Sequence[int]) -> Sequence[StudyRow]:
    if not order_ids:
        return []
    query = select(StudyRow).where(StudyRow.order_id.in_(list(order_ids)))
    return session.scalars(query.order_by(StudyRow.id)).all()


def merges(
    session: Session, *, patient_pk: int | None = None, limit: int = 100
) -> Sequence[PatientMergeRow]:
    """Newest merges first, optionally those a patient took part in."""
    query = select(PatientMergeRow).order_by(PatientMergeRow.id.desc()).limit(limit)
    if patient_pk is not None:
        query = query.where(
            or_(PatientMergeRow.source_pk == patient_pk, PatientMergeRow.survivor_pk == patient_pk)
        )
    return session.scalars(query).all()


def merges_after(session: Session, merge: PatientMergeRow) -> Sequence[PatientMergeRow]:
    """Merges not undone, made after ``merge``, that merged either of its patients away (the
    survivor into a third patient, taking the moved orders with it)."""
    query = select(PatientMergeRow).where(
        PatientMergeRow.id > merge.id,
        PatientMergeRow.undone_at.is_(None),
        PatientMergeRow.source_pk.in_([merge.source_pk, merge.survivor_pk]),
    )
    return session.scalars(query.order_by(PatientMergeRow.id)).all()


def _names_the_step(exam: type[PerformedStepRow] | type[StudyRow]) -> ColumnElement[bool]:
    """An exam waiting for an order names a new step by the same Study Instance UID, or by the
    same Accession Number and Patient ID: one rule for performed steps and studies alike."""
    return or_(
        exam.study_instance_uid == bindparam("uid"),
        and_(
            exam.accession_number == bindparam("accession"),
            exam.patient_id == bindparam("patient_id"),
        ),
    )


# Lean statements, compiled once: they run for every new step an order creates.
_WAITING_PERFORMED = select(PerformedStepRow.id).where(
    PerformedStepRow.scheduled.is_(False), _names_the_step(PerformedStepRow)
)
_WAITING_STUDIES = select(StudyRow.id).where(StudyRow.order_id.is_(None), _names_the_step(StudyRow))


def _waiting(
    session: Session, statement: Any, keys: Sequence[tuple[str | None, str | None, str]]
) -> list[int]:
    found: dict[int, None] = {}
    for uid, accession, patient_id in keys:
        if not uid and not accession:
            continue
        values = {"uid": uid or None, "accession": accession or None, "patient_id": patient_id}
        found.update(dict.fromkeys(session.execute(statement, values).scalars()))
    return sorted(found)


def unscheduled_performed_steps_for(
    session: Session, keys: Sequence[tuple[str | None, str | None, str]]
) -> list[PerformedStepRow]:
    """Unscheduled performed steps naming one of these (Study Instance UID, Accession Number,
    Patient ID): the UID, else the accession with the Patient ID; locked for the link."""
    rows = (
        session.get(PerformedStepRow, pk, with_for_update=True)
        for pk in _waiting(session, _WAITING_PERFORMED, keys)
    )
    return [row for row in rows if row is not None]


def unmatched_studies_for(
    session: Session, keys: Sequence[tuple[str | None, str | None, str]]
) -> list[StudyRow]:
    """Unmatched studies with one of these (Study Instance UID, Accession Number, Patient ID)."""
    rows = (
        session.get(StudyRow, pk, with_for_update=True)
        for pk in _waiting(session, _WAITING_STUDIES, keys)
    )
    return [row for row in rows if row is not None]


def get_step(session: Session, step_id: int, *, for_update: bool = False) -> StepRow | None:
    return session.get(StepRow, step_id, with_for_update=for_update)


def steps_by_accession(session: Session, accession: str) -> Sequence[StepRow]:
    query = select(StepRow).where(StepRow.accession_number == accession).order_by(StepRow.id)
    return session.scalars(query).all()


def orders_created_since(session: Session, patient_pk: int, since: datetime) -> Sequence[OrderRow]:
    query = select(OrderRow).where(OrderRow.patient_pk == patient_pk, OrderRow.created_at > since)
    return session.scalars(query.order_by(OrderRow.id)).all()


def steps_of_patients(session: Session, patient_pks: Sequence[int]) -> Sequence[StepRow]:
    """The steps of these patients, by patient then id: a likely duplicate pair side by side."""
    if not patient_pks:
        return []
    query = select(StepRow).where(StepRow.patient_pk.in_(list(patient_pks)))
    return session.scalars(query.order_by(StepRow.patient_pk, StepRow.id)).all()


def steps_naming(
    session: Session, patient_id: str | None, accession: str | None, *, limit: int = 20
) -> Sequence[StepRow]:
    """Steps with this Patient ID or Accession Number, newest first: where an exam without an
    order most likely belongs."""
    conditions = [
        column == value
        for column, value in (
            (StepRow.patient_id, patient_id),
            (StepRow.accession_number, accession),
        )
        if value
    ]
    if not conditions:
        return []
    query = select(StepRow).where(or_(*conditions)).order_by(StepRow.id.desc()).limit(limit)
    return session.scalars(query).all()


def merge_of(session: Session, source_pk: int) -> PatientMergeRow | None:
    """The merge, not undone, that merged patient ``source_pk`` away (the latest, if several)."""
    query = (
        select(PatientMergeRow)
        .where(PatientMergeRow.source_pk == source_pk, PatientMergeRow.undone_at.is_(None))
        .order_by(PatientMergeRow.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()
