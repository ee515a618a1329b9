"""Rows as plain dicts for people and programs: one shape for the command line, the web page
and the JSON API, so each list reads the same wherever it is shown."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from mwlbroker.hl7v2.fieldnames import field_names
from mwlbroker.hl7v2.reader import decode
from mwlbroker.store import browse, worklist
from mwlbroker.store import outbound as outbound_store
from mwlbroker.store.db import Session
from mwlbroker.store.tables import (
    AuditRow,
    MessageRow,
    OrderEventRow,
    OrderRow,
    OutboundRow,
    PatientRow,
    PerformedStepRow,
    QueryLogRow,
    StepRow,
    StudyRow,
)

if TYPE_CHECKING:
    from mwlbroker.services.jobs import JobRun, JobRunner


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def message_summary(r: MessageRow) -> dict[str, Any]:
    """A received message without its bytes."""
    return {
        "id": r.id,
        "received_at": r.received_at.isoformat(),
        "peer": r.peer,
        "sender": "/".join(p for p in (r.sending_application, r.sending_facility) if p),
        "type": f"{r.message_type}^{r.trigger_event}" if r.trigger_event else r.message_type,
        "control_id": r.control_id,
        "version": r.version,
        "charset": r.charset,
        "size": r.size,
        "truncated": r.truncated,
        "status": r.status,
        "ack_code": r.ack_code,
        "error": r.error,
        "error_location": r.error_location,
        # What the broker changed to accept it: [{"text", "location", "code"}] (AA, ERR W).
        "warnings": list(r.warnings or []),
        "attempts": r.attempts,
        "duplicates": r.duplicate_count,
        "original_id": r.original_id,
        # Enhanced mode: the application acknowledgment queued for the sender, or why not.
        "application_ack": r.application_ack,
    }


def message_text(row: MessageRow) -> str:
    """The message decoded by its MSH-18 character set, segments separated by CR."""
    raw = row.raw
    try:
        text = decode(raw)[0]
    except Exception:  # undecodable bytes are still shown, one byte a character
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\r").replace("\n", "\r")


def message_segments(text: str) -> list[str]:
    return [segment for segment in text.split("\r") if segment]


def segment_fields(segment: str, version: str) -> dict[str, Any]:
    """One segment split into numbered, named fields (MSH-1 is the field separator)."""
    name = segment[:3]
    separator = segment[3:4] or "|"
    parts = segment.split(separator)
    values = [separator, *parts[1:]] if name == "MSH" else parts[1:]
    names = field_names(name, version) if name.isalnum() else {}
    return {
        "segment": name,
        "text": segment,
        "fields": [
            {"number": number, "name": names.get(number, ""), "value": value}
            for number, value in enumerate(values, 1)
            if value != ""
        ],
    }


def message_detail(row: MessageRow) -> dict[str, Any]:
    """A message with its segments, each split into named fields."""
    summary = message_summary(row)
    text = message_text(row)
    summary["text"] = text
    summary["segments"] = [segment_fields(s, row.version) for s in message_segments(text)]
    return summary


def message_orders(session: Session, message_id: int) -> list[dict[str, Any]]:
    """The orders a message created or last changed, each with what the message did to it."""
    return [
        {
            "id": order.id,
            "placer_order_number": order.placer_order_number,
            "filler_order_number": order.filler_order_number,
            "order_control": order.order_control,
            "created": order.created_message_id == message_id,
        }
        for order in worklist.orders_of_message(session, message_id)
    ]


def describe_orders(orders: list[dict[str, Any]]) -> str:
    """``12 (placer 550120331, created), 13 (placer 550120332, CA)`` for one line of text."""
    parts = []
    for order in orders:
        number = order["placer_order_number"] or order["filler_order_number"] or "no number"
        did = "created" if order["created"] else f"last changed, {order['order_control']}"
        parts.append(f"{order['id']} ({number}, {did})")
    return ", ".join(parts)


def outbound_summary(row: OutboundRow) -> dict[str, Any]:
    """A status message for a destination, without its bytes."""
    return {
        "id": row.id,
        "created_at": row.created_at.isoformat(),
        "destination": row.destination,
        "order_id": row.order_id,
        "step_id": row.step_id,
        "message_type": row.message_type,
        "order_status": row.order_status,
        "control_id": row.control_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
        "sent_at": _iso(row.sent_at),
        "ack_code": row.ack_code,
        "last_error": row.last_error,
    }


def step_summary(row: StepRow) -> dict[str, Any]:
    """A worklist item: what modalities query on, and its status."""
    start = row.start_datetime or ""
    return {
        "id": row.id,
        "order_id": row.order_id,
        "patient_pk": row.patient_pk,
        "patient_id": row.patient_id,
        "issuer": row.issuer,
        "patient_name": row.patient_name,
        "accession_number": row.accession_number,
        "requested_procedure_id": row.requested_procedure_id,
        "sps_id": row.sps_id,
        "study_instance_uid": row.study_instance_uid,
        "modality": row.modality,
        "station_ae": row.station_ae,
        "station_name": row.station_name,
        "start": start,
        "start_date": start[:8],
        "start_time": start[8:12],
        "status": row.status,
        "procedure": _procedure(row),
        "updated_at": row.updated_at.isoformat(),
    }


def _procedure(row: StepRow) -> str:
    step = (row.attributes or {}).get("step") or {}
    procedure = (row.attributes or {}).get("procedure") or {}
    for source, keyword in (
        (step, "ScheduledProcedureStepDescription"),
        (procedure, "RequestedProcedureDescription"),
    ):
        value = source.get(keyword)
        if isinstance(value, str) and value:
            return value
    return ""


def patient_summary(row: PatientRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "patient_id": row.patient_id,
        "issuer": row.issuer,
        "patient_name": row.patient_name,
        "birth_date": row.birth_date,
        "sex": row.sex,
        "merged_into_id": row.merged_into_id,
        "updated_at": row.updated_at.isoformat(),
    }


def order_summary(row: OrderRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "placer_order_number": row.placer_order_number,
        "filler_order_number": row.filler_order_number,
        "patient_pk": row.patient_pk,
        "profile": row.profile,
        "order_control": row.order_control,
        "created_message_id": row.created_message_id,
        "updated_message_id": row.updated_message_id,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def event_summary(row: OrderEventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "event": row.event,
        "step_id": row.step_id,
        "message_id": row.message_id,
        "status_before": row.status_before,
        "status_after": row.status_after,
        "detail": row.detail,
    }


def performed_step_summary(r: PerformedStepRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "created_at": r.created_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
        "sop_instance_uid": r.sop_instance_uid,
        "status": r.status,
        "scheduled": r.scheduled,
        "station_ae": r.station_ae,
        "modality": r.modality,
        "patient_id": r.patient_id,
        "patient_name": r.patient_name,
        "accession_number": r.accession_number,
        "study_instance_uid": r.study_instance_uid,
        "start": r.start_datetime,
        "end": r.end_datetime,
    }


def study_summary(r: StudyRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "first_received_at": r.first_received_at.isoformat(),
        "last_received_at": r.last_received_at.isoformat(),
        "study_instance_uid": r.study_instance_uid,
        "order_id": r.order_id,
        "matched_by": r.matched_by or None,
        "step_id": r.step_id,
        "patient_id": r.patient_id,
        "patient_name": r.patient_name,
        "accession_number": r.accession_number,
        "modalities": r.modalities,
        "series": r.series_count,
        "instances": r.instance_count,
        "calling_ae": r.calling_ae,
        "images_received_at": _iso(r.images_received_at),
    }


def audit_summary(r: AuditRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "actor": r.actor,
        "action": r.action,
        "entity": r.entity,
        "entity_id": r.entity_id,
        "message_id": r.message_id,
        "before": r.before,
        "after": r.after,
    }


def query_log_summary(r: QueryLogRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "calling_ae": r.calling_ae,
        "called_ae": r.called_ae,
        "peer": r.peer,
        "profile": r.profile,
        "status": r.status,
        "error": r.error,
        "candidates": r.candidates,
        "matches": r.matches,
        "returned": r.returned,
        "milliseconds": round(r.milliseconds, 1),
        "conditions": r.conditions,
        "notes": r.notes,
        "step_ids": r.step_ids,
    }


# -- composed views: several queries, one shape --------------------------------------------------


def order_detail(session: Session, order_id: int) -> dict[str, Any] | None:
    """An order with its patient, steps and a timeline of everything that happened to it:
    each HL7 message, status change, MPPS, study received and status message to the RIS."""
    order = worklist.get_order(session, order_id)
    if order is None:
        return None
    patient = worklist.get_patient(session, order.patient_pk)
    steps = worklist.steps_of_order(session, order_id)
    events = worklist.events_for_order(session, order_id)
    performed = browse.performed_steps_of_order(session, order_id)
    studies = browse.studies_of_order(session, order_id)
    outbound = browse.outbound_of_order(session, order_id)
    message_ids = sorted(
        {e.message_id for e in events if e.message_id is not None}
        | {i for i in (order.created_message_id, order.updated_message_id) if i is not None}
    )
    received = {m.id: m for m in browse.messages_by_ids(session, message_ids)}
    timeline: list[dict[str, Any]] = []
    for message in received.values():
        timeline.append(
            _moment(
                message.received_at,
                "message",
                f"{message_summary(message)['type']} received ({message.status})",
                message.error or f"control ID {message.control_id}",
                message_id=message.id,
            )
        )
    for event in events:
        change = (
            f"{event.status_before or '-'} → {event.status_after}"
            if event.status_after and event.status_after != event.status_before
            else ""
        )
        timeline.append(
            _moment(
                event.at,
                "status" if change else "history",
                event.event + (f": {change}" if change else ""),
                event.detail,
                step_id=event.step_id,
                message_id=event.message_id,
            )
        )
    for mpps in performed:
        timeline.append(
            _moment(
                mpps.created_at,
                "mpps",
                f"MPPS from {mpps.station_ae or mpps.modality}: {mpps.status}",
                mpps.sop_instance_uid,
            )
        )
    for study in studies:
        timeline.append(
            _moment(
                study.first_received_at,
                "images",
                f"images received: {study.series_count} series, "
                f"{study.instance_count} instances ({study.modalities})",
                study.study_instance_uid,
            )
        )
    for out in outbound:
        timeline.append(
            _moment(
                out.sent_at or out.created_at,
                "outbound",
                f"{out.message_type} ORC-5 {out.order_status} to {out.destination}: {out.status}",
                out.last_error or f"control ID {out.control_id}",
                outbound_id=out.id,
            )
        )
    timeline.sort(key=lambda entry: entry["at"])
    return {
        "order": order_summary(order),
        "patient": patient_summary(patient) if patient is not None else None,
        "steps": [step_summary(step) for step in steps],
        "history": [event_summary(event) for event in events],
        "performed_steps": [performed_step_summary(p) for p in performed],
        "studies": [study_summary(s) for s in studies],
        "outbound": [outbound_summary(o) for o in outbound],
        "timeline": timeline,
    }


def _moment(
    at: datetime, kind: str, what: str, detail: str | None, **ids: int | None
) -> dict[str, Any]:
    """One entry of an order's timeline: when, which kind, what happened, a detail, and the
    ids (message, step, outbound) that lead to the full row."""
    return {"at": at.isoformat(), "kind": kind, "what": what, "detail": detail, **ids}


def dashboard(session: Session, since: datetime) -> dict[str, Any]:
    """What tells at a glance whether the broker is well: messages since ``since`` by status,
    the latest errors, the worklist by status and the outbound queue."""
    by_status = browse.message_counts_since(session, since)
    errors = browse.messages_page(session, status="failed", limit=5).rows
    rejected = browse.messages_page(session, status="rejected", limit=5).rows
    latest_errors = sorted([*errors, *rejected], key=lambda m: m.id, reverse=True)[:8]
    outbound_counts = outbound_store.counts(session)
    queue: dict[str, dict[str, int]] = {}
    for (destination, status), count in outbound_counts.items():
        queue.setdefault(destination, {})[status] = count
    steps = browse.step_counts(session)
    return {
        "since": since.isoformat(),
        "messages": by_status,
        "messages_total": sum(by_status.values()),
        "errors": [message_summary(m) for m in latest_errors],
        "worklist": steps,
        "worklist_size": steps.get("SCHEDULED", 0),
        "outbound": queue,
        "outbound_pending": sum(c for (_, s), c in outbound_counts.items() if s == "pending"),
        "outbound_failed": sum(c for (_, s), c in outbound_counts.items() if s == "failed"),
    }


def job_run_summary(run: JobRun) -> dict[str, Any]:
    """One run of a scheduled job."""
    return {
        "id": run.id,
        "job": run.job,
        "node": run.node,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "milliseconds": round(run.milliseconds, 1),
        "ok": run.ok,
        "result": run.result,
    }


def jobs_overview(runner: JobRunner) -> dict[str, Any]:
    """Every scheduled job with its schedule and last run, and who holds the scheduler lease."""
    last = runner.last_runs()
    holder = runner.lease_holder()
    lease = None
    if holder is not None:
        lease = {"holder": holder[0], "expires_at": _iso(holder[1])}
    return {
        "jobs": [
            {
                "name": job.name,
                "schedule": str(job.schedule),
                "description": job.description,
                "last_run": job_run_summary(last[job.name]) if job.name in last else None,
            }
            for job in runner.jobs.values()
        ],
        "lease": lease,
    }
