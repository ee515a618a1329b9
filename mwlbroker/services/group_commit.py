"""Group commit: work submitted at the same time by several threads shares one transaction.

A durable commit costs a transaction's set-up, its statements' bookkeeping and an fsync (or a
round trip to PostgreSQL); messages arriving together on several connections need not pay it
once each. There is no committer thread: the first caller to find nobody committing becomes
the leader, takes everything queued so far (its own item included) and runs it as one batch;
callers arriving meanwhile queue up and wait; when the leader is done it hands every waiter its
own result, and one of those still queued becomes the next leader. A lone caller therefore
commits at once, on its own thread, with no hand-over; under load the batches grow by
themselves. Every caller returns only after the batch holding its item has been run, so a
caller that answers "accepted" after :meth:`GroupCommit.submit` answers after the commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Waiting(Generic[ItemT, ResultT]):
    __slots__ = ("done", "item", "outcome")

    def __init__(self, item: ItemT) -> None:
        self.item = item
        self.done = False
        self.outcome: ResultT | BaseException | None = None


class GroupCommit(Generic[ItemT, ResultT]):
    """Combines concurrent submissions into batches run by whichever caller is free to lead."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[ItemT]], Sequence[ResultT | BaseException]],
        *,
        max_batch: int = 64,
    ) -> None:
        """``run_batch`` runs items in one transaction: one result or exception per item."""
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._condition = threading.Condition()
        self._queue: list[_Waiting[ItemT, ResultT]] = []
        self._leading = False
        self.batches = 0  # batches run so far, for tests and metrics
        self.items = 0  # items run so far

    @property
    def waiting(self) -> int:
        """Items queued for the next batch (not counting the batch being run)."""
        with self._condition:
            return len(self._queue)

    def submit(self, item: ItemT) -> ResultT:
        """Run ``item`` in the next batch and return its result once that batch is committed."""
        waiting: _Waiting[ItemT, ResultT] = _Waiting(item)
        with self._condition:
            self._queue.append(waiting)
        while True:
            with self._condition:
                while self._leading and not waiting.done:
                    self._condition.wait()
                if waiting.done:
                    break
                # Nobody is committing: lead, with the oldest items queued (ours among them
                # unless more than a batch is waiting; then we lead again).
                self._leading = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            self._lead(batch)
        outcome = waiting.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    def submit_many(self, items: Sequence[ItemT]) -> list[ResultT | BaseException]:
        """Run ``items`` in order and return each one's result (or exception) once all are
        committed: a caller with many items (a received HL7 batch) queues them together, so
        they fill whole batches instead of committing one by one."""
        waiting = [_Waiting[ItemT, ResultT](item) for item in items]
        if not waiting:
            return []
        with self._condition:
            self._queue.extend(waiting)
        last = waiting[-1]  # batches run in queue order: when the last is done, all are
        while True:
            with self._condition:
                while self._leading and not last.done:
                    self._condition.wait()
                if last.done:
                    break
                self._leading = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            self._lead(batch)
        return [entry.outcome for entry in waiting]  # type: ignore[misc]

    def _lead(self, batch: list[_Waiting[ItemT, ResultT]]) -> None:
        try:
            outcomes: Sequence[ResultT | BaseException] = self._run_batch(
                [waiting.item for waiting in batch]
            )
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(outcomes)} results")
        except BaseException as error:  # every waiter must hear of it
            outcomes = [error] * len(batch)
        with self._condition:
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
                waiting.done = True
            self._leading = False
            self.batches += 1
            self.items += len(batch)
            self._condition.notify_all()
