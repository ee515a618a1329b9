"""Queries on the accounts of the web page and API: users, API tokens, failed logins."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mwlbroker.store.insert import insert_row
from mwlbroker.store.tables import ApiTokenRow, LoginFailureRow, UserRow

__all__ = [
    "ApiTokenRow",
    "LoginFailureRow",
    "UserRow",
    "add",
    "clear_failures",
    "count_failures",
    "get_user",
    "list_users",
    "purge_failures",
    "token_by_prefix",
    "user_by_name",
]


def add(session: Session, row: UserRow | ApiTokenRow | LoginFailureRow) -> None:
    """Insert a row and give it its id."""
    insert_row(session, row)


def get_user(session: Session, user_id: int) -> UserRow | None:
    return session.get(UserRow, user_id)


def user_by_name(session: Session, name: str) -> UserRow | None:
    return session.scalars(select(UserRow).where(UserRow.name == name)).first()


def list_users(session: Session) -> Sequence[UserRow]:
    return session.scalars(select(UserRow).order_by(UserRow.name)).all()


def token_by_prefix(session: Session, prefix: str) -> ApiTokenRow | None:
    return session.scalars(select(ApiTokenRow).where(ApiTokenRow.prefix == prefix)).first()


def count_failures(session: Session, name: str, address: str, since: datetime) -> int:
    """Failed logins for this name from this address since a moment."""
    query = select(func.count()).where(
        LoginFailureRow.name == name,
        LoginFailureRow.address == address,
        LoginFailureRow.at >= since,
    )
    return int(session.execute(query).scalar() or 0)


def clear_failures(session: Session, name: str, address: str) -> None:
    """Forget the failures of a name and address: the right password was given."""
    session.execute(
        delete(LoginFailureRow).where(
            LoginFailureRow.name == name, LoginFailureRow.address == address
        )
    )


def purge_failures(session: Session, before: datetime) -> None:
    """Drop failures too old to count, so the table stays small."""
    session.execute(delete(LoginFailureRow).where(LoginFailureRow.at < before))
