"""The web page and JSON API through Flask's test client, on a real broker and database."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from mwlbroker.domain.accounts import Role
from mwlbroker.store.db import Database
from mwlbroker.web import WebContext, create_app
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.web_client import csrf_token, login

ADMIN, VIEWER, PASSWORD = "alice", "victor", "correct horse battery"

PAGES = [
    "/",
    "/worklist",
    "/worklist?date=2026-11-27&modality=CT&station=CT1&status=SCHEDULED&q=DOE&page=2",
    "/orders/1",
    "/messages",
    "/messages?status=failed&type=ORM^O01&q=C1",
    "/messages/1",
    "/messages/1/edit",
    "/patients?q=DOE",
    "/audit",
    "/queries",
]
API = [
    "/api/status",
    "/api/worklist",
    "/api/orders/1",
    "/api/messages",
    "/api/messages/1",
    "/api/patients",
    "/api/audit",
    "/api/queries",
]
ACTIONS = [
    "/messages/1/reprocess",
    "/messages/1/edit",
    "/api/messages/1/reprocess",
    "/api/messages/1/resubmit",
]


@pytest.fixture
def web(broker):
    """A broker with an admin and a viewer, and its web application."""
    broker.accounts.add_user(ADMIN, PASSWORD, Role.ADMIN)
    broker.accounts.add_user(VIEWER, PASSWORD, Role.VIEWER)
    app = broker.build_web_app()
    return broker, app


def send(broker, message: bytes) -> str:
    with Peer(broker.hl7.port) as peer:
        return ack_fields(peer.send(message))["MSA"][1]


def failed_message(broker) -> None:
    """Message 1: an XO for an order the broker never had, stored as failed (AE)."""
    assert send(broker, orm("X1", control="XO", order="UNKNOWN1")) == "AE"


def test_health_and_readiness_over_http(web):
    broker, _ = web
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.web.port}{path}") as answer:
            body = json.loads(answer.read())
            assert answer.status == 200
        assert body["listeners"] == {"hl7": True, "dicom": True, "web": True}
    # The same listeners over a database that cannot be reached: not ready.
    unreachable = Database("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        context = WebContext(db=unreachable, accounts=broker.accounts, listeners=broker.listeners)
        client = create_app(context, secret_key="k").test_client()
        refused = client.get("/readyz")
        assert refused.status_code == 503
        assert "database unavailable" in refused.get_json()["problems"][0]
        assert client.get("/healthz").status_code == 200
    finally:
        unreachable.dispose()


def test_api_reads_answer_503_while_the_database_is_unreachable(web):
    """A read that cannot reach the database says so (503), like a write, not a bare 500."""
    broker, _ = web
    unreachable = Database("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        # Logins are checked by the broker's own accounts; the reads go to the lost database.
        context = WebContext(db=unreachable, accounts=broker.accounts, listeners=broker.listeners)
        client = create_app(context, secret_key="k").test_client()
        assert login(client, VIEWER, PASSWORD).status_code == 302
        for path in ("/api/worklist", "/api/messages", "/api/messages/1"):
            answer = client.get(path)
            assert answer.status_code == 503, path
            assert "database unavailable" in answer.get_json()["error"], path
    finally:
        unreachable.dispose()


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_login(web, path):
    _, app = web
    answer = app.test_client().get(path)
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


@pytest.mark.parametrize("path", API)
def test_api_needs_a_login(web, path):
    _, app = web
    answer = app.test_client().get(path)
    assert answer.status_code == 401
    assert "login required" in answer.get_json()["error"]
    bad = app.test_client().get(path, headers={"Authorization": "Bearer mwl_nothing_here"})
    assert bad.status_code == 401


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_need_a_login(web, path):
    _, app = web
    client = app.test_client()
    token = csrf_token(client)
    answer = client.post(path, data={"csrf_token": token}, headers={"X-CSRFToken": token})
    assert answer.status_code == 401
    assert "Alice" not in answer.get_data(as_text=True)


def test_every_page_and_api_call_for_a_viewer(web):
    broker, app = web
    failed_message(broker)
    assert send(broker, orm("N1")) == "AA"
    client = app.test_client()
    assert login(client, VIEWER, PASSWORD).status_code == 302
    for path in PAGES:
        answer = client.get(path)
        expected = 403 if path.endswith("/edit") else 200
        assert answer.status_code == expected, path
    for path in API:
        assert client.get(path).status_code == 200, path
    token = csrf_token(client, "/messages/1")
    assert client.post("/messages/1/reprocess", data={"csrf_token": token}).status_code == 403
    refused = client.post("/api/messages/1/reprocess", headers={"X-CSRFToken": token})
    assert refused.status_code == 403 and "admin" in refused.get_json()["error"]


def test_login_refusals_throttling_and_session_rotation(web):
    _, app = web
    client = app.test_client()
    # No CSRF token: refused before the password is even looked at.
    answer = client.post("/login", data={"name": ADMIN, "password": PASSWORD})
    assert answer.status_code == 400
    assert login(client, ADMIN, "wrong password!").status_code == 401
    before = csrf_token(client)
    assert login(client, ADMIN, PASSWORD).status_code == 302
    # The session began anew: the token of the anonymous session is worth nothing now.
    assert client.post("/messages/1/reprocess", data={"csrf_token": before}).status_code == 400
    set_cookie = [h for h in client.get("/").headers.getlist("Set-Cookie")]
    other = app.test_client()
    for _ in range(5):
        assert login(other, VIEWER, "not the password").status_code == 401
    throttled = login(other, VIEWER, PASSWORD)
    assert throttled.status_code == 429
    assert "too many failed logins" in throttled.get_data(as_text=True).lower()
    assert int(throttled.headers["Retry-After"]) > 0
    assert set_cookie == [] or all("HttpOnly" in c for c in set_cookie)


def test_cookie_and_security_headers(web):
    _, app = web
    client = app.test_client()
    answer = login(client, ADMIN, PASSWORD)
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"


def test_password_change_ends_open_sessions(web):
    broker, app = web
    client = app.test_client()
    login(client, VIEWER, PASSWORD)
    assert client.get("/").status_code == 200
    broker.accounts.set_password(VIEWER, "another long password")
    assert client.get("/").status_code == 302


def test_reprocess_and_edit_then_resubmit(web):
    broker, app = web
    failed_message(broker)
    client = app.test_client()
    login(client, ADMIN, PASSWORD)
    page = client.get("/messages/1").get_data(as_text=True)
    assert "failed" in page and "Placer Order Number" in page and "Message Control Id" in page
    assert "Reprocess" in page and "Edit and resubmit" in page
    # Without the CSRF token nothing happens.
    assert client.post("/messages/1/reprocess").status_code == 400
    token = csrf_token(client, "/messages/1")
    answer = client.post("/messages/1/reprocess", data={"csrf_token": token})
    assert answer.status_code == 302
    page = client.get("/messages/1").get_data(as_text=True)
    assert "Reprocessed: failed (AE)" in page
    # Edit: the XO becomes an NW; the copy is applied, the original stays as it was.
    edit = client.get("/messages/1/edit").get_data(as_text=True)
    text = re.search(r"<textarea[^>]*>(.*?)</textarea>", edit, re.S)[1]
    text = text.replace("ORC|XO|", "ORC|NW|").replace("&amp;", "&")
    assert client.post("/messages/1/edit", data={"text": text}).status_code == 400  # no CSRF
    answer = client.post("/messages/1/edit", data={"text": text, "csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/messages/2")
    copy = client.get("/api/messages/2").get_json()
    assert copy["status"] == "processed" and copy["original_id"] == 1
    original = client.get("/api/messages/1").get_json()
    assert original["status"] == "failed" and original["resubmitted_as"] == [2]
    assert "ORC|XO|" in original["text"]
    # The original can no longer be applied: its copy was.
    refused = client.post("/api/messages/1/reprocess", headers={"X-CSRFToken": token})
    assert refused.status_code == 409 and "resubmitted as message 2" in refused.get_json()["error"]
    audit = client.get("/api/audit").get_json()["items"]
    assert [a["action"] for a in audit[:2]] == ["message resubmit", "message reprocess"]
    assert audit[0]["actor"] == ADMIN and audit[0]["after"]["copy_id"] == 2
    worklist = client.get("/api/worklist?q=UNKNOWN1").get_json()
    assert worklist["total"] == 1
    order = client.get(f"/api/orders/{worklist['items'][0]['order_id']}").get_json()
    kinds = [entry["kind"] for entry in order["timeline"]]
    assert "message" in kinds and order["steps"][0]["status"] == "SCHEDULED"
    assert client.get(f"/orders/{order['order']['id']}").status_code == 200


def test_api_token_and_csrf_on_session_posts(web):
    broker, app = web
    failed_message(broker)
    token = broker.accounts.create_token(ADMIN)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    listing = client.get("/api/messages?status=failed", headers=headers).get_json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == 1
    # A bearer token carries no cookie, so no CSRF token is asked for.
    answer = client.post("/api/messages/1/reprocess", headers=headers)
    assert answer.status_code == 200 and answer.get_json()["ack_code"] == "AE"
    resubmit = client.post(
        "/api/messages/1/resubmit", headers=headers, json={"text": "not hl7 at all"}
    )
    assert resubmit.status_code == 200 and resubmit.get_json()["status"] == "rejected"
    session_client = app.test_client()
    login(session_client, ADMIN, PASSWORD)
    refused = session_client.post("/api/messages/1/reprocess")
    assert refused.status_code == 400 and "CSRF" in refused.get_json()["error"]
    assert client.get("/api/messages/999", headers=headers).status_code == 404
    assert client.get("/api/orders/999", headers=headers).status_code == 404


def test_values_from_hl7_are_escaped(web):
    broker, app = web
    hostile = orm("S1").replace(b"DOE^JOHN", b"<script>alert(1)</script>^<b>X</b>")
    assert send(broker, hostile) == "AA"
    client = app.test_client()
    login(client, VIEWER, PASSWORD)
    for path in ("/worklist", "/patients", "/messages/1", "/orders/1"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "<b>X</b>" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_user_commands(database_url, tmp_path):
    env = cli_env(database_url)
    added = run_cli(
        "user",
        "add",
        "ops",
        "--role",
        "admin",
        "--password-stdin",
        env=env,
        cwd=tmp_path,
        input="long enough password\n",
    )
    assert added.returncode == 0, added.stderr
    short = run_cli(
        "user",
        "add",
        "bob",
        "--role",
        "viewer",
        "--password-stdin",
        env=env,
        cwd=tmp_path,
        input="short\n",
    )
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    again = run_cli(
        "user",
        "add",
        "ops",
        "--role",
        "viewer",
        "--password-stdin",
        env=env,
        cwd=tmp_path,
        input="long enough password\n",
    )
    assert again.returncode == 1 and "exists" in again.stderr
    listed = run_cli("user", "list", "--json", env=env, cwd=tmp_path)
    assert [u["name"] for u in json.loads(listed.stdout)] == ["ops"]
    token = run_cli("user", "token", "ops", env=env, cwd=tmp_path)
    assert token.returncode == 0 and token.stdout.startswith("mwl_")
    changed = run_cli(
        "user",
        "passwd",
        "ops",
        "--password-stdin",
        env=env,
        cwd=tmp_path,
        input="another good password\n",
    )
    assert changed.returncode == 0 and "sessions have ended" in changed.stdout
