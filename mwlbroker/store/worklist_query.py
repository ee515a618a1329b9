"""Modality Worklist queries in SQL: one statement on the indexed columns, then exact matching.

The statement narrows the candidates with the columns a procedure step copies from its item
(station, modality, start date-time, accession number, patient ID and name, ...). Each row it
gives is then matched in Python by :meth:`WorklistQuery.matches` on the stored item, which has
the final word; so SQL only has to return a superset, never to agree on every detail of
PS3.4 C.2.2.2. Also the query log's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from mwlbroker.domain import query as q
from mwlbroker.store.tables import QueryLogRow, StepRow

__all__ = [
    "QueryLogRow",
    "Selection",
    "add_query_logs",
    "get_query_log",
    "get_step",
    "look_up_steps",
    "purge_query_log",
    "recent_queries",
    "select_worklist",
    "steps_by_ids",
    "steps_like",
]

# Keys at the top of a worklist item, and the column holding each.
_ITEM_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    q.ACCESSION_NUMBER: StepRow.accession_number,
    q.PATIENT_ID: StepRow.patient_id,
    q.ISSUER_OF_PATIENT_ID: StepRow.issuer,
    q.REQUESTED_PROCEDURE_ID: StepRow.requested_procedure_id,
    q.STUDY_INSTANCE_UID: StepRow.study_instance_uid,
}
# Keys inside the Scheduled Procedure Step Sequence item, and the column holding each.
_STEP_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    q.SCHEDULED_STATION_AE_TITLE: StepRow.station_ae,
    q.MODALITY: StepRow.modality,
    q.SPS_ID: StepRow.sps_id,
    q.SCHEDULED_STATION_NAME: StepRow.station_name,
    q.SPS_STATUS: StepRow.status,
}
_BATCH = 256


@dataclass
class Selection:
    """The steps a query matched, in start order, and how much SQL had to give for them."""

    steps: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (id, item)
    candidates: int = 0  # rows the statement returned and Python checked
    overflow: bool = False  # more than the limit matched; ``steps`` holds limit + 1


def select_worklist(
    session: Session, query: q.WorklistQuery, *, statuses: Sequence[str], limit: int
) -> Selection:
    """The steps in ``statuses`` matching ``query``: at most ``limit``, else ``overflow``.

    One statement, streamed: reading stops at the first match past the limit.
    """
    sqlite = session.get_bind().dialect.name == "sqlite"
    clauses, exact, selective = _clauses(query, sqlite)
    status: ColumnElement[str] | InstrumentedAttribute[str] = StepRow.status
    if sqlite and selective:
        # Without statistics (nobody runs ANALYZE) SQLite picks the status + start index for
        # every query; an expression on status leaves it the more selective index instead.
        status = StepRow.status + ""
    statement = select(StepRow.id, StepRow.start_datetime, StepRow.dataset).where(
        status.in_(list(statuses)), *clauses
    )
    if exact:
        # SQL decides alone: it can stop at the first row past the limit by itself.
        statement = statement.limit(limit + 1)
    selection = Selection()
    found: list[tuple[str | None, int, dict[str, Any]]] = []
    result = session.execute(statement.execution_options(yield_per=_BATCH))
    try:
        for step_id, start, item in result:
            selection.candidates += 1
            if not query.matches(item):
                continue
            found.append((start, step_id, item))
            if len(found) > limit:
                selection.overflow = True
                break
    finally:
        result.close()
    # Start order, sorted here: an ORDER BY would tempt the planner to the start-time index.
    found.sort(key=lambda row: (row[0] is None, row[0] or "", row[1]))
    selection.steps = [(step_id, item) for _, step_id, item in found]
    return selection


def _clauses(query: q.WorklistQuery, glob: bool) -> tuple[list[ColumnElement[bool]], bool, bool]:
    """WHERE clauses for what the indexed columns can decide.

    Returns the clauses, whether they decide everything (exact), and whether one of them
    narrows on a column more selective than the step status (selective).
    """
    clauses: list[ColumnElement[bool]] = []
    exact = True
    selective = False
    for key in query.keys:
        condition = key.condition
        if condition.kind == "universal":
            continue
        if key.tag == q.SPS_SEQUENCE and isinstance(condition, q.SequenceMatch):
            step_exact, step_selective = _step_clauses(condition, glob, clauses)
            exact = exact and step_exact
            selective = selective or step_selective
        elif key.tag == q.PATIENT_NAME:
            prefix = q.pn_prefix(condition, query.pn_insensitive)
            if prefix is not None:
                column = (
                    StepRow.patient_name_folded if query.pn_insensitive else StepRow.patient_name
                )
                clauses.append(_prefix(column, prefix, glob))
                selective = selective or len(prefix) >= 2
            exact = False  # name groups, trailing "^" and folding are for Python to judge
        elif key.tag in _ITEM_COLUMNS:
            clause = _clause(_ITEM_COLUMNS[key.tag], condition, glob)
            if clause is None:
                exact = False
            else:
                clauses.append(clause)
                selective = selective or (key.tag in _SELECTIVE and _is_lookup(condition))
        else:
            exact = False
    return clauses, exact, selective


# Columns whose value picks out a handful of steps: their index beats the status index.
_SELECTIVE = frozenset(
    {
        q.ACCESSION_NUMBER,
        q.PATIENT_ID,
        q.REQUESTED_PROCEDURE_ID,
        q.STUDY_INSTANCE_UID,
        q.SPS_ID,
        q.SCHEDULED_STATION_AE_TITLE,
    }
)


def _is_lookup(condition: q.Condition) -> bool:
    if isinstance(condition, q.Wildcard):
        return not condition.pattern.startswith(("*", "?"))
    return isinstance(condition, q.SingleValue | q.UidList)


def _step_clauses(
    match: q.SequenceMatch, glob: bool, clauses: list[ColumnElement[bool]]
) -> tuple[bool, bool]:
    exact = True
    selective = False
    for key in match.keys:
        if key.condition.kind == "universal":
            continue
        column = _STEP_COLUMNS.get(key.tag)
        clause = None if column is None else _clause(column, key.condition, glob)
        if clause is None:
            exact = False
        else:
            clauses.append(clause)
            selective = selective or (key.tag in _SELECTIVE and _is_lookup(key.condition))
    for combined in match.combined:
        # start_datetime is (0040,0002) + (0040,0003) as YYYYMMDDHHMMSS, like the bounds
        if combined.low is not None:
            clauses.append(StepRow.start_datetime >= combined.low)
        if combined.high is not None:
            clauses.append(StepRow.start_datetime <= combined.high)
        if combined.low is None and combined.high is None:
            clauses.append(StepRow.start_datetime.is_not(None))
    return exact, selective


def _clause(
    column: InstrumentedAttribute[Any], condition: q.Condition, glob: bool
) -> ColumnElement[bool] | None:
    if isinstance(condition, q.SingleValue):
        return column == condition.value
    if isinstance(condition, q.UidList):
        return column.in_(list(condition.uids))
    if isinstance(condition, q.Wildcard):
        return _wildcard(column, condition.pattern, glob)
    return None


def _wildcard(column: InstrumentedAttribute[Any], pattern: str, glob: bool) -> ColumnElement[bool]:
    # SQLite's LIKE ignores case and PostgreSQL's GLOB does not exist: GLOB on SQLite is
    # case-sensitive with the same * and ? as DICOM; LIKE on PostgreSQL is case-sensitive.
    if glob:
        return column.op("GLOB")(pattern.replace("[", "[[]"))
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


def _prefix(column: InstrumentedAttribute[Any], prefix: str, glob: bool) -> ColumnElement[bool]:
    if glob:
        escaped = prefix.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
        return column.op("GLOB")(escaped + "*")
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


# -- the query log -----------------------------------------------------------------------------


def add_query_logs(session: Session, rows: Iterable[QueryLogRow]) -> None:
    """Insert query log rows."""
    session.add_all(list(rows))


def purge_query_log(session: Session, before: datetime) -> int:
    """Delete the query log rows older than ``before``; returns how many."""
    result = session.execute(delete(QueryLogRow).where(QueryLogRow.at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def recent_queries(
    session: Session, *, calling_ae: str | None = None, limit: int = 100
) -> Sequence[QueryLogRow]:
    """The newest query log rows first, optionally of one calling AE title."""
    statement = select(QueryLogRow).order_by(QueryLogRow.id.desc()).limit(limit)
    if calling_ae is not None:
        statement = statement.where(QueryLogRow.calling_ae == calling_ae)
    return session.scalars(statement).all()


def get_query_log(session: Session, log_id: int) -> QueryLogRow | None:
    """One logged query by its id."""
    return session.get(QueryLogRow, log_id)


# -- items to hold a logged query against ------------------------------------------------------


def get_step(session: Session, step_id: int) -> StepRow | None:
    """One procedure step, in any status."""
    return session.get(StepRow, step_id)


def steps_by_ids(session: Session, step_ids: Sequence[int]) -> Sequence[StepRow]:
    """The steps with these ids that still exist, in the order given."""
    if not step_ids:
        return []
    found = {
        row.id: row for row in session.scalars(select(StepRow).where(StepRow.id.in_(step_ids)))
    }
    return [found[i] for i in step_ids if i in found]


def look_up_steps(session: Session, text: str, *, limit: int = 25) -> Sequence[StepRow]:
    """Steps in any status whose accession number, SPS ID or requested procedure ID is
    ``text``, or whose id it is."""
    wanted = [
        StepRow.accession_number == text,
        StepRow.sps_id == text,
        StepRow.requested_procedure_id == text,
    ]
    if text.isdigit() and len(text) < 18:
        wanted.append(StepRow.id == int(text))
    statement = select(StepRow).where(or_(*wanted)).order_by(StepRow.id).limit(limit)
    return session.scalars(statement).all()


def steps_like(
    session: Session,
    *,
    station_ae: str | None = None,
    modality: str | None = None,
    day: str | None = None,
    limit: int = 25,
) -> Sequence[StepRow]:
    """Steps in any status on the same station, of the same modality or on the same day
    (YYYYMMDD) as a query asked for, latest start first; the latest steps when none is given."""
    alike: list[ColumnElement[bool]] = []
    if station_ae:
        alike.append(StepRow.station_ae == station_ae)
    if modality:
        alike.append(StepRow.modality == modality)
    if day:
        alike.append(StepRow.start_datetime.between(day + "000000", day + "999999"))
    statement = select(StepRow).order_by(
        StepRow.start_datetime.desc().nulls_last(), StepRow.id.desc()
    )
    if alike:
        statement = statement.where(or_(*alike))
    return session.scalars(statement.limit(limit)).all()
