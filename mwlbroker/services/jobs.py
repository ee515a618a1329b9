"""Scheduled jobs: what each one is, who may run it, and the record of every run.

Several broker nodes may share one database. The scheduled jobs run on one of them at a time:
the node that holds the ``scheduler`` lease, which it renews every third of
``jobs.lease_seconds``. A node that dies stops renewing, and another takes the lease over once
it has run out; a node stopping gracefully lets it go at once. Before each run the runner
renews the lease, so a node that was paused (and lost it) does not run a job twice. Every run
is recorded (node, start, duration, result) for the dashboard, /metrics and ``mwlbroker jobs``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mwlbroker.domain.schedule import Schedule
from mwlbroker.store import jobs as store
from mwlbroker.store.db import Database
from mwlbroker.store.jobs import JobRunRow

log = logging.getLogger("mwlbroker.jobs")

LEASE = "scheduler"


def node_name() -> str:
    """This process, as other nodes and the dashboard see it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    schedule: Schedule
    work: Callable[[], str]  # does the job; returns one line saying what it did


@dataclass(frozen=True)
class JobRun:
    """One run, as the CLI, the API and the dashboard show it."""

    id: int
    job: str
    node: str
    trigger: str
    started_at: datetime
    milliseconds: float
    ok: bool | None
    result: str

    @classmethod
    def of(cls, row: JobRunRow) -> JobRun:
        return cls(
            row.id,
            row.job,
            row.node,
            row.trigger,
            row.started_at,
            row.milliseconds,
            row.ok,
            row.result,
        )


class JobRunner:
    """Runs jobs by name, on this node only while it holds the lease."""

    def __init__(
        self,
        db: Database,
        jobs: Sequence[Job],
        *,
        lease_seconds: float = 30.0,
        node: str | None = None,
    ) -> None:
        self.db = db
        self.jobs = {job.name: job for job in jobs}
        self.lease_seconds = lease_seconds
        self.node = node or node_name()
        self._leader = False
        self._lock = threading.Lock()  # one run of a job at a time in this process

    @property
    def leader(self) -> bool:
        return self._leader

    def heartbeat(self) -> bool:
        """Take or renew the lease; True while this node runs the scheduled jobs."""
        now = datetime.now(UTC)
        try:
            with self.db.transaction() as session:
                held = store.take_lease(
                    session, LEASE, self.node, now, now + timedelta(seconds=self.lease_seconds)
                )
        except Exception as error:  # the database is away: assume nothing, keep trying
            log.warning("cannot renew the scheduler lease: %s", error)
            held = False
        if held != self._leader:
            log.info(
                "this node %s the scheduled jobs",
                "now runs" if held else "no longer runs",
                extra={"event": "scheduler_lease", "node": self.node, "held": held},
            )
        self._leader = held
        return held

    def release(self) -> None:
        """Let another node take over at once (graceful stop)."""
        if not self._leader:
            return
        self._leader = False
        try:
            with self.db.transaction() as session:
                store.release_lease(session, LEASE, self.node, datetime.now(UTC))
        except Exception as error:
            log.warning("cannot release the scheduler lease: %s", error)

    def run_scheduled(self, name: str) -> JobRun | None:
        """A scheduled firing: run ``name`` if this node holds the lease, else do nothing."""
        if not self.heartbeat():
            return None
        return self.run(name, trigger="schedule")

    def run(self, name: str, *, trigger: str = "manual") -> JobRun:
        """Run a job now and record it; an error is recorded as the run's result, not raised."""
        job = self.jobs.get(name)
        if job is None:
            raise LookupError(f"no job named {name!r}; jobs: {', '.join(sorted(self.jobs))}")
        with self._lock:
            started_at = datetime.now(UTC)
            with self.db.transaction() as session:
                row = store.add_run(
                    session,
                    JobRunRow(
                        job=name,
                        node=self.node,
                        trigger=trigger,
                        started_at=started_at,
                        milliseconds=0.0,
                        ok=None,
                        result="running",
                    ),
                )
                run_id = row.id
            started = time.perf_counter()
            try:
                result, ok = job.work(), True
            except Exception as error:
                log.exception("job %s failed", name)
                result, ok = f"{type(error).__name__}: {error}", False
            elapsed = (time.perf_counter() - started) * 1000
            with self.db.transaction() as session:
                finished = store.get_run(session, run_id)
                assert finished is not None
                row = finished
                row.finished_at = datetime.now(UTC)
                row.milliseconds = elapsed
                row.ok = ok
                row.result = result[:4000]
                run = JobRun.of(row)
        log.info(
            "job %s %s in %.0f ms: %s",
            name,
            "done" if ok else "FAILED",
            elapsed,
            result,
            extra={"event": "job_run", "job": name, "ok": ok, "ms": round(elapsed, 1)},
        )
        return run

    def last_runs(self) -> dict[str, JobRun]:
        with self.db.reading() as session:
            return {name: JobRun.of(row) for name, row in store.last_runs(session).items()}

    def recent_runs(self, job: str | None = None, limit: int = 50) -> list[JobRun]:
        with self.db.reading() as session:
            return [JobRun.of(row) for row in store.runs(session, job=job, limit=limit)]

    def lease_holder(self) -> tuple[str, datetime | None] | None:
        """Who holds the scheduler lease and until when, if anyone ever did."""
        with self.db.reading() as session:
            row = store.lease(session, LEASE)
            return None if row is None else (row.holder, row.expires_at)
