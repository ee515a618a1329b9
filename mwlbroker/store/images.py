"""Queries on received studies, series and instances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from mwlbroker.store.tables import InstanceRow, SeriesRow, StepRow, StudyRow

__all__ = [
    "InstanceRow",
    "SeriesRow",
    "StudyRow",
    "count_instances",
    "find_instance",
    "find_series",
    "find_study",
    "get_study",
    "list_studies",
    "steps_of_study",
    "studies_of_step",
    "studies_to_settle",
]


def find_study(session: Session, uid: str, *, for_update: bool = False) -> StudyRow | None:
    query = select(StudyRow).where(StudyRow.study_instance_uid == uid)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def get_study(session: Session, pk: int, *, for_update: bool = False) -> StudyRow | None:
    return session.get(StudyRow, pk, with_for_update=for_update)


def find_series(session: Session, uid: str) -> SeriesRow | None:
    return session.scalars(select(SeriesRow).where(SeriesRow.series_instance_uid == uid)).first()


def find_instance(session: Session, uid: str) -> InstanceRow | None:
    return session.scalars(select(InstanceRow).where(InstanceRow.sop_instance_uid == uid)).first()


def count_instances(session: Session, sop_instance_uids: Iterable[str]) -> int:
    """How many of these SOP instances have been received."""
    uids = sorted(set(sop_instance_uids))
    if not uids:
        return 0
    query = select(func.count()).where(InstanceRow.sop_instance_uid.in_(uids))
    return int(session.scalar(query) or 0)


def steps_of_study(session: Session, study: StudyRow) -> Sequence[StepRow]:
    """The scheduled steps a matched study fulfils, locked for update."""
    if study.order_id is None:
        return []
    query = select(StepRow).where(StepRow.order_id == study.order_id)
    if study.matched_by == "manual":
        # Linked by staff to one step, whatever its identifiers say.
        query = query.where(StepRow.id == study.step_id)
    elif study.matched_by == "accession":
        query = query.where(StepRow.accession_number == study.accession_number)
    else:
        query = query.where(StepRow.study_instance_uid == study.study_instance_uid)
    return session.scalars(query.order_by(StepRow.id).with_for_update()).all()


def studies_of_step(session: Session, step: StepRow) -> Sequence[StudyRow]:
    """The received studies matched to a scheduled step's order that are its own."""
    mine = [
        StudyRow.study_instance_uid == (step.study_instance_uid or ""),
        StudyRow.step_id == step.id,
    ]
    if step.accession_number:
        mine.append(
            and_(
                StudyRow.matched_by == "accession",
                StudyRow.accession_number == step.accession_number,
            )
        )
    query = select(StudyRow).where(StudyRow.order_id == step.order_id, or_(*mine))
    return session.scalars(query.order_by(StudyRow.id)).all()


def studies_to_settle(session: Session, before: datetime, *, limit: int = 100) -> Sequence[int]:
    """Matched studies whose images are not yet counted as received and that have been quiet
    since ``before``."""
    query = (
        select(StudyRow.id)
        .where(
            StudyRow.images_received_at.is_(None),
            StudyRow.order_id.is_not(None),
            StudyRow.last_received_at <= before,
        )
        .order_by(StudyRow.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def list_studies(
    session: Session, *, matched: bool | None = None, limit: int = 100
) -> Sequence[StudyRow]:
    """Newest studies first; ``matched=False`` lists those waiting for reconciliation."""
    query = select(StudyRow).order_by(StudyRow.id.desc()).limit(limit)
    if matched is True:
        query = query.where(StudyRow.order_id.is_not(None))
    elif matched is False:
        query = query.where(StudyRow.order_id.is_(None))
    return session.scalars(query).all()
