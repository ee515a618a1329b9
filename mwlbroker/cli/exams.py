"""``mwlbroker mpps list | link`` and ``mwlbroker studies list | link``: what the modalities did,
what of it matched no order, and linking it to its scheduled step by hand."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

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
from mwlbroker.cli.output import CommandFailed, Table, error_text, print_json, print_list

if TYPE_CHECKING:
    from mwlbroker.config import Config
    from mwlbroker.services.reconciliation import ReconciliationService
    from mwlbroker.store.db import Database


def _table(*columns: str) -> Table:
    """Columns two spaces apart, unaligned (UIDs are long), an absent value shown as ``-``."""
    return Table(
        "  ".join(f"{{{column}}}" for column in columns),
        cells=lambda row: {c: "-" if row[c] is None else str(row[c]) for c in columns},
    )


PERFORMED_STEPS = _table(
    "id", "status", "scheduled", "station_ae", "patient_id", "accession_number", "sop_instance_uid"
)
STUDIES = _table(
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
    listed = add_record_actions(mpps, listing=Action("newest performed steps first", list_exams))
    listed.add_argument(
        "--unscheduled", action="store_true", help="only those matching no scheduled step"
    )
    _add_link(mpps, "performed step")
    studies = add_group(commands, "studies", help="studies received over C-STORE")
    listed = add_record_actions(studies, listing=Action("newest studies first", list_exams))
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


@with_database
def list_exams(args: argparse.Namespace, config: Config, db: Database) -> int:
    """``mpps list`` and ``studies list``: the newest first, or only those that matched nothing
    (``--unscheduled``, ``--unmatched``)."""
    from mwlbroker.services.views import performed_step_summary, study_summary
    from mwlbroker.store import images, progress

    with db.reading() as session:
        if args.command == "mpps":
            scheduled = False if args.unscheduled else None
            found = progress.list_performed_steps(session, scheduled=scheduled, limit=args.limit)
            rows, table = [performed_step_summary(r) for r in found], PERFORMED_STEPS
        else:
            matched = False if args.unmatched else None
            studies = images.list_studies(session, matched=matched, limit=args.limit)
            rows, table = [study_summary(r) for r in studies], STUDIES
    return print_list(rows, table, as_json=args.json)


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
