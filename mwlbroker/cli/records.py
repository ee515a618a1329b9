"""The ``list`` of a kind of stored record (received messages, outbound messages, forward tasks):
the store's newest rows, filtered as the command line asks, printed as a table or as JSON."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mwlbroker.cli.database import read
from mwlbroker.cli.output import Row, Table, print_list

if TYPE_CHECKING:
    from mwlbroker.store.db import Database

T = TypeVar("T")


def print_latest(
    args: argparse.Namespace,
    db: Database,
    latest: Callable[..., Sequence[T]],
    summary: Callable[[T], Row],
    table: Table,
    **filters: Any,
) -> int:
    """What ``list`` prints: the rows ``latest`` reads under ``--status``, ``--limit`` and the
    kind's own ``filters``, each as its ``summary``; the JSON is ASCII, as it has always been
    for the scripts that read it."""
    rows = read(
        db, lambda session: latest(session, status=args.status, limit=args.limit, **filters)
    )
    return print_list([summary(r) for r in rows], table, as_json=args.json, ascii=True)
