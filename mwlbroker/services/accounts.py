"""Accounts of the web page and API: users, passwords, API tokens and login throttling.

Passwords and tokens are kept as argon2id hashes only. Failed logins are counted in the
database per user name and address, so that several broker nodes throttle together.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mwlbroker.domain.accounts import (
    AccountError,
    LoginThrottled,
    Role,
    check_password,
    check_user_name,
)
from mwlbroker.services.worklist import Context, audit
from mwlbroker.store import accounts
from mwlbroker.store.db import Database, Session
from mwlbroker.store.tables import ApiTokenRow, UserRow

MAX_FAILURES = 5  # failed logins per name and address within the window...
FAILURE_WINDOW = timedelta(minutes=15)  # ...before further attempts are refused
TOKEN_PREFIX_BYTES = 6


@dataclass(frozen=True)
class Account:
    """A user as the web layer sees it: no hash, nothing to change by accident."""

    id: int
    name: str
    role: Role
    session_epoch: int
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @classmethod
    def of(cls, row: UserRow) -> Account:
        return cls(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            session_epoch=row.session_epoch,
            disabled=row.disabled,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )


class AccountService:
    """Adds users, checks passwords and tokens, and throttles guessing."""

    def __init__(self, db: Database, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.hasher = hasher or PasswordHasher()
        # Verified against when the name is unknown, so both cases take the same time.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    # -- managing users (command line) ----------------------------------------------------------

    def add_user(self, name: str, password: str, role: Role, *, actor: str = "cli") -> Account:
        check_user_name(name)
        check_password(password)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            if accounts.user_by_name(session, name) is not None:
                raise AccountError(f"user {name!r} exists; change the password with `user passwd`")
            row = UserRow(
                name=name,
                role=role.value,
                password_hash=self.hasher.hash(password),
                session_epoch=0,
                disabled=False,
                created_at=now,
            )
            accounts.add(session, row)
            _audit(session, now, actor, "user add", row, None, {"name": name, "role": role.value})
            return Account.of(row)

    def set_password(self, name: str, password: str, *, actor: str = "cli") -> Account:
        """A new password; sessions opened with the old one end."""
        check_password(password)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            row = accounts.user_by_name(session, name)
            if row is None:
                raise AccountError(f"no user {name!r}")
            row.password_hash = self.hasher.hash(password)
            row.session_epoch += 1
            _audit(session, now, actor, "user passwd", row, None, {"name": name})
            return Account.of(row)

    def list_users(self) -> list[Account]:
        with self.db.reading() as session:
            return [Account.of(row) for row in accounts.list_users(session)]

    def create_token(self, name: str, *, actor: str = "cli") -> str:
        """A new API token for the user, shown once: only its hash is kept."""
        now = datetime.now(UTC)
        prefix = secrets.token_hex(TOKEN_PREFIX_BYTES)
        token = f"mwl_{prefix}_{secrets.token_urlsafe(32)}"
        with self.db.transaction() as session:
            user = accounts.user_by_name(session, name)
            if user is None:
                raise AccountError(f"no user {name!r}")
            accounts.add(
                session,
                ApiTokenRow(
                    user_id=user.id,
                    prefix=prefix,
                    token_hash=self.hasher.hash(token),
                    created_at=now,
                ),
            )
            _audit(session, now, actor, "token add", user, None, {"name": name, "prefix": prefix})
        return token

    # -- checking who is asking (web) -----------------------------------------------------------

    def authenticate(self, name: str, password: str, address: str) -> Account | None:
        """The account if the password is right; ``None`` if not; :class:`LoginThrottled`
        when this name has failed too often from this address lately."""
        now = datetime.now(UTC)
        name = name[:64]
        address = address[:64]
        with self.db.reading() as session:
            failures = accounts.count_failures(session, name, address, now - FAILURE_WINDOW)
            row = accounts.user_by_name(session, name)
        if failures >= MAX_FAILURES:
            raise LoginThrottled(int(FAILURE_WINDOW.total_seconds()))
        ok = self._verify(row.password_hash if row else self._dummy_hash, password)
        with self.db.transaction() as session:
            if not ok or row is None or row.disabled:
                accounts.purge_failures(session, now - FAILURE_WINDOW)
                accounts.add(session, accounts.LoginFailureRow(name=name, address=address, at=now))
                return None
            accounts.clear_failures(session, name, address)
            stored = accounts.get_user(session, row.id)
            assert stored is not None
            stored.last_login_at = now
            if self.hasher.check_needs_rehash(stored.password_hash):
                stored.password_hash = self.hasher.hash(password)
            return Account.of(stored)

    def account(self, user_id: int) -> Account | None:
        with self.db.reading() as session:
            row = accounts.get_user(session, user_id)
            return Account.of(row) if row is not None and not row.disabled else None

    def account_for_token(self, token: str) -> Account | None:
        """The owner of an API token, or ``None`` for a token that is not ours."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "mwl":
            return None
        with self.db.reading() as session:
            found = accounts.token_by_prefix(session, parts[1])
            user = accounts.get_user(session, found.user_id) if found is not None else None
        if found is None or user is None or user.disabled:
            self._verify(self._dummy_hash, token)
            return None
        if not self._verify(found.token_hash, token):
            return None
        return Account.of(user)

    def _verify(self, hashed: str, secret: str) -> bool:
        try:
            return self.hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False


def _audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    user: UserRow,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
) -> None:
    audit(Context(session, now, None, actor), action, "user", user.id, before=before, after=after)
