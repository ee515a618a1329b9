"""Purge what has outlived its retention age, a batch at a time.

Each function deletes at most ``limit`` of the oldest rows and returns how many it deleted; the
caller commits between batches so a purge of a year's messages never holds the database for
long. Audit records are never purged, and nothing still in progress is: pending outbound
messages and forward tasks are work, and an MPPS IN PROGRESS may still end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mwlbroker.store.tables import (
    ForwardRow,
    InstanceRow,
    MessageRow,
    OutboundRow,
    PerformedStepLinkRow,
    PerformedStepRow,
    SeriesRow,
    StepRow,
    StudyRow,
)

_FINAL_MPPS = ("COMPLETED", "DISCONTINUED")
_DONE = ("sent", "failed")


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def purge_messages(session: Session, before: datetime, limit: int) -> int:
    ids = select(MessageRow.id).where(MessageRow.received_at < before).limit(limit)
    return _count(session.execute(delete(MessageRow).where(MessageRow.id.in_(ids))))


def purge_outbound(session: Session, before: datetime, limit: int) -> int:
    ids = (
        select(OutboundRow.id)
        .where(OutboundRow.created_at < before, OutboundRow.status.in_(_DONE))
        .limit(limit)
    )
    return _count(session.execute(delete(OutboundRow).where(OutboundRow.id.in_(ids))))


def purge_performed_steps(session: Session, before: datetime, limit: int) -> int:
    ids = list(
        session.scalars(
            select(PerformedStepRow.id)
            .where(PerformedStepRow.updated_at < before, PerformedStepRow.status.in_(_FINAL_MPPS))
            .limit(limit)
        )
    )
    if not ids:
        return 0
    session.execute(
        delete(PerformedStepLinkRow).where(PerformedStepLinkRow.performed_step_id.in_(ids))
    )
    return _count(session.execute(delete(PerformedStepRow).where(PerformedStepRow.id.in_(ids))))


def purge_studies(session: Session, before: datetime, limit: int) -> tuple[int, list[str]]:
    """Delete studies whose last instance arrived before ``before``, with their series,
    instances and forward tasks; returns how many studies, and the kept files to delete."""
    ids = list(
        session.scalars(select(StudyRow.id).where(StudyRow.last_received_at < before).limit(limit))
    )
    if not ids:
        return 0, []
    paths: Sequence[str | None] = session.scalars(
        select(InstanceRow.path).where(InstanceRow.study_id.in_(ids))
    ).all()
    instances = select(InstanceRow.id).where(InstanceRow.study_id.in_(ids))
    session.execute(delete(ForwardRow).where(ForwardRow.instance_id.in_(instances)))
    session.execute(delete(InstanceRow).where(InstanceRow.study_id.in_(ids)))
    session.execute(delete(SeriesRow).where(SeriesRow.study_id.in_(ids)))
    deleted = _count(session.execute(delete(StudyRow).where(StudyRow.id.in_(ids))))
    return deleted, [path for path in paths if path]


def steps_to_expire(
    session: Session, statuses: Sequence[str], started_before: str, limit: int
) -> Sequence[StepRow]:
    """Steps in ``statuses`` whose start (YYYYMMDDHHMMSS) is before ``started_before``."""
    return session.scalars(
        select(StepRow)
        .where(StepRow.status.in_(statuses), StepRow.start_datetime < started_before)
        .order_by(StepRow.id)
        .limit(limit)
        .with_for_update()
    ).all()
