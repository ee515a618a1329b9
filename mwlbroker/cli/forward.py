"""``mwlbroker forward list | retry``: where the instances for the PACS stand."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Action, Commands, add_group, add_record_actions
from mwlbroker.cli.database import with_database
from mwlbroker.cli.output import CommandFailed, Table, print_list

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.store.db import Database


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


@with_database
def list_forward(args: argparse.Namespace, config: Config, db: Database) -> int:
    """The newest forward tasks, with the instance each sends."""
    from mwlbroker.store import forward

    with db.reading() as session:
        found = forward.latest_with_instances(session, status=args.status, limit=args.limit)
    rows = [
        {
            "id": task.id,
            "created_at": task.created_at.isoformat(),
            "sop_instance_uid": uid,
            "study_id": study_id,
            "status": task.status,
            "attempts": task.attempts,
            "answer": task.answer,
            "last_error": task.last_error,
        }
        for task, uid, study_id in found
    ]
    return print_list(rows, TASKS, as_json=args.json, ascii=True)


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
