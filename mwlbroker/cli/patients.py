"""``mwlbroker patients collisions | duplicates | dismiss | merge | unmerge | merges``: patient
identity reconciliation, from the command line."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING

from mwlbroker.cli.arguments import Commands, actor, add_actor_flag, add_group, command
from mwlbroker.cli.exams import reconciliation
from mwlbroker.cli.output import Row, Table, print_json, print_list

if TYPE_CHECKING:
    from mwlbroker.services.reconciliation import Candidate, ReconciliationService


def register(commands: Commands) -> None:
    """Add the ``patients`` actions."""
    actions = add_group(commands, "patients", help="patient identity reconciliation")
    found = command(
        actions,
        "collisions",
        help="Patient IDs whose messages gave conflicting demographics",
        run=collisions,
        json=True,
    )
    found.add_argument("--limit", type=int, default=100)
    alike = command(
        actions,
        "duplicates",
        help="likely duplicates: one person under several Patient IDs",
        run=duplicates,
        json=True,
    )
    alike.add_argument(
        "--stored", action="store_true", help="list the last sweep's pairs without sweeping now"
    )
    alike.add_argument(
        "--min-score", type=float, default=None, metavar="S", help="0-100 (default 85)"
    )
    alike.add_argument("--limit", type=int, default=100)
    apart = command(
        actions,
        "dismiss",
        help="remember that two patients are not the same person",
        run=dismiss,
    )
    apart.add_argument("first", metavar="PATIENT", help="Patient ID, or ID^^^ISSUER")
    apart.add_argument("second", metavar="OTHER", help="Patient ID, or ID^^^ISSUER")
    apart.add_argument("--note", default="", help="why, for the audit record")
    add_actor_flag(apart)
    joined = command(
        actions,
        "merge",
        help="merge a patient into another: orders and steps move to the survivor",
        run=merge,
        json=True,
    )
    joined.add_argument(
        "source", metavar="SOURCE_ID", help="merged away: Patient ID or ID^^^ISSUER"
    )
    joined.add_argument("survivor", metavar="SURVIVOR_ID", help="the patient that remains")
    joined.add_argument(
        "--notify-ris", action="store_true", help="queue an ADT^A40 for each outbound destination"
    )
    add_actor_flag(joined)
    undone = command(
        actions,
        "unmerge",
        help="undo a merge: every order and step back where it was",
        run=unmerge,
        json=True,
    )
    undone.add_argument("merge_id", type=int, metavar="MERGE_ID")
    add_actor_flag(undone)
    command(
        actions,
        "merges",
        help="merges made, newest first, undone or not",
        run=merges,
        limit=True,
        json=True,
    )


@reconciliation
def collisions(args: argparse.Namespace, service: ReconciliationService) -> int:
    """Patient IDs whose messages disagree on who the patient is, with the evidence."""
    found = service.collisions(limit=args.limit)
    if args.json:
        print_json([asdict(c) for c in found])
        return 0
    print(f"{len(found)} Patient ID(s) with conflicting demographics")
    for collision in found:
        print(f"\n{collision.patient.label}: {'; '.join(collision.conflicts)}")
        for e in collision.evidence:
            orders = f"  orders {', '.join(e.orders)}" if e.orders else ""
            print(
                f"    {e.name or '-':28} {e.birth_date or '-':8} {e.sex or '-':2} {e.source}{orders}"
            )
    return 0


def _pair_cells(pair: Candidate) -> Row:
    first, second = pair.first, pair.second
    return {
        "score": f"{pair.score:5.1f}",
        "first": first.label,
        "first_name": first.name,
        "second": second.label,
        "second_name": second.name,
        "born": first.birth_date,
        "sex": f"{first.sex or '-'}/{second.sex or '-'}",
    }


PAIRS = Table(
    "{score:>5}  {first:20.20} {first_name:28.28}  {second:20.20} {second_name:28.28} {born:8} {sex}",
    {"first": "PATIENT", "first_name": "NAME", "second": "OTHER", "second_name": "NAME"},
    _pair_cells,
)


@reconciliation
def duplicates(args: argparse.Namespace, service: ReconciliationService) -> int:
    """Likely duplicate patients, swept afresh unless ``--stored``."""
    from mwlbroker.domain.identity import DUPLICATE_MIN_SCORE

    min_score = DUPLICATE_MIN_SCORE if args.min_score is None else args.min_score
    if not args.stored:
        sweep = service.sweep_duplicates(min_score=min_score)
        if not args.json:
            print(
                f"swept {sweep.patients} patient(s) in {sweep.seconds:g} s: "
                f"{sweep.candidates} candidate pair(s)"
            )
    pairs = service.duplicates(min_score=min_score, limit=args.limit)
    return print_list(pairs, PAIRS, as_json=args.json, data=asdict)


@reconciliation
def dismiss(args: argparse.Namespace, service: ReconciliationService) -> int:
    """Remember that two patients are two people, so they are no longer offered as a pair."""
    first, second = service.find_patient(args.first), service.find_patient(args.second)
    service.dismiss(first.pk, second.pk, actor=actor(args), note=args.note)
    print(f"{first.label} and {second.label}: not the same person (remembered)")
    return 0


@reconciliation
def merge(args: argparse.Namespace, service: ReconciliationService) -> int:
    """Merge a patient into the survivor, telling the RIS if asked."""
    source, survivor = service.find_patient(args.source), service.find_patient(args.survivor)
    outcome = service.merge(source.pk, survivor.pk, actor=actor(args), notify_ris=args.notify_ris)
    if args.json:
        print_json(asdict(outcome))
        return 0
    print(
        f"merge {outcome.merge_id}: {outcome.prior.label} merged into "
        f"{outcome.survivor.label}: {len(outcome.orders)} order(s), "
        f"{len(outcome.steps)} step(s) moved"
        + (f"; ADT^A40 queued ({len(outcome.notified)})" if outcome.notified else "")
    )
    return 0


@reconciliation
def unmerge(args: argparse.Namespace, service: ReconciliationService) -> int:
    """Undo a merge: every order and step back with the patient it was merged away from."""
    outcome = service.undo_merge(args.merge_id, actor=actor(args))
    if args.json:
        print_json(asdict(outcome))
        return 0
    print(
        f"merge {outcome.merge_id} undone: {len(outcome.orders)} order(s), "
        f"{len(outcome.steps)} step(s) back with {outcome.prior.label}"
    )
    for note in outcome.notes:
        print(f"  note: {note}")
    return 0


MERGES = Table(
    "{id:>5}  {at:19.19}  {prior:20.20} {survivor:20.20} {origin:7} {undone_at:.19}",
    {"at": "AT (UTC)", "prior": "MERGED AWAY", "undone_at": "UNDONE"},
    lambda view: {
        "id": view.id,
        "at": view.at,
        "prior": view.prior.label,
        "survivor": view.survivor.label,
        "origin": view.origin,
        "undone_at": view.undone_at or "-",
    },
)


@reconciliation
def merges(args: argparse.Namespace, service: ReconciliationService) -> int:
    """The merges made, newest first, undone or not."""
    return print_list(service.merges(limit=args.limit), MERGES, as_json=args.json, data=asdict)
