"""Queries on the message store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mwlbroker.store.tables import MessageRow

__all__ = ["MessageRow", "add", "by_dedup_key", "count_by_status", "get", "latest"]


def add(session: Session, row: MessageRow) -> MessageRow:
    """Insert a message row and give it its id."""
    session.add(row)
    session.flush()
    return row


def by_dedup_key(
    session: Session, dedup_key: str, *, for_update: bool = False
) -> MessageRow | None:
    """The message already stored under this sender + MSH-10, if any."""
    query = select(MessageRow).where(MessageRow.dedup_key == dedup_key)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def get(session: Session, message_id: int, *, for_update: bool = False) -> MessageRow | None:
    query = select(MessageRow).where(MessageRow.id == message_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def latest(
    session: Session,
    *,
    status: str | None = None,
    control_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> Sequence[MessageRow]:
    """Newest messages first, optionally filtered; ``before_id`` pages backwards."""
    query = select(MessageRow).order_by(MessageRow.id.desc()).limit(limit)
    if status:
        query = query.where(MessageRow.status == status)
    if control_id:
        query = query.where(MessageRow.control_id == control_id)
    if since:
        query = query.where(MessageRow.received_at >= since)
    if before_id:
        query = query.where(MessageRow.id < before_id)
    return session.scalars(query).all()


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(MessageRow.status, func.count()).group_by(MessageRow.status))
    return {status: count for status, count in rows}
