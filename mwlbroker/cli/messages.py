"""``mwlbroker messages list | show | reprocess``: the store of received HL7 messages."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Action, Commands, add_group, add_record_actions
from mwlbroker.cli.database import read, read_one, with_database
from mwlbroker.cli.output import CommandFailed, Row, Table, print_json, print_record
from mwlbroker.cli.records import print_latest

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.store.db import Database


def register(commands: Commands) -> None:
    """Add ``messages list``, ``messages show ID`` and ``messages reprocess ID``."""
    actions = add_group(commands, "messages", help="the message store")
    listed = add_record_actions(
        actions,
        listing=Action("newest messages first", list_messages),
        statuses=("processed", "failed", "rejected"),
        showing=Action(
            "one message: header, status, error, the orders it made, segments", show_message
        ),
        retrying=Action("apply a failed or rejected message again", reprocess, name="reprocess"),
    )
    listed.add_argument("--control-id", help="only messages with this MSH-10")


def _cells(summary: Row) -> Row:
    return {
        **summary,
        "control_id": summary["control_id"] or "-",
        "error": summary["error"] or "",
    }


MESSAGES = Table(
    "{id:>7}  {received_at:19.19}  {type:8} {control_id:20.20} {sender:20.20} {status:9} "
    "{ack_code:4} {error:.60}",
    {"received_at": "RECEIVED (UTC)", "control_id": "CONTROL ID", "ack_code": "ACK"},
    _cells,
)


@with_database
def list_messages(args: argparse.Namespace, config: Config, db: Database) -> int:
    """The newest messages, filtered by status and MSH-10."""
    from mwlbroker.services.views import message_summary
    from mwlbroker.store import messages

    return print_latest(
        args, db, messages.latest, message_summary, MESSAGES, control_id=args.control_id
    )


@with_database
def show_message(args: argparse.Namespace, config: Config, db: Database) -> int:
    """One message: what the store knows of it, and its segments as received."""
    from mwlbroker.services.views import (
        describe_orders,
        message_orders,
        message_segments,
        message_summary,
        message_text,
    )
    from mwlbroker.store import messages

    found = read_one(db, messages.get, args.id, "message")
    summary = message_summary(found)
    orders = read(db, lambda session: message_orders(session, found.id))
    summary["orders"] = orders if args.json else describe_orders(orders)
    summary["segments"] = message_segments(message_text(found))
    if args.json:
        print_json(summary)
        return 0
    record = dict(summary)
    # One "warning" line each, where people read them: "OBR-16: RequestingPhysician ...".
    record["warnings"] = len(summary["warnings"]) or None
    for number, warning in enumerate(summary["warnings"], 1):
        where = f"{warning['location']}: " if warning.get("location") else ""
        record[f"warning {number}"] = f"{where}{warning['text']}"
    record["segments"] = record.pop("segments")
    print_record(record)
    return 0


@with_database
def reprocess(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Apply a failed or rejected message again, with the mappings as they are now."""
    from mwlbroker.app import build_ingest

    service = build_ingest(config, db)
    try:
        result = service.reprocess(args.id)
    except (LookupError, ValueError) as error:
        raise CommandFailed(str(error)) from error
    print(
        f"message {args.id}: {result.status} ({result.ack_code})"
        + (f" - {result.error}" if result.error else "")
    )
    for warning in result.warnings:
        print(f"  warning at {warning.location or '?'}: {warning.text}")
    return 0 if result.ack_code == "AA" else 1
