"""``mwlbroker outbound list | show | retry``: the status messages queued for the RIS."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Action, Commands, add_group, add_record_actions
from mwlbroker.cli.database import read_one, with_database
from mwlbroker.cli.output import CommandFailed, Row, Table, print_json, print_record
from mwlbroker.cli.records import print_latest

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.store.db import Database


def register(commands: Commands) -> None:
    """Add ``outbound list``, ``outbound show ID`` and ``outbound retry ID``."""
    actions = add_group(commands, "outbound", help="the status messages queued for the RIS")
    listed = add_record_actions(
        actions,
        listing=Action("newest outbound messages first", list_outbound),
        statuses=("pending", "sent", "failed"),
        showing=Action("one outbound message: status, ACK, segments", show_outbound),
        retrying=Action("send a failed (or waiting) message again, from attempt one", retry),
    )
    listed.add_argument("--destination", metavar="NAME", help="only this destination")


def _cells(summary: Row) -> Row:
    return {
        **summary,
        "created_at": str(summary["created_at"]),
        "destination": str(summary["destination"]),
        "last_error": str(summary["last_error"] or ""),
    }


OUTBOUND = Table(
    "{id:>7}  {created_at:19.19}  {destination:12.12} {message_type:8} {order_status:5} "
    "{control_id:15} {status:8} {attempts:>5}  {last_error:.60}",
    {
        "created_at": "CREATED (UTC)",
        "message_type": "TYPE",
        "order_status": "ORC-5",
        "control_id": "CONTROL ID",
        "attempts": "TRIES",
        "last_error": "ERROR",
    },
    _cells,
)


@with_database
def list_outbound(args: argparse.Namespace, config: Config, db: Database) -> int:
    """The newest outbound messages, filtered by status and destination."""
    from mwlbroker.services.views import outbound_summary
    from mwlbroker.store import outbound

    return print_latest(
        args, db, outbound.latest, outbound_summary, OUTBOUND, destination=args.destination
    )


@with_database
def show_outbound(args: argparse.Namespace, config: Config, db: Database) -> int:
    """One outbound message: its state, its segments, and the destination's answer."""
    from mwlbroker.services.views import message_segments, outbound_summary
    from mwlbroker.store import outbound

    row = read_one(db, outbound.get, args.id, "outbound message")
    summary = outbound_summary(row)
    summary["segments"] = message_segments(row.payload.decode("utf-8", errors="replace"))
    summary["ack"] = row.ack
    if args.json:
        print_json(summary)
        return 0
    print_record(summary, leave_out=("ack",))
    if row.ack:
        print()
        print("answer:")
        for segment in row.ack.replace("\n", "\r").split("\r"):
            if segment:
                print(f"    {segment}")
    return 0


@with_database
def retry(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Send a failed (or waiting) message again, from attempt one, as soon as the sender runs."""
    from mwlbroker.app import build_outbound

    try:
        row = build_outbound(config, db).retry(args.id)
    except (LookupError, ValueError) as error:
        raise CommandFailed(str(error)) from error
    print(f"outbound message {row.id} to {row.destination}: pending, due now")
    return 0
