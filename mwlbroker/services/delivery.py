"""The shape every queue that leaves the broker shares: wake on commit, claim, deliver, back off.

The outbound HL7 queue and the forward queue differ in what they send and how, but not in how
they wait for work: a worker sleeps until a commit wakes it (or a poll interval passes, for what
another node queued), claims what is due, tries to deliver it, and backs off while its peer
cannot be reached. Keeping that loop in one place keeps the two from drifting apart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sized
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from mwlbroker.domain.outbound import DeliveryStatus
from mwlbroker.store.db import Session
from mwlbroker.store.forward import ForwardRow
from mwlbroker.store.outbound import OutboundRow
from mwlbroker.store.rows import get_locked

POLL_SECONDS = 1.0  # how often a worker looks for due work when nobody woke it

log = logging.getLogger("mwlbroker.delivery")

W = TypeVar("W")
Q = TypeVar("Q", OutboundRow, ForwardRow)  # a row of one of the queues


@dataclass(frozen=True, kw_only=True)
class Retries:
    """How a queue retries a peer that cannot be reached: the settings both queues declare."""

    retry_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    max_attempts: int = 10  # refused attempts before a message or an instance is given up

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row: doubling, up to the maximum."""
        return min(self.retry_seconds * 2 ** max(failures - 1, 0), self.retry_max_seconds)


def release(session: Session, table: type[Q], row_id: int, what: str, *, done: str) -> Q:
    """Put the queued row the user named back in line, due now with its attempts from zero.

    Raises LookupError for an unknown id and ValueError (``<what> <id> was already <done>``)
    for one already sent. The caller wakes the workers after its commit.
    """
    row = get_locked(session, table, row_id, what)
    if row.status == DeliveryStatus.SENT:
        raise ValueError(f"{what} {row_id} was already {done}")
    row.status = DeliveryStatus.PENDING.value
    row.attempts = 0
    row.next_attempt_at = datetime.now(UTC)
    return row


class Wakeup:
    """A generation counter that workers can sleep on until something new is committed.

    A counter rather than an Event: a worker that was busy while a commit woke it still sees
    that the generation moved and looks again, instead of missing the signal.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def wake(self) -> None:
        """Tell the workers that work was committed (called after commit)."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float = POLL_SECONDS) -> int:
        """Sleep until woken after generation ``seen`` or ``timeout``; returns the generation."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen, timeout)
            return self._generation

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation


class DeliveryWorker(Generic[W]):
    """A thread that claims due work and delivers it until stopped.

    ``claim`` returns the work taken for one attempt (None or an empty batch when nothing is
    due); ``deliver`` returns False when the peer could not be reached, which makes the worker
    wait ``backoff(failures in a row)`` before the next attempt. Neither may kill the thread:
    the queue is in the database, so an error is logged and the work is tried again later.
    """

    def __init__(
        self,
        name: str,
        wakeup: Wakeup,
        claim: Callable[[], W | None],
        deliver: Callable[[W], bool],
        backoff: Callable[[int], float],
    ) -> None:
        self.name = name
        self._wakeup = wakeup
        self._claim = claim
        self._deliver = deliver
        self._backoff = backoff
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        """True once stop was asked: a long batch checks it between items."""
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the work in hand."""
        self._stopping.set()
        self._wakeup.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0  # unreachable peer in a row, for the back-off
        seen = self._wakeup.generation
        while not self._stopping.is_set():
            try:
                work = self._claim()
            except Exception as error:  # the database is restarting, or gone
                failures += 1
                log.error("%s: cannot read the queue: %s", self.name, error)
                self._stopping.wait(self._backoff(failures))
                continue
            if work is None or (isinstance(work, Sized) and len(work) == 0):
                seen = self._wakeup.wait(seen, POLL_SECONDS)
                continue
            try:
                reached = self._deliver(work)
            except Exception:  # never let the worker die: the queue is kept, log and go on
                log.exception("%s: delivery failed", self.name)
                reached = False
            failures = 0 if reached else failures + 1
            if not reached:
                self._stopping.wait(self._backoff(failures))
