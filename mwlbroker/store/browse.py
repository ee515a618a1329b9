"""Read-only queries behind the web page and API: filtered, paged lists and counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, defer

from mwlbroker.store.tables import (
    AuditRow,
    MessageRow,
    OrderRow,
    OutboundRow,
    PatientRow,
    PerformedStepLinkRow,
    PerformedStepRow,
    QueryLogRow,
    StepRow,
    StudyRow,
)

__all__ = [
    "Page",
    "audit_page",
    "message_counts_since",
    "messages_by_ids",
    "messages_page",
    "orders_by_ids",
    "outbound_of_order",
    "patients_page",
    "performed_steps_of_order",
    "query_log_page",
    "resubmissions_of",
    "step_counts",
    "studies_of_order",
    "worklist_page",
]


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, how many match in all, and where it starts."""

    rows: Sequence[Any]
    total: int
    offset: int
    limit: int

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.rows) < self.total

    @property
    def has_previous(self) -> bool:
        return self.offset > 0


def _page(session: Session, query: Select[Any], offset: int, limit: int) -> Page:
    total = session.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.offset(offset).limit(limit)).all()
    return Page(rows, int(total.scalar() or 0), offset, limit)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def worklist_page(
    session: Session,
    *,
    date: str = "",
    modality: str = "",
    station: str = "",
    status: str = "",
    text: str = "",
    offset: int = 0,
    limit: int = 50,
) -> Page:
    """Procedure steps by start date (YYYYMMDD), modality, station AE, status and free text
    (patient name or ID, accession number), in start order."""
    query = select(StepRow).order_by(StepRow.start_datetime, StepRow.id)
    if date:
        query = query.where(
            StepRow.start_datetime >= date + "000000", StepRow.start_datetime <= date + "235959"
        )
    if modality:
        query = query.where(StepRow.modality == modality)
    if station:
        query = query.where(StepRow.station_ae == station)
    if status:
        query = query.where(StepRow.status == status)
    if text:
        pattern = _like(text.upper())
        query = query.where(
            or_(
                func.upper(StepRow.patient_name).like(pattern, escape="\\"),
                StepRow.patient_name_folded.like(pattern, escape="\\"),
                func.upper(StepRow.patient_id).like(pattern, escape="\\"),
                func.upper(StepRow.accession_number).like(pattern, escape="\\"),
            )
        )
    return _page(session, query, offset, limit)


def step_counts(session: Session) -> dict[str, int]:
    """Procedure steps by status."""
    rows = session.execute(select(StepRow.status, func.count()).group_by(StepRow.status))
    return {status: int(count) for status, count in rows}


def messages_page(
    session: Session,
    *,
    status: str = "",
    message_type: str = "",
    text: str = "",
    since: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> Page:
    """Received messages, newest first, without their bytes; ``text`` finds a control ID,
    a sender or words of the error."""
    query = select(MessageRow).options(defer(MessageRow.raw)).order_by(MessageRow.id.desc())
    if status:
        query = query.where(MessageRow.status == status)
    if message_type:
        kind, _, trigger = message_type.partition("^")
        query = query.where(MessageRow.message_type == kind)
        if trigger:
            query = query.where(MessageRow.trigger_event == trigger)
    if since is not None:
        query = query.where(MessageRow.received_at >= since)
    if text:
        pattern = _like(text)
        query = query.where(
            or_(
                MessageRow.control_id.like(pattern, escape="\\"),
                MessageRow.sending_application.like(pattern, escape="\\"),
                MessageRow.error.like(pattern, escape="\\"),
            )
        )
    return _page(session, query, offset, limit)


def message_counts_since(session: Session, since: datetime) -> dict[str, int]:
    """Messages received since a moment, by status."""
    rows = session.execute(
        select(MessageRow.status, func.count())
        .where(MessageRow.received_at >= since)
        .group_by(MessageRow.status)
    )
    return {status: int(count) for status, count in rows}


def messages_by_ids(session: Session, ids: Sequence[int]) -> Sequence[MessageRow]:
    if not ids:
        return []
    query = select(MessageRow).options(defer(MessageRow.raw)).where(MessageRow.id.in_(ids))
    return session.scalars(query.order_by(MessageRow.id)).all()


def resubmissions_of(session: Session, message_id: int) -> Sequence[MessageRow]:
    """The edited copies made from a message, oldest first."""
    query = (
        select(MessageRow)
        .options(defer(MessageRow.raw))
        .where(MessageRow.original_id == message_id)
        .order_by(MessageRow.id)
    )
    return session.scalars(query).all()


def performed_steps_of_order(session: Session, order_id: int) -> Sequence[PerformedStepRow]:
    # A subquery, not DISTINCT: PostgreSQL cannot compare the JSON data set column.
    linked = (
        select(PerformedStepLinkRow.performed_step_id)
        .join(StepRow, StepRow.id == PerformedStepLinkRow.step_id)
        .where(StepRow.order_id == order_id)
    )
    query = (
        select(PerformedStepRow)
        .where(PerformedStepRow.id.in_(linked))
        .order_by(PerformedStepRow.id)
    )
    return session.scalars(query).all()


def studies_of_order(session: Session, order_id: int) -> Sequence[StudyRow]:
    query = select(StudyRow).where(StudyRow.order_id == order_id).order_by(StudyRow.id)
    return session.scalars(query).all()


def outbound_of_order(session: Session, order_id: int) -> Sequence[OutboundRow]:
    query = select(OutboundRow).where(OutboundRow.order_id == order_id).order_by(OutboundRow.id)
    return session.scalars(query).all()


def patients_page(session: Session, *, text: str = "", offset: int = 0, limit: int = 50) -> Page:
    """Patients by name or ID, merged ones included (they say where they went)."""
    query = select(PatientRow).order_by(PatientRow.patient_name, PatientRow.id)
    if text:
        pattern = _like(text.upper())
        query = query.where(
            or_(
                func.upper(PatientRow.patient_name).like(pattern, escape="\\"),
                func.upper(PatientRow.patient_id).like(pattern, escape="\\"),
            )
        )
    return _page(session, query, offset, limit)


def orders_by_ids(session: Session, ids: Sequence[int]) -> Sequence[OrderRow]:
    if not ids:
        return []
    return session.scalars(select(OrderRow).where(OrderRow.id.in_(ids))).all()


def audit_page(
    session: Session, *, entity: str = "", actor: str = "", offset: int = 0, limit: int = 50
) -> Page:
    """The audit trail, newest first."""
    query = select(AuditRow).order_by(AuditRow.id.desc())
    if entity:
        query = query.where(AuditRow.entity == entity)
    if actor:
        query = query.where(AuditRow.actor == actor)
    return _page(session, query, offset, limit)


def query_log_page(
    session: Session, *, calling_ae: str = "", offset: int = 0, limit: int = 50
) -> Page:
    """Logged worklist queries, newest first, optionally of one calling AE title."""
    query = select(QueryLogRow).order_by(QueryLogRow.id.desc())
    if calling_ae:
        query = query.where(QueryLogRow.calling_ae == calling_ae)
    return _page(session, query, offset, limit)
