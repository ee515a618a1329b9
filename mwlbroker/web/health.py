"""Liveness, readiness and metrics for load balancers and monitoring; no patient data, no login."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from mwlbroker.services.metrics import CONTENT_TYPE
from mwlbroker.store.db import DatabaseUnavailable
from mwlbroker.web import web

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 once every listener is up."""
    listeners = web().listeners()
    up = bool(listeners) and all(listeners.values())
    return jsonify(status="ok" if up else "starting", listeners=listeners), 200 if up else 503


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the listeners are up and the database answers; 503 otherwise."""
    listeners = web().listeners()
    problems = [f"{name} listener is not up" for name, up in listeners.items() if not up]
    if not listeners:
        problems.append("listeners are not started")
    try:
        web().db.ping()
        database = "ok"
    except DatabaseUnavailable as error:
        database = "unavailable"
        problems.append(f"database unavailable: {error}")
    ready = not problems
    return (
        jsonify(
            status="ready" if ready else "not ready",
            listeners=listeners,
            database=database,
            problems=problems,
        ),
        200 if ready else 503,
    )


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: counters of this process, queues and jobs from the database."""
    collected = web().metrics
    if collected is None:
        return Response("metrics are not collected here\n", status=404, mimetype="text/plain")
    return Response(collected.render(), mimetype=None, content_type=CONTENT_TYPE)
