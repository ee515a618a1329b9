"""Queries on the message store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, bindparam, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mwlbroker.store.insert import insert_row
from mwlbroker.store.tables import MessageRow

__all__ = [
    "MessageRow",
    "add",
    "add_unless_duplicate",
    "by_dedup_key",
    "copy_row",
    "count_by_status",
    "get",
    "latest",
    "resubmitted_as",
]


def add(session: Session, row: MessageRow) -> MessageRow:
    """Insert a message row and give it its id."""
    insert_row(session, row)
    return row


def copy_row(row: MessageRow) -> MessageRow:
    """A new, unsaved row with the same column values (its id aside)."""
    values = {
        prop.key: row.__dict__[prop.key]
        for prop in inspect(MessageRow).column_attrs
        if prop.key in row.__dict__ and prop.key != "id"
    }
    return MessageRow(**values)


_TABLE: Table = MessageRow.__table__  # type: ignore[assignment]
_INSERT_NEW = {
    "sqlite": sqlite.insert(_TABLE)
    .on_conflict_do_nothing(index_elements=[_TABLE.c.dedup_key])
    .returning(_TABLE.c.id),
    "postgresql": postgresql.insert(_TABLE)
    .on_conflict_do_nothing(index_elements=[_TABLE.c.dedup_key])
    .returning(_TABLE.c.id),
}


def add_unless_duplicate(session: Session, row: MessageRow) -> bool:
    """Insert the row unless its sender + MSH-10 key is taken; whether it was inserted.

    The unique index does the duplicate check in the same statement as the insert (ON
    CONFLICT DO NOTHING), so a new message costs one statement instead of a look-up and an
    insert. On PostgreSQL a concurrent, uncommitted holder of the key is waited for.
    """
    statement = _INSERT_NEW[session.get_bind().dialect.name]
    return insert_row(session, row, statement=statement) is not None


# Built once: the intake looks this up for every message.
_ID_BY_DEDUP_KEY = select(MessageRow.id).where(MessageRow.dedup_key == bindparam("key"))
_ID_BY_DEDUP_KEY_LOCKED = _ID_BY_DEDUP_KEY.with_for_update()


def by_dedup_key(
    session: Session, dedup_key: str, *, for_update: bool = False
) -> MessageRow | None:
    """The message already stored under this sender + MSH-10, if any.

    A lean id lookup first: almost every message is new, and loading nothing is cheapest.
    """
    query = _ID_BY_DEDUP_KEY_LOCKED if for_update else _ID_BY_DEDUP_KEY
    pk = session.execute(query, {"key": dedup_key}).scalar()
    return None if pk is None else session.get(MessageRow, pk)


def get(session: Session, message_id: int, *, for_update: bool = False) -> MessageRow | None:
    # Session.get skips its identity map when locking, so a locked read is always fresh.
    return session.get(MessageRow, message_id, with_for_update=True if for_update else None)


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


def resubmitted_as(session: Session, message_id: int) -> int | None:
    """The newest edited copy made from a message, if any."""
    query = select(func.max(MessageRow.id)).where(MessageRow.original_id == message_id)
    found = session.execute(query).scalar()
    return int(found) if found is not None else None
