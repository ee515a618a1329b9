"""Many worklist rows in few statements, and counts of what is stored: for the benchmark's loader.

The rows are built as the services build them (constructors, validators and
``refresh_step``), so they hold what an intake would have stored; only the insertion differs:
one executemany statement per table and batch instead of a flush per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, inspect, select
from sqlalchemy.orm import Session

from mwlbroker.store.db import Database
from mwlbroker.store.tables import Base, OrderRow, PatientRow, StepRow

__all__ = [
    "OrderRow",
    "PatientRow",
    "StepRow",
    "analyze",
    "column_values",
    "count_steps",
    "insert_rows",
    "patient_pks",
    "steps_by_accession",
]


def column_values(row: Base) -> dict[str, Any]:
    """The column values an unsaved row holds (the id left out), as an insert takes them.

    Values the ORM would fill at insert time are filled here too: column defaults, and what
    validators derived (``patient_name_folded`` of a step).
    """
    values: dict[str, Any] = {}
    for attribute in inspect(type(row)).column_attrs:
        key = attribute.key
        if key == "id":
            continue
        value = getattr(row, key)
        if value is None:
            default = attribute.columns[0].default
            if default is not None and default.is_scalar:
                value = default.arg
            elif default is not None and default.is_callable:
                value = default.arg(None)
        values[key] = value
    return values


def insert_rows(
    session: Session, table: type[Base], rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert rows of one table (column values by name); returns their new ids, in order."""
    if not rows:
        return []
    statement = insert(table).returning(table.id, sort_by_parameter_order=True)  # type: ignore[attr-defined]
    return list(session.scalars(statement, [dict(row) for row in rows]))


def patient_pks(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The ids of the stored patients among (Patient ID, issuer) pairs."""
    wanted = set(keys)
    if not wanted:
        return {}
    statement = select(PatientRow.id, PatientRow.patient_id, PatientRow.issuer).where(
        PatientRow.patient_id.in_(sorted({patient_id for patient_id, _ in wanted}))
    )
    found = {}
    for pk, patient_id, issuer in session.execute(statement):
        if (patient_id, issuer) in wanted:
            found[(patient_id, issuer)] = pk
    return found


def count_steps(session: Session, status: str | None = None) -> int:
    """How many procedure steps are stored (in ``status``, when given)."""
    statement = select(func.count()).select_from(StepRow)
    if status is not None:
        statement = statement.where(StepRow.status == status)
    return int(session.scalar(statement) or 0)


def steps_by_accession(session: Session, accession_numbers: Sequence[str]) -> dict[str, StepRow]:
    """The stored steps with these accession numbers, by accession number."""
    statement = select(StepRow).where(StepRow.accession_number.in_(list(accession_numbers)))
    return {step.accession_number or "": step for step in session.scalars(statement)}


def analyze(db: Database) -> None:
    """Refresh the planner's statistics, as PostgreSQL's autovacuum does after a large load.

    SQLite is left alone: nobody runs ANALYZE on an embedded broker, and its queries are
    written for a database without statistics.
    """
    if db.is_sqlite:
        return
    with db.engine.begin() as connection:
        # only the worklist's tables: the database may hold much else besides
        connection.exec_driver_sql("ANALYZE patient, imaging_order, procedure_step")
