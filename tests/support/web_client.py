"""Helpers for the web tests: log in through the real login form, read CSRF tokens."""

from __future__ import annotations

import re

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    page = client.get(path)
    match = CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match[1]


def login(client, name: str, password: str):
    token = csrf_token(client)
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})
