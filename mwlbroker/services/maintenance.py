"""The broker's housekeeping: expire stale worklist items, purge by retention, check health.

Each function is one scheduled job's work (see services/jobs.py), safe to run again or on
another node at the same time: every change is a conditional statement in a transaction, and a
second run finds nothing left to do. Each returns one line saying what it did, for the job's
record and the dashboard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mwlbroker.domain.transitions import NOT_STARTED, step_transition
from mwlbroker.domain.worklist import StepStatus
from mwlbroker.services.step_status import move_step
from mwlbroker.services.worklist import Context
from mwlbroker.store import jobs as job_store
from mwlbroker.store import retention, worklist_query
from mwlbroker.store import worklist as store
from mwlbroker.store.db import Database, Session
from mwlbroker.store.files import InstanceFiles

log = logging.getLogger("mwlbroker.maintenance")

BATCH = 500  # rows per transaction: a long purge never holds the database for long

# Steps nobody has started yet; a STARTED step is being performed and never expires.
_EXPIRABLE = tuple(sorted(status.value for status in NOT_STARTED))


@dataclass(frozen=True)
class RetentionPolicy:
    """The [retention] settings: ages in hours and days, 0 meaning "keep for ever"."""

    expire_steps_hours: int = 72
    messages_days: int = 365
    outbound_days: int = 90
    mpps_days: int = 365
    studies_days: int = 365
    query_log_days: int = 30
    job_runs_days: int = 30


class MaintenanceService:
    """Expiry, retention and the database check."""

    def __init__(
        self, db: Database, policy: RetentionPolicy, files: InstanceFiles | None = None
    ) -> None:
        self.db = db
        self.policy = policy
        self.files = files

    def expire_steps(self, now: datetime | None = None) -> str:
        """Take steps whose scheduled start is more than ``expire_steps_hours`` past off the
        worklist (status EXPIRED), each with a line in its order's history.

        The start is the site's local date and time as the RIS sent it, so the cut-off is
        local time too.
        """
        hours = self.policy.expire_steps_hours
        if hours <= 0:
            return "expiry is off (retention.expire_steps_hours = 0)"
        now = now or datetime.now(UTC)
        cutoff = (now.astimezone() - timedelta(hours=hours)).strftime("%Y%m%d%H%M%S")
        expired = 0
        while True:
            with self.db.transaction() as session:
                steps = retention.steps_to_expire(session, _EXPIRABLE, cutoff, BATCH)
                ctx = Context(session, now, None, "broker: expire_steps job")
                for step in steps:
                    change = step_transition(
                        StepStatus(step.status), StepStatus.EXPIRED, only_from=NOT_STARTED
                    )
                    if change is None:
                        continue
                    order = store.get_order(session, step.order_id)
                    patient = store.get_patient(session, step.patient_pk)
                    assert order is not None and patient is not None
                    late = f"scheduled start {step.start_datetime} is more than {hours} h past"
                    move_step(ctx, order, patient, step, change, "expired", detail=late)
            expired += len(steps)
            if len(steps) < BATCH:
                break
        if expired:
            log.info("expired %d step(s) scheduled before %s", expired, cutoff)
        return f"{expired} step(s) expired (scheduled before {cutoff})"

    def purge(self, now: datetime | None = None) -> str:
        """Delete what is older than its retention age; audit records are never purged."""
        now = now or datetime.now(UTC)
        policy = self.policy
        done: list[str] = []

        def days_ago(days: int) -> datetime:
            return now - timedelta(days=days)

        def batches(
            purge_one: Callable[[Session, datetime, int], int], days: int, what: str
        ) -> None:
            if days <= 0:
                return
            total = 0
            while True:
                with self.db.transaction() as session:
                    count = purge_one(session, days_ago(days), BATCH)
                total += count
                if count < BATCH:
                    break
            done.append(f"{what}: {total}")

        batches(retention.purge_messages, policy.messages_days, "messages")
        batches(retention.purge_outbound, policy.outbound_days, "outbound messages")
        batches(retention.purge_performed_steps, policy.mpps_days, "MPPS")
        if policy.studies_days > 0:
            studies = files = 0
            while True:
                with self.db.transaction() as session:
                    count, paths = retention.purge_studies(
                        session, days_ago(policy.studies_days), BATCH
                    )
                # The rows are gone for good: only now may their files go.
                if self.files is not None:
                    for path in paths:
                        self.files.delete(path)
                        files += 1
                studies += count
                if count < BATCH:
                    break
            done.append(f"studies: {studies} ({files} files)")
        with self.db.transaction() as session:
            queries = worklist_query.purge_query_log(session, days_ago(policy.query_log_days))
            runs = job_store.purge_runs(session, days_ago(policy.job_runs_days))
        done.append(f"logged queries: {queries}, job runs: {runs}")
        summary = "purged " + ", ".join(done)
        log.info(summary)
        return summary

    def health_check(self) -> str:
        """Reach the database and time it; raises when it cannot be reached."""
        started = time.perf_counter()
        self.db.ping()
        return f"database reachable ({(time.perf_counter() - started) * 1000:.1f} ms)"
