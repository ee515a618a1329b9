"""Waiting for a state by polling it against a deadline, never by sleeping a guessed time.

A fixed sleep is either too short on a loaded machine (a flaky failure) or too long everywhere
else (a slow suite). Polling returns as soon as the condition holds and, when it never does,
fails saying what it was waiting for.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _described(predicate: Callable[[], object], what: str | None) -> str:
    """``what``, or the source line of the predicate (a lambda says what it checks)."""
    if what:
        return what
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__name__", repr(predicate))


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    *,
    what: str | None = None,
    interval: float = 0.02,
) -> T:
    """Poll until ``predicate()`` is truthy and return its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not met within {timeout} s: {_described(predicate, what)} (last: {value!r})"
            )
        time.sleep(interval)  # the polling interval, not a guess at readiness


def stays_true(
    predicate: Callable[[], object],
    seconds: float,
    *,
    what: str | None = None,
    interval: float = 0.05,
) -> None:
    """Check ``predicate()`` throughout ``seconds``; fail the moment it turns false.

    For what must *not* happen (a message sent twice, a slot taken again): no event says that
    nothing more will come, so the test watches for a window it names, and fails as soon as
    the wrong thing happens rather than at the end of a blind sleep.
    """
    deadline = time.monotonic() + seconds
    while True:
        if not predicate():
            raise AssertionError(
                f"no longer true within {seconds} s: {_described(predicate, what)}"
            )
        if time.monotonic() > deadline:
            return
        time.sleep(interval)
