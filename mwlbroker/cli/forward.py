"""``mwlbroker forward list | retry``: where the instances for the PACS stand."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Action, Commands, add_group, add_record_actions
from mwlbroker.cli.database import with_database
from mwlbroker.cli.output import CommandFailed, Row, Table
from mwlbroker.cli.records import print_latest

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.store.db import Database
    from mwlbroker.store.tables import ForwardRow


def register(commands: Commands) -> None:
    """Add ``forward list`` and ``forward retry ID``."""
    actions = add_group(commands, "forward", help="received instances forwarded to the PACS")
    add_record_actions(
        actions,
        listing=Action("newest forward tasks first", list_forward),
        statuses=("pending", "sent", "failed"),
        retrying=Action("forward a failed instance again", retry),
    )


TASKS = Table(
    "{id:>7}  {status:8} {attempts:>5}  {sop_instance_uid:64}  {outcome}",
    {"attempts": "TRIES", "sop_instance_uid": "SOP INSTANCE UID", "outcome": "ERROR / ANSWER"},
    lambda row: {**row, "outcome": row["last_error"] or row["answer"] or ""},
)


def _task_summary(found: tuple[ForwardRow, str, int]) -> Row:
    """A forward task with the SOP Instance UID and study of the instance it sends."""
    task, uid, study_id = found
    return {
        "id": task.id,
        "created_at": task.created_at.isoformat(),
        "sop_instance_uid": uid,
        "study_id": study_id,
        "status": task.status,
        "attempts": task.attempts,
        "answer": task.answer,
        "last_error": task.last_error,
    }


@with_database
def list_forward(args: argparse.Namespace, config: Config, db: Database) -> int:
    """The newest forward tasks, with the instance each sends."""
    from mwlbroker.store import forward

    return print_latest(args, db, forward.latest_with_instances, _task_summary, TASKS)


@with_database
def retry(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Forward a failed instance again, as soon as the forwarder runs."""
    from mwlbroker.app import build_forward
    from mwlbroker.store.files import InstanceFiles

    service = build_forward(config, db, InstanceFiles(config["storage.dir"]))
    try:
        task = service.retry(args.id)
    except (LookupError, ValueError) as error:
        raise CommandFailed(str(error)) from error
    print(f"forward task {task.id}: pending, due now")
    return 0
