"""The JSON API: the same lists and actions as the pages, for programs.

Authentication is the page's session (then POSTs need the X-CSRFToken header) or an API token
as ``Authorization: Bearer TOKEN`` (``mwlbroker user token NAME``). Lists are paged with
``?page=N&limit=N`` and answer ``{"items": [...], "total": N, "page": N, "limit": N}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from mwlbroker.services import views
from mwlbroker.store import browse
from mwlbroker.store.browse import Page
from mwlbroker.store.db import DatabaseUnavailable
from mwlbroker.web import params, web
from mwlbroker.web.auth import admin_required, login_required
from mwlbroker.web.pages import start_of_today
from mwlbroker.web.reads import (
    Summary,
    explained_query,
    message_and_copies,
    order_detail,
    page_of,
)

blueprint = Blueprint("api", __name__)


def json_error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


@blueprint.errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> tuple[Response, int]:
    return json_error(400, f"CSRF check failed: {error.description}")


@blueprint.errorhandler(DatabaseUnavailable)
def database_error(error: DatabaseUnavailable) -> tuple[Response, int]:
    return json_error(503, f"database unavailable: {error}")


@blueprint.errorhandler(404)
def not_found(_exception: Any) -> tuple[Response, int]:
    return json_error(404, "not found")


def _listing(list_page: Callable[..., Page], summary: Summary, **filters: Any) -> Response:
    """The page of a list asked for, as the API answers every list."""
    found, items = page_of(list_page, summary, **filters)
    return jsonify(
        items=items,
        total=found.total,
        page=found.offset // found.limit + 1,
        limit=found.limit,
    )


@blueprint.get("/status")
@login_required
def status() -> Response:
    with web().db.reading() as session:
        summary = views.dashboard(session, start_of_today())
    return jsonify(listeners=web().listeners(), **summary)


@blueprint.get("/jobs")
@login_required
def jobs() -> Any:
    """The scheduled jobs, their schedules and last runs, and the lease holder."""
    runner = web().jobs
    if runner is None:
        return json_error(404, "no scheduled jobs here")
    return jsonify(views.jobs_overview(runner))


@blueprint.post("/jobs/<name>/run")
@admin_required
def run_job(name: str) -> Any:
    """Run a job now on this node; answers the run (``ok`` false when the job failed)."""
    runner = web().jobs
    if runner is None or name not in runner.jobs:
        return json_error(404, f"no job named {name!r}")
    run = runner.run(name, trigger=f"manual: {current_user.name}"[:16])
    return jsonify(views.job_run_summary(run))


@blueprint.get("/worklist")
@login_required
def worklist() -> Response:
    return _listing(browse.worklist_page, views.step_summary, **params.worklist_filters())


@blueprint.get("/orders/<int:order_id>")
@login_required
def order(order_id: int) -> Any:
    detail = order_detail(order_id)
    if detail is None:
        return json_error(404, f"no order with id {order_id}")
    return jsonify(detail)


@blueprint.get("/messages")
@login_required
def message_list() -> Response:
    return _listing(browse.messages_page, views.message_summary, **params.message_filters())


@blueprint.get("/messages/<int:message_id>")
@login_required
def message(message_id: int) -> Any:
    found = message_and_copies(message_id)
    if found is None:
        return json_error(404, f"no message with id {message_id}")
    detail, copies = found
    detail["resubmitted_as"] = [copy["id"] for copy in copies]
    return jsonify(detail)


def _outcome(result: Any) -> Response:
    return jsonify(
        message_id=result.message_id,
        status=str(result.status),
        ack_code=str(result.ack_code),
        error=result.error,
        warnings=[warning.as_json() for warning in result.warnings],
    )


@blueprint.post("/messages/<int:message_id>/reprocess")
@admin_required
def reprocess(message_id: int) -> Any:
    service = web().ingest()
    if service is None:
        return json_error(503, "the broker is starting")
    try:
        return _outcome(service.reprocess(message_id, actor=current_user.name))
    except LookupError as error:
        return json_error(404, str(error))
    except ValueError as error:
        return json_error(409, str(error))


@blueprint.post("/messages/<int:message_id>/resubmit")
@admin_required
def resubmit(message_id: int) -> Any:
    """Body ``{"text": "MSH|...\\rPID|..."}``: an edited copy of a failed or rejected message."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return json_error(400, 'the body must be JSON: {"text": "the edited message"}')
    service = web().ingest()
    if service is None:
        return json_error(503, "the broker is starting")
    text = body["text"].replace("\r\n", "\r").replace("\n", "\r")
    raw = "\r".join(s for s in text.split("\r") if s) + "\r"
    try:
        return _outcome(service.resubmit(message_id, raw.encode("utf-8"), actor=current_user.name))
    except LookupError as error:
        return json_error(404, str(error))
    except ValueError as error:
        return json_error(409, str(error))


@blueprint.get("/patients")
@login_required
def patients() -> Response:
    return _listing(browse.patients_page, views.patient_summary, text=params.text("q"))


@blueprint.get("/audit")
@login_required
def audit() -> Response:
    filters = {"entity": params.text("entity", 32), "actor": params.text("actor", 200)}
    return _listing(browse.audit_page, views.audit_summary, **filters)


@blueprint.get("/queries")
@login_required
def queries() -> Response:
    calling_ae = params.text("calling_ae", 16)
    return _listing(browse.query_log_page, views.query_log_summary, calling_ae=calling_ae)


@blueprint.get("/queries/<int:log_id>/explain")
@login_required
def explain_query(log_id: int) -> Any:
    """Why a logged query did or did not return a step (?step=ID), key by key."""
    try:
        found = explained_query(log_id)
    except LookupError as error:
        return json_error(404, str(error))
    if found is None:
        return json_error(404, f"no logged query with id {log_id}")
    return jsonify(found)
