"""What a test needs from the machine: PostgreSQL and the DCMTK programs, skipped or failed.

PostgreSQL is expected at MWLBROKER_TEST_POSTGRES_URL (default: the ``test`` database on
127.0.0.1:5432 as ``postgres``). Without it the PostgreSQL variants are skipped with the reason,
unless CI=true or MWLBROKER_TEST_REQUIRE_POSTGRES=1, where they fail instead.
"""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get(
    "MWLBROKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CI", "").lower() == "true" or os.environ.get(
    "MWLBROKER_TEST_REQUIRE_POSTGRES", ""
) not in ("", "0")


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any driver or network failure means "not available"
        return str(error).splitlines()[0]
    return None


_POSTGRES_STATE: dict[str, str | None] = {}


def postgres_or_skip() -> None:
    """Skip when PostgreSQL cannot be reached (asked once per run); in CI, fail."""
    if "problem" not in _POSTGRES_STATE:
        _POSTGRES_STATE["problem"] = _postgres_problem()
    problem = _POSTGRES_STATE["problem"]
    if problem is None:
        return
    message = f"PostgreSQL not reachable at {POSTGRES_URL}: {problem}"
    if REQUIRE_POSTGRES:
        pytest.fail(message + " (required here: CI or MWLBROKER_TEST_REQUIRE_POSTGRES)")
    pytest.skip(message)


def require_tools(*tools: str) -> None:
    """Skip without the named DCMTK (or other) programs; in CI, where they must be, fail."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install dcmtk; ./run-tests does)"
    if REQUIRE_POSTGRES:  # CI: the README's test command installs them, so missing is a fault
        pytest.fail(message)
    pytest.skip(message)
