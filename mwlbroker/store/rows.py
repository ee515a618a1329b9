"""One row by its id, locked for a change: the first step of every repair a user asks for."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

Row = TypeVar("Row")


def get_locked(session: Session, table: type[Row], row_id: int, what: str) -> Row:
    """The row of ``table`` with this id, locked until the transaction ends.

    Raises LookupError ``no <what> with id <row_id>`` when there is none, the text the command
    line and the web pages show as it is. The lock keeps a concurrent repair (or the worker
    that sends the row) from changing it between the caller's check and its write.
    """
    # Session.get skips its identity map when locking, so a locked read is always fresh.
    row = session.get(table, row_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no {what} with id {row_id}")
    return row
