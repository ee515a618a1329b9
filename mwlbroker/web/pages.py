"""The pages people use: dashboard, worklist, orders, messages, patients, audit, query log
and its explainer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from mwlbroker.domain.worklist import StepStatus
from mwlbroker.services import views
from mwlbroker.store import browse
from mwlbroker.store.db import DatabaseUnavailable
from mwlbroker.web import params, web
from mwlbroker.web.auth import admin_required, login_required
from mwlbroker.web.reads import explained_query, message_and_copies, order_detail, page_of

blueprint = Blueprint("pages", __name__)

MESSAGE_STATUSES = ("processed", "failed", "rejected")


def start_of_today() -> datetime:
    """Local midnight, as an aware moment."""
    now = datetime.now().astimezone()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@blueprint.get("/")
@login_required
def dashboard() -> Any:
    with web().db.reading() as session:
        summary = views.dashboard(session, start_of_today())
    runner = web().jobs
    return render_template(
        "dashboard.html",
        summary=summary,
        listeners=web().listeners(),
        destinations=web().destinations,
        jobs=views.jobs_overview(runner) if runner is not None else None,
    )


@blueprint.post("/jobs/<name>/run")
@admin_required
def run_job(name: str) -> Any:
    """Run a scheduled job now, on this node (an admin's "run now" on the dashboard)."""
    runner = web().jobs
    if runner is None or name not in runner.jobs:
        abort(404)
    run = runner.run(name, trigger=f"manual: {current_user.name}"[:16])
    outcome = f"{name}: {'done' if run.ok else 'FAILED'} in {run.milliseconds:.0f} ms: {run.result}"
    flash(outcome, "ok" if run.ok else "error")
    return redirect(url_for("pages.dashboard"))


@blueprint.get("/worklist")
@login_required
def worklist() -> Any:
    filters = params.worklist_filters()
    found, rows = page_of(browse.worklist_page, views.step_summary, **filters)
    return render_template(
        "worklist.html",
        rows=rows,
        page=found,
        filters=filters,
        statuses=[s.value for s in StepStatus],
    )


@blueprint.get("/orders/<int:order_id>")
@login_required
def order(order_id: int) -> Any:
    detail = order_detail(order_id)
    if detail is None:
        abort(404)
    return render_template("order.html", detail=detail)


@blueprint.get("/messages")
@login_required
def message_list() -> Any:
    filters = params.message_filters()
    found, rows = page_of(browse.messages_page, views.message_summary, **filters)
    return render_template(
        "messages.html", rows=rows, page=found, filters=filters, statuses=MESSAGE_STATUSES
    )


def _message(message_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found = message_and_copies(message_id)
    if found is None:
        abort(404)
    return found


@blueprint.get("/messages/<int:message_id>")
@login_required
def message(message_id: int) -> Any:
    detail, copies = _message(message_id)
    return render_template("message.html", message=detail, copies=copies)


@blueprint.post("/messages/<int:message_id>/reprocess")
@admin_required
def reprocess(message_id: int) -> Any:
    service = web().ingest()
    if service is None:
        abort(503)
    try:
        result = service.reprocess(message_id, actor=current_user.name)
    except LookupError:
        abort(404)
    except ValueError as error:
        flash(str(error), "error")
    except DatabaseUnavailable as error:
        flash(f"database unavailable: {error}", "error")
    else:
        outcome = f"Reprocessed: {result.status} ({result.ack_code})"
        flash(outcome + (f" - {result.error}" if result.error else ""), _kind(result.ack_code))
    return redirect(url_for("pages.message", message_id=message_id))


@blueprint.route("/messages/<int:message_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(message_id: int) -> Any:
    detail, _copies = _message(message_id)
    if detail["status"] == "processed":
        flash("A processed message cannot be edited: it has been applied.", "error")
        return redirect(url_for("pages.message", message_id=message_id))
    if request.method == "GET":
        return render_template("edit.html", message=detail, text=detail["text"].replace("\r", "\n"))
    text = request.form.get("text", "")
    service = web().ingest()
    if service is None:
        abort(503)
    raw = "\r".join(line for line in text.replace("\r\n", "\n").split("\n") if line) + "\r"
    try:
        result = service.resubmit(message_id, raw.encode("utf-8"), actor=current_user.name)
    except LookupError:
        abort(404)
    except ValueError as error:
        flash(str(error), "error")
        return redirect(url_for("pages.message", message_id=message_id))
    flash(
        f"Resubmitted as message {result.message_id}: {result.status} ({result.ack_code})"
        + (f" - {result.error}" if result.error else ""),
        _kind(result.ack_code),
    )
    return redirect(url_for("pages.message", message_id=result.message_id))


def _kind(ack_code: str) -> str:
    return "info" if ack_code == "AA" else "error"


@blueprint.get("/patients")
@login_required
def patients() -> Any:
    query = params.text("q")
    found, rows = page_of(browse.patients_page, views.patient_summary, text=query)
    return render_template("patients.html", rows=rows, page=found, filters={"q": query})


@blueprint.get("/audit")
@login_required
def audit() -> Any:
    filters = {"entity": params.text("entity", 32), "actor": params.text("actor", 200)}
    found, rows = page_of(browse.audit_page, views.audit_summary, **filters)
    return render_template("audit.html", rows=rows, page=found, filters=filters)


@blueprint.get("/queries")
@login_required
def queries() -> Any:
    calling_ae = params.text("calling_ae", 16)
    found, rows = page_of(browse.query_log_page, views.query_log_summary, calling_ae=calling_ae)
    return render_template(
        "queries.html", rows=rows, page=found, filters={"calling_ae": calling_ae}
    )


@blueprint.get("/queries/<int:log_id>/explain")
@login_required
def explain_query(log_id: int) -> Any:
    """A logged query held against a step (?step=ID), picked from candidates or looked up
    by accession number, SPS ID or step id (?find=...)."""
    try:
        found = explained_query(log_id)
    except LookupError:
        abort(404)
    if found is None:
        abort(404)
    return render_template("explain.html", found=found)
