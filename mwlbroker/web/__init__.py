"""The web page and JSON API: a Flask application built by :func:`create_app`.

Nothing happens at import time; the composition root (``mwlbroker.app``) builds the services
and hands them over in a :class:`WebContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from mwlbroker.services.accounts import AccountService
from mwlbroker.services.ingest import IngestService
from mwlbroker.services.jobs import JobRunner
from mwlbroker.services.metrics import Metrics
from mwlbroker.services.reconciliation import ReconciliationService
from mwlbroker.store.db import Database


@dataclass
class WebContext:
    """What the pages and the API work with; built by the composition root."""

    db: Database
    accounts: AccountService
    # Reprocess and resubmit; None until the mappings are loaded (the broker is starting).
    ingest: Callable[[], IngestService | None] = lambda: None
    # Listener name -> up? ("hl7", "dicom", "web"), as the broker sees them.
    listeners: Callable[[], dict[str, bool]] = dict
    destinations: tuple[str, ...] = ()
    metrics: Metrics | None = None  # what /metrics renders; None: no metrics (tests of pages)
    jobs: JobRunner | None = None  # the scheduled jobs, for the dashboard and "run now"
    # dicom.worklist_statuses: a step in another status is not served, whatever its keys.
    worklist_statuses: tuple[str, ...] = ("SCHEDULED",)
    # Collisions, duplicates, merges and exams without an order; None: no reconciliation pages.
    reconciliation: ReconciliationService | None = None


def web() -> WebContext:
    """The context of the application handling the current request."""
    context: WebContext = current_app.extensions["mwlbroker"]
    return context


def create_app(
    context: WebContext,
    *,
    secret_key: str,
    secure_cookies: bool = False,
    proxy_hops: int = 0,
    testing: bool = False,
) -> Flask:
    """The Flask application: blueprints, login, CSRF protection and security headers."""
    from mwlbroker.web import api, auth, health, pages, reconcile, reconcile_api, security

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        TESTING=testing,
        SESSION_COOKIE_NAME="mwlbroker_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        # Checked in _csrf below, so that API calls with a bearer token (no cookie) skip it.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["mwlbroker"] = context
    csrf = CSRFProtect(app)

    @app.before_request
    def _csrf() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if auth.bearer_token() is not None:
            return  # no cookie is involved, so no request can be forged
        g.csrf_checked = True
        csrf.protect()

    auth.init_app(app)
    security.init_app(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(reconcile.blueprint, url_prefix="/reconcile")
    app.register_blueprint(api.blueprint, url_prefix="/api")
    app.register_blueprint(reconcile_api.blueprint, url_prefix="/api/reconcile")
    if proxy_hops:
        # Behind a TLS-terminating proxy: the client's address (login throttling, audit) and
        # scheme (https redirects) come from the proxy's headers, but only from that many hops;
        # without it they are ignored, so no client can claim another address.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxy_hops, x_proto=proxy_hops, x_host=proxy_hops
        )
    return app
