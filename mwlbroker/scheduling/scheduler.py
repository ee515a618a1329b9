"""Fire the jobs on their schedules with APScheduler, on threads of the serve process.

APScheduler only says *when*; whether this node runs a job (the lease) and the record of the
run belong to :class:`~mwlbroker.services.jobs.JobRunner`. Chores every node does for itself
(settling the studies whose images went quiet) run here too, unrecorded, on short intervals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mwlbroker.domain.schedule import Schedule
from mwlbroker.services.jobs import JobRunner

log = logging.getLogger("mwlbroker.scheduler")

_HEARTBEAT = "lease-heartbeat"


@dataclass(frozen=True)
class Chore:
    """Something every node does for itself every ``seconds`` (not leased, not recorded)."""

    name: str
    seconds: float
    work: Callable[[], object]


def trigger_of(schedule: Schedule) -> BaseTrigger | None:
    if schedule.kind == "interval":
        return IntervalTrigger(seconds=schedule.seconds)
    if schedule.kind == "cron":
        return CronTrigger.from_crontab(schedule.cron)
    return None


class Scheduler:
    """The serve process's scheduler: job firings, the lease heartbeat, and chores."""

    def __init__(self, runner: JobRunner, chores: Sequence[Chore] = ()) -> None:
        self.runner = runner
        self.chores = tuple(chores)
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
        )

    def start(self) -> None:
        self.runner.heartbeat()  # a single node runs the jobs from the start
        self._scheduler.add_job(
            self.runner.heartbeat,
            IntervalTrigger(seconds=max(self.runner.lease_seconds / 3, 0.5)),
            id=_HEARTBEAT,
        )
        for job in self.runner.jobs.values():
            trigger = trigger_of(job.schedule)
            if trigger is not None:
                self._scheduler.add_job(
                    self.runner.run_scheduled, trigger, args=[job.name], id=job.name
                )
        for chore in self.chores:
            self._scheduler.add_job(
                _logged(chore), IntervalTrigger(seconds=chore.seconds), id=chore.name
            )
        self._scheduler.start()
        log.info(
            "scheduler started on %s: %s",
            self.runner.node,
            ", ".join(f"{job.name} {job.schedule}" for job in self.runner.jobs.values()),
            extra={"event": "scheduler_started", "leader": self.runner.leader},
        )

    def stop(self) -> None:
        """Wait for a job in hand to finish, then hand the lease over."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self.runner.release()

    def next_runs(self) -> dict[str, datetime | None]:
        """When each scheduled job fires next on this node (None: off)."""
        runs: dict[str, datetime | None] = {name: None for name in self.runner.jobs}
        if self._scheduler.running:
            for name in runs:
                scheduled = self._scheduler.get_job(name)
                if scheduled is not None:
                    runs[name] = scheduled.next_run_time
        return runs


def _logged(chore: Chore) -> Callable[[], None]:
    def run() -> None:
        try:
            chore.work()
        except Exception:  # the database may be restarting: the next interval tries again
            log.exception("%s failed", chore.name)

    return run
