"""``mwlbroker jobs list | run``: the scheduled jobs, their last runs, and running one now."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mwlbroker.cli.arguments import Commands, add_group, command
from mwlbroker.cli.database import run_on
from mwlbroker.cli.output import CommandFailed, Table, print_json

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.services.jobs import JobRunner


def register(commands: Commands) -> None:
    """Add ``jobs list`` and ``jobs run NAME``."""
    actions = add_group(commands, "jobs", help="the scheduled jobs: expiry, retention, retries")
    command(actions, "list", help="each job: schedule, last run, result", run=list_jobs, json=True)
    running = command(actions, "run", help="run one job now, in this process", run=run, json=True)
    running.add_argument("name", help="the job's name, as `jobs list` shows it")


def _on_jobs(
    args: argparse.Namespace, config: Config, work: Callable[[argparse.Namespace, JobRunner], int]
) -> int:
    """Build the jobs exactly as ``serve`` does, starting nothing, and hand them to ``work`` on
    the prepared database."""
    from mwlbroker.app import Broker

    broker = Broker(config)
    return run_on(broker.db, lambda db: work(args, broker.jobs))


def run(args: argparse.Namespace, config: Config) -> int:
    """Run one job now, in this process, as its schedule would; exit 1 when it failed."""
    return _on_jobs(args, config, _run)


def _run(args: argparse.Namespace, runner: JobRunner) -> int:
    from mwlbroker.services import views

    try:
        done = runner.run(args.name, trigger="manual")
    except LookupError as error:
        raise CommandFailed(str(error), exit_code=2) from error
    if args.json:
        print_json(views.job_run_summary(done))
    else:
        state = "done" if done.ok else "FAILED"
        print(f"{done.job}: {state} in {done.milliseconds:.0f} ms: {done.result}")
    return 0 if done.ok else 1


JOBS = Table(
    "{name:16} {schedule:18} {started_at:20.19} {node:24.24} {milliseconds:>7}  {result}",
    {"name": "JOB", "started_at": "LAST RUN", "milliseconds": "MS"},
)


def list_jobs(args: argparse.Namespace, config: Config) -> int:
    """Each job: its schedule, its last run on any node, and the scheduler lease."""
    return _on_jobs(args, config, _list)


def _list(args: argparse.Namespace, runner: JobRunner) -> int:
    from mwlbroker.services import views

    overview = views.jobs_overview(runner)
    if args.json:
        print_json(overview)
        return 0
    print(JOBS.heading())
    for row in overview["jobs"]:
        last_run: dict[str, Any] | None = row["last_run"]
        if last_run is None:
            print(f"{row['name']:16} {row['schedule']:18} {'never':20}")
            continue
        state = {True: "", False: "FAILED: ", None: "running: "}[last_run["ok"]]
        cells = {
            **row,
            **last_run,
            "milliseconds": f"{last_run['milliseconds']:.0f}",
            "result": f"{state}{last_run['result']}",
        }
        print(JOBS.line(cells))
    if overview["lease"] is not None:
        lease = overview["lease"]
        print(f"scheduler lease: {lease['holder']} until {lease['expires_at']}")
    return 0
