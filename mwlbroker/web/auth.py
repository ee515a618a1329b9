"""Who is asking: session login for people, bearer tokens for programs, roles for actions.

A session cookie holds the user id and the password's epoch: changing the password ends
every session opened before. Logging in starts a new session (nothing from the anonymous one
survives, CSRF token included), so a session fixed by someone else is worth nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user

from mwlbroker.domain.accounts import LoginThrottled
from mwlbroker.services.accounts import Account
from mwlbroker.web import web

blueprint = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])
# The blueprints under /api: they answer JSON, refusals included.
API_BLUEPRINTS = ("api", "reconcile_api")


def is_api() -> bool:
    """Whether the request is for the JSON API (answers JSON, never a redirect to the login)."""
    return request.blueprint in API_BLUEPRINTS


class User:
    """The Flask-Login face of an account."""

    is_active = True
    is_anonymous = False
    is_authenticated = True

    def __init__(self, account: Account) -> None:
        self.account = account

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def is_admin(self) -> bool:
        return self.account.is_admin

    def get_id(self) -> str:
        return f"{self.account.id}:{self.account.session_epoch}"


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def init_app(app: Flask) -> None:
    manager = LoginManager()
    manager.login_view = "auth.login"
    manager.login_message = "Please log in to see this page."
    manager.session_protection = "basic"
    manager.init_app(app)

    @manager.user_loader
    def _load(user_id: str) -> User | None:
        pk, _, epoch = user_id.partition(":")
        if not pk.isdigit() or not epoch.isdigit():
            return None
        account = web().accounts.account(int(pk))
        if account is None or account.session_epoch != int(epoch):
            return None  # the password changed since this session began
        return User(account)

    @manager.request_loader
    def _from_token(_request: Any) -> User | None:
        token = bearer_token()
        if token is None:
            return None
        account = web().accounts.account_for_token(token)
        if account is None:
            return None
        g.token_auth = True
        return User(account)

    @manager.unauthorized_handler
    def _unauthorized() -> Response:
        if is_api():
            response = jsonify(error="login required (session or Authorization: Bearer token)")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="mwlbroker"'
            return response
        if request.method != "GET":
            abort(401)
        target = request.full_path.rstrip("?")
        return cast(Response, redirect(url_for("auth.login", next=target)))

    @app.context_processor
    def _user() -> dict[str, Any]:
        return {"user": current_user}


def login_required(view: F) -> F:
    """Any logged-in user: the page shows patient data."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            from flask import current_app

            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        return view(*args, **kwargs)

    return cast(F, wrapped)


def admin_required(view: F) -> F:
    """An admin: the view changes something."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            from flask import current_app

            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if not current_user.is_admin:
            if is_api():
                response = jsonify(error="this needs the admin role")
                response.status_code = 403
                return response
            abort(403)
        return view(*args, **kwargs)

    return cast(F, wrapped)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never send a user who just logged in somewhere else."""
    if not target:
        return url_for("pages.dashboard")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.dashboard")
    return target.rstrip("?") or url_for("pages.dashboard")


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    address = request.remote_addr or ""
    try:
        account = web().accounts.authenticate(name, password, address)
    except LoginThrottled as throttled:
        flash(str(throttled).capitalize() + ".", "error")
        response = render_template("login.html", next=request.form.get("next", ""), name=name)
        return response, 429, {"Retry-After": str(throttled.retry_after_seconds)}
    if account is None:
        flash("Wrong user name or password.", "error")
        return render_template("login.html", next=request.form.get("next", ""), name=name), 401
    session.clear()  # a new session: nothing from before the login carries over
    login_user(User(account))
    session.permanent = True
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> Any:
    logout_user()
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("auth.login"))
