"""Who may use the web page and API, and what each role may do."""

from __future__ import annotations

import enum
import re


class Role(enum.StrEnum):
    """Viewers read everything; admins also act (reprocess, resubmit, reconcile)."""

    ADMIN = "admin"
    VIEWER = "viewer"


class AccountError(Exception):
    """A user cannot be added or changed as asked; the message says why."""


class LoginThrottled(Exception):
    """Too many failed logins for this name from this address; try again later."""

    def __init__(self, retry_after_seconds: int) -> None:
        minutes = max(1, round(retry_after_seconds / 60))
        super().__init__(
            f"too many failed logins for this user from this address; try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}"
        )
        self.retry_after_seconds = retry_after_seconds


USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD_LENGTH = 10


def check_user_name(name: str) -> str:
    """The name as stored, or :class:`AccountError` saying what a name may hold."""
    if not USER_NAME.fullmatch(name):
        raise AccountError(
            f"user name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password
