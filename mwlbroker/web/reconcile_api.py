"""The JSON API of patient identity reconciliation, under /api/reconcile.

The same lists and actions as the /reconcile pages, with the API's authentication (session
plus X-CSRFToken header on POSTs, or ``Authorization: Bearer TOKEN``), its paging
(``{"items": [...], "total": N, "page": N, "limit": N}``) and its errors (``{"error": ...}``):
404 for what does not exist, 409 for what the service refuses (an undo's reasons in
``problems``), 400 for a body that cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from mwlbroker.services.reconciliation import ReconciliationRefused, UndoRefused
from mwlbroker.store.db import DatabaseUnavailable
from mwlbroker.web import api, params
from mwlbroker.web.auth import admin_required, login_required
from mwlbroker.web.reconcile import duplicate_pairs, service, waiting_exams

blueprint = Blueprint("reconcile_api", __name__)
# The answers of the rest of the API, for the same failures.
blueprint.register_error_handler(CSRFError, api.csrf_error)
blueprint.register_error_handler(DatabaseUnavailable, api.database_error)
blueprint.register_error_handler(404, api.not_found)

# The lists are queues staff work down, not archives: read this many, then page through them.
MOST = 1000


class BadRequest(Exception):
    """The request body cannot be read as the route needs it; answered 400."""


def answers(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view's result as JSON; the service's refusals as the API's errors.

    Only the service's own LookupError means "not there": a KeyError or IndexError is a bug
    and stays a 500.
    """

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return jsonify(view(*args, **kwargs))
        except BadRequest as error:
            return api.json_error(400, str(error))
        except UndoRefused as refused:
            return jsonify(error=str(refused), problems=refused.problems), 409
        except ReconciliationRefused as refused:
            return api.json_error(409, str(refused))
        except LookupError as error:
            if type(error) is not LookupError:
                raise
            return api.json_error(404, str(error))

    return wrapped


def _paged(items: list[Any]) -> Response:
    """A list read whole (at most MOST), answered a page at a time like every API list."""
    offset, limit = params.page()
    return jsonify(
        items=items[offset : offset + limit],
        total=len(items),
        page=offset // limit + 1,
        limit=limit,
    )


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _patient(body: dict[str, Any], key: str) -> int:
    """A patient as its number (pk) or as "ID" / "ID^^^ISSUER"."""
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return service().find_patient(value.strip()).pk
    raise BadRequest(f'"{key}" must name a patient: its number, or "ID^^^ISSUER"')


def _ids(value: Any, key: str) -> list[int]:
    if isinstance(value, list) and value and all(type(v) is int for v in value):
        return list(value)
    raise BadRequest(f'"{key}" must be a list of step ids (numbers)')


# -- lists -----------------------------------------------------------------------------------------


@blueprint.get("/collisions")
@login_required
def collisions() -> Response:
    """Patient IDs carrying two people's demographics, with the evidence."""
    return _paged([asdict(c) for c in service().collisions(limit=MOST)])


@blueprint.get("/duplicates")
@login_required
def duplicates() -> Response:
    """The likely duplicate pairs the last sweep stored, best first, with each one's steps."""
    return _paged(duplicate_pairs(limit=MOST))


@blueprint.get("/mpps")
@login_required
def unscheduled_mpps() -> Response:
    """Performed steps that matched no scheduled step, with the steps they may belong to."""
    return _paged(waiting_exams(limit=MOST)["mpps"])


@blueprint.get("/studies")
@login_required
def unmatched_studies() -> Response:
    """Received studies that matched no order, with the steps they may belong to."""
    return _paged(waiting_exams(limit=MOST)["studies"])


@blueprint.get("/merges")
@login_required
def merges() -> Response:
    """Merges, newest first, whether undone and by whom."""
    return _paged([asdict(m) for m in service().merges(limit=MOST)])


# -- actions ---------------------------------------------------------------------------------------


@blueprint.post("/duplicates/sweep")
@admin_required
@answers
def sweep() -> dict[str, Any]:
    """Run the duplicate sweep now (the nightly job's work)."""
    return asdict(service().sweep_duplicates())


@blueprint.post("/merge")
@admin_required
@answers
def merge() -> dict[str, Any]:
    """Body ``{"prior": 12, "survivor": 7, "notify_ris": false}``: merge prior into survivor."""
    body = _body()
    notify = body.get("notify_ris", False)
    if not isinstance(notify, bool):
        raise BadRequest('"notify_ris" must be true or false')
    prior, survivor = _patient(body, "prior"), _patient(body, "survivor")
    done = service().merge(prior, survivor, actor=current_user.name, notify_ris=notify)
    return asdict(done)


@blueprint.post("/dismiss")
@admin_required
@answers
def dismiss() -> dict[str, Any]:
    """Body ``{"first": 12, "second": 7, "note": "twins"}``: not the same person, remembered."""
    body = _body()
    note = body.get("note", "")
    if not isinstance(note, str):
        raise BadRequest('"note" must be text')
    first, second = _patient(body, "first"), _patient(body, "second")
    service().dismiss(first, second, actor=current_user.name, note=note[:500])
    return {"first": first, "second": second, "dismissed": True}


@blueprint.post("/merges/<int:merge_id>/undo")
@admin_required
@answers
def undo(merge_id: int) -> dict[str, Any]:
    """Put a merge back; 409 with ``problems`` when it cannot be done safely."""
    return asdict(service().undo_merge(merge_id, actor=current_user.name))


@blueprint.post("/mpps/<int:performed_id>/link")
@admin_required
@answers
def link_mpps(performed_id: int) -> dict[str, Any]:
    """Body ``{"step_ids": [5]}``: link an unscheduled performed step to scheduled steps."""
    steps = _ids(_body().get("step_ids"), "step_ids")
    return asdict(service().link_mpps(performed_id, steps, actor=current_user.name))


@blueprint.post("/studies/<int:study_id>/link")
@admin_required
@answers
def link_study(study_id: int) -> dict[str, Any]:
    """Body ``{"step_id": 5}``: match an unmatched study to a scheduled step."""
    step = _body().get("step_id")
    if not isinstance(step, int) or isinstance(step, bool):
        raise BadRequest('"step_id" must be a step id (a number)')
    return asdict(service().link_study(study_id, step, actor=current_user.name))
