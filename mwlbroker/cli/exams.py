"""``mwlbroker mpps list | link`` and ``mwlbroker studies list | link``: what the modalities did,
what of it matched no order, and linking it to its scheduled step by hand."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mwlbroker.cli.arguments import (
    Action,
    Commands,
    actor,
    add_actor_flag,
    add_config_flag,
    add_group,
    add_json_flag,
    add_record_actions,
)
from mwlbroker.cli.database import with_database
from mwlbroker.cli.output import CommandFailed, error_text, print_json

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.services.reconciliation import ReconciliationService
    from mwlbroker.store.db import Database

MPPS_COLUMNS = (
    "id",
    "status",
    "scheduled",
    "station_ae",
    "patient_id",
    "accession_number",
    "sop_instance_uid",
)
STUDY_COLUMNS = (
    "id",
    "order_id",
    "patient_id",
    "accession_number",
    "modalities",
    "series",
    "instances",
    "study_instance_uid",
)


def register(commands: Commands) -> None:
    """Add ``mpps list``, ``mpps link``, ``studies list`` and ``studies link``."""
    mpps = add_group(commands, "mpps", help="performed procedure steps the modalities reported")
    listed = add_record_actions(mpps, listing=Action("newest performed steps first", list_mpps))
    listed.add_argument(
        "--unscheduled", action="store_true", help="only those matching no scheduled step"
    )
    _add_link(mpps, "performed step")
    studies = add_group(commands, "studies", help="studies received over C-STORE")
    listed = add_record_actions(studies, listing=Action("newest studies first", list_studies))
    listed.add_argument("--unmatched", action="store_true", help="only those matching no order")
    _add_link(studies, "study")


def _add_link(actions: Commands, noun: str) -> None:
    link_ = actions.add_parser(
        "link", help=f"link an unmatched {noun} to a scheduled step (audited)"
    )
    link_.set_defaults(run=link)
    add_config_flag(link_)
    link_.add_argument("id", type=int, metavar="ID", help=f"the {noun}'s id (from list)")
    link_.add_argument("steps", type=int, nargs="*", metavar="STEP_ID", help="scheduled step id(s)")
    link_.add_argument("--accession", help="link to the step with this Accession Number")
    add_actor_flag(link_)
    add_json_flag(link_)


def _print_rows(
    args: argparse.Namespace, rows: list[dict[str, Any]], columns: tuple[str, ...]
) -> int:
    """The rows as JSON, or a line a row of the chosen columns, an absent value as ``-``."""
    if args.json:
        print_json(rows)
        return 0
    print("  ".join(column.upper() for column in columns))
    for row in rows:
        print("  ".join("-" if row[c] is None else str(row[c]) for c in columns))
    return 0


@with_database
def list_mpps(args: argparse.Namespace, config: Config, db: Database) -> int:
    """The newest performed steps, or only those that matched no scheduled step."""
    from mwlbroker.services.views import performed_step_summary
    from mwlbroker.store import progress

    with db.reading() as session:
        found = progress.list_performed_steps(
            session, scheduled=False if args.unscheduled else None, limit=args.limit
        )
        rows = [performed_step_summary(r) for r in found]
    return _print_rows(args, rows, MPPS_COLUMNS)


@with_database
def list_studies(args: argparse.Namespace, config: Config, db: Database) -> int:
    """The newest studies received, or only those that matched no order."""
    from mwlbroker.services.views import study_summary
    from mwlbroker.store import images

    with db.reading() as session:
        found = images.list_studies(
            session, matched=False if args.unmatched else None, limit=args.limit
        )
        rows = [study_summary(r) for r in found]
    return _print_rows(args, rows, STUDY_COLUMNS)


def reconciliation(
    command: Callable[[argparse.Namespace, ReconciliationService], int],
) -> Callable[[argparse.Namespace, Config], int]:
    """A command handed the reconciliation service on a prepared database; a link or merge the
    service refuses (or a record it cannot find) is told in one line, exit code 1."""

    @with_database
    def run(args: argparse.Namespace, config: Config, db: Database) -> int:
        from mwlbroker.app import build_reconciliation
        from mwlbroker.services.reconciliation import ReconciliationRefused

        try:
            return command(args, build_reconciliation(config, db))
        except (LookupError, ReconciliationRefused) as error:
            raise CommandFailed(error_text(error)) from error

    run.__doc__ = command.__doc__
    return run


def link(args: argparse.Namespace, config: Config) -> int:
    """``mpps link`` and ``studies link``: an exam without an order, linked to its step."""
    if bool(args.steps) == bool(args.accession):
        raise CommandFailed("give either STEP_ID(s) or --accession", exit_code=2)
    return _link(args, config)


@reconciliation
def _link(args: argparse.Namespace, service: ReconciliationService) -> int:
    from dataclasses import asdict

    steps = list(args.steps) or service.steps_for_accession(args.accession)
    if not steps:
        raise CommandFailed(f"no scheduled step with accession {args.accession}")
    if args.command == "mpps":
        outcome = service.link_mpps(args.id, steps, actor=actor(args))
    elif len(steps) > 1:
        raise CommandFailed(
            f"accession {args.accession} has {len(steps)} steps "
            f"({', '.join(map(str, steps))}); give the STEP_ID"
        )
    else:
        outcome = service.link_study(args.id, steps[0], actor=actor(args))
    if args.json:
        print_json(asdict(outcome), ascii=True)
        return 0
    noun = "performed step" if outcome.kind == "mpps" else "study"
    print(
        f"{noun} {outcome.id} linked to step(s) {', '.join(map(str, outcome.step_ids))}"
        + "".join(f"; step {i}: {b} -> {a}" for i, b, a in outcome.changes)
    )
    return 0
