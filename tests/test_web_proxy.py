"""The web page behind a TLS-terminating reverse proxy (web.proxy_hops).

HTTP over TLS is the proxy's job (see HTTPS in docs/web-and-api.md); what the broker must get
right is whom it believes: the client's address from X-Forwarded-For only when a proxy is
configured, so login throttling counts per real client there, and a client cannot dodge it by
inventing the header when no proxy is configured.
"""

from __future__ import annotations

from mwlbroker.domain.accounts import Role
from tests.support.web_client import login

PASSWORD = "correct horse battery"


def _fail_five_times(client, forwarded_for: str) -> None:
    for _ in range(5):
        answer = login_from(client, "victor", "not the password", forwarded_for)
        assert answer.status_code == 401


def login_from(client, name: str, password: str, forwarded_for: str):
    client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
    # Over HTTPS, CSRF protection also wants a same-origin Referer, as browsers send it.
    client.environ_base["HTTP_REFERER"] = "https://localhost/login"
    return login(client, name, password)


def test_behind_a_proxy_each_client_address_is_throttled_on_its_own(broker_factory):
    broker = broker_factory(web__proxy_hops=1)
    broker.accounts.add_user("victor", PASSWORD, Role.VIEWER)
    app = broker.build_web_app()
    first, second = app.test_client(), app.test_client()
    _fail_five_times(first, "10.0.0.1")
    assert login_from(first, "victor", PASSWORD, "10.0.0.1").status_code == 429
    # Another workstation behind the same proxy is not locked out by the first one's typos.
    assert login_from(second, "victor", PASSWORD, "10.0.0.2").status_code == 302


def test_without_a_proxy_the_forwarded_header_is_ignored(broker_factory):
    broker = broker_factory()  # web.proxy_hops = 0
    broker.accounts.add_user("victor", PASSWORD, Role.VIEWER)
    app = broker.build_web_app()
    client = app.test_client()
    _fail_five_times(client, "10.0.0.1")
    # Claiming to be someone else does not reset the count.
    assert login_from(client, "victor", PASSWORD, "10.9.9.9").status_code == 429
