"""Queries on the forward queue (received instances on their way to the PACS)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mwlbroker.store.tables import ForwardRow, InstanceRow

__all__ = ["ForwardRow", "due", "get", "latest", "latest_with_instances", "pending_for"]


def due(session: Session, now: datetime, *, limit: int = 20) -> Sequence[ForwardRow]:
    """Pending tasks whose time has come, oldest first, locked (skipping others' on PostgreSQL)."""
    query = (
        select(ForwardRow)
        .where(ForwardRow.status == "pending", ForwardRow.next_attempt_at <= now)
        .order_by(ForwardRow.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).all()


def get(session: Session, task_id: int) -> ForwardRow | None:
    return session.get(ForwardRow, task_id, with_for_update=True)


def pending_for(
    session: Session, instance_id: int, *, other_than: int | None = None
) -> ForwardRow | None:
    """A task for this instance that is still to be done, if any."""
    query = select(ForwardRow).where(
        ForwardRow.instance_id == instance_id, ForwardRow.status == "pending"
    )
    if other_than is not None:
        query = query.where(ForwardRow.id != other_than)
    return session.scalars(query.limit(1)).first()


def latest(session: Session, *, status: str | None = None, limit: int = 50) -> Sequence[ForwardRow]:
    query = select(ForwardRow).order_by(ForwardRow.id.desc()).limit(limit)
    if status:
        query = query.where(ForwardRow.status == status)
    return session.scalars(query).all()


def latest_with_instances(
    session: Session, *, status: str | None = None, limit: int = 50
) -> list[tuple[ForwardRow, str, int]]:
    """Newest tasks first, each with its instance's SOP Instance UID and study id."""
    query = (
        select(ForwardRow, InstanceRow.sop_instance_uid, InstanceRow.study_id)
        .join(InstanceRow, InstanceRow.id == ForwardRow.instance_id)
        .order_by(ForwardRow.id.desc())
        .limit(limit)
    )
    if status:
        query = query.where(ForwardRow.status == status)
    return [(task, uid, study_id) for task, uid, study_id in session.execute(query)]
