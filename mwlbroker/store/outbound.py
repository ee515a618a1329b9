"""Queries on the outbound HL7 queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from mwlbroker.store.tables import OutboundRow

__all__ = ["OutboundRow", "counts", "get", "latest", "next_due"]

_SENT = "sent"
_PENDING = "pending"


def next_due(session: Session, destination: str, now: datetime) -> OutboundRow | None:
    """The next message to send to ``destination``, locked: the oldest pending one that is due
    and has no earlier message of the same order still unsent (pending or failed).

    On PostgreSQL a row another node has locked is skipped, not waited for.
    """
    earlier = aliased(OutboundRow)
    blocked = exists().where(
        earlier.destination == OutboundRow.destination,
        earlier.order_id == OutboundRow.order_id,
        earlier.id < OutboundRow.id,
        earlier.status != _SENT,
    )
    query = (
        select(OutboundRow)
        .where(
            OutboundRow.destination == destination,
            OutboundRow.status == _PENDING,
            OutboundRow.next_attempt_at <= now,
            ~blocked,
        )
        .order_by(OutboundRow.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=OutboundRow)
    return session.scalars(query).first()


def get(session: Session, message_id: int, *, for_update: bool = False) -> OutboundRow | None:
    # Session.get skips its identity map when locking, so a locked read is always fresh.
    return session.get(OutboundRow, message_id, with_for_update=True if for_update else None)


def latest(
    session: Session,
    *,
    status: str | None = None,
    destination: str | None = None,
    order_id: int | None = None,
    limit: int = 50,
) -> Sequence[OutboundRow]:
    """Newest messages first, optionally of one status, destination or order."""
    query = select(OutboundRow).order_by(OutboundRow.id.desc()).limit(limit)
    if status:
        query = query.where(OutboundRow.status == status)
    if destination:
        query = query.where(OutboundRow.destination == destination)
    if order_id is not None:
        query = query.where(OutboundRow.order_id == order_id)
    return session.scalars(query).all()


def counts(session: Session) -> dict[tuple[str, str], int]:
    """(destination, status) -> how many messages."""
    rows = session.execute(
        select(OutboundRow.destination, OutboundRow.status, func.count()).group_by(
            OutboundRow.destination, OutboundRow.status
        )
    )
    return {(destination, status): count for destination, status, count in rows}


def release_failed(session: Session, now: datetime) -> int:
    """Make every failed message due again with its attempts from zero; returns how many."""
    result = session.execute(
        update(OutboundRow)
        .where(OutboundRow.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
