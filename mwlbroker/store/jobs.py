"""The scheduler's lease and the record of job runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mwlbroker.store.tables import JobRunRow, LeaseRow

__all__ = ["JobRunRow", "LeaseRow", "last_runs", "lease", "release_lease", "runs", "take_lease"]


def take_lease(session: Session, name: str, holder: str, now: datetime, until: datetime) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``until``, if it is free, lapsed
    or already the holder's; True when the holder has it now.

    One conditional UPDATE, so two nodes asking at once cannot both succeed: the database
    serialises the writes and the second sees the first's holder and expiry.
    """
    taken = session.execute(
        update(LeaseRow)
        .where(LeaseRow.name == name)
        .where(
            or_(LeaseRow.holder == holder, LeaseRow.expires_at.is_(None), LeaseRow.expires_at < now)
        )
        .values(
            holder=holder,
            expires_at=until,
            # keep the time it was first taken while the same holder renews it
            acquired_at=case((LeaseRow.holder == holder, LeaseRow.acquired_at), else_=now),
        )
    )
    if (getattr(taken, "rowcount", 0) or 0) == 1:
        return True
    if session.get(LeaseRow, name) is not None:
        return False
    try:  # the first node ever: create the row, holding it
        with session.begin_nested():
            session.add(LeaseRow(name=name, holder=holder, acquired_at=now, expires_at=until))
    except IntegrityError:  # another node created it a moment ago
        return False
    return True


def release_lease(session: Session, name: str, holder: str, now: datetime) -> None:
    """Let the lease lapse now if ``holder`` has it (a node stopping gracefully)."""
    session.execute(
        update(LeaseRow)
        .where(LeaseRow.name == name, LeaseRow.holder == holder)
        .values(expires_at=now)
    )


def lease(session: Session, name: str) -> LeaseRow | None:
    return session.get(LeaseRow, name)


def add_run(session: Session, row: JobRunRow) -> JobRunRow:
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: int) -> JobRunRow | None:
    return session.get(JobRunRow, run_id)


def runs(session: Session, *, job: str | None = None, limit: int = 50) -> Sequence[JobRunRow]:
    """Newest runs first, optionally of one job."""
    query = select(JobRunRow).order_by(JobRunRow.id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRunRow.job == job)
    return session.scalars(query).all()


def last_runs(session: Session) -> dict[str, JobRunRow]:
    """The newest run of every job that has run."""
    newest = select(func.max(JobRunRow.id)).group_by(JobRunRow.job)
    rows = session.scalars(select(JobRunRow).where(JobRunRow.id.in_(newest))).all()
    return {row.job: row for row in rows}


def purge_runs(session: Session, before: datetime) -> int:
    result = session.execute(delete(JobRunRow).where(JobRunRow.started_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
