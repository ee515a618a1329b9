"""Merging a patient into another, and undoing it, inside the caller's transaction.

A merge moves every order and step of the merged-away patient ("prior") to the survivor,
refreshes those worklist items at once (a C-FIND shows the survivor from the commit on), and
keeps a snapshot of where everything was: each order and step, the performed steps linked to
those steps and the studies matched to those orders, and both patients. Undo puts each of them
back, and refuses, naming what, when something it would put back has changed since: a later
merge of either patient, an order moved on, the prior patient's record changed. HL7 ADT^A40
and staff merges go through the same two functions, so both can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mwlbroker.services.worklist import Context, audit, patient_snapshot, record, refresh_step
from mwlbroker.store import reconciliation as rec
from mwlbroker.store import worklist as store
from mwlbroker.store.db import Session
from mwlbroker.store.reconciliation import PatientMergeRow
from mwlbroker.store.rows import get_locked
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow


class ReconciliationRefused(Exception):
    """An action staff asked for cannot be done as asked; the message says why and what to do."""


class UndoRefused(ReconciliationRefused):
    """Undoing a merge would not put things back safely; ``problems`` names each reason."""

    def __init__(self, merge_id: int, problems: list[str]) -> None:
        super().__init__(f"merge {merge_id} cannot be undone: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Moved:
    """What a merge or its undo moved."""

    merge: PatientMergeRow
    orders: tuple[int, ...]
    steps: tuple[int, ...]
    notes: tuple[str, ...] = ()


def merge_patient(
    ctx: Context,
    prior: PatientRow,
    survivor: PatientRow,
    *,
    origin: str,
    extra_audit: dict[str, Any] | None = None,
) -> Moved:
    """Move ``prior``'s orders and steps to ``survivor``, keep the snapshot, audit it."""
    session = ctx.session
    if prior.id == survivor.id:
        raise ReconciliationRefused(f"patient {prior.patient_id} cannot be merged into itself")
    if prior.merged_into_id is not None:
        raise ReconciliationRefused(
            f"patient {prior.patient_id} was already merged into another patient"
        )
    if survivor.merged_into_id is not None:
        raise ReconciliationRefused(
            f"patient {survivor.patient_id} was merged away; merge into the patient it survives in"
        )
    orders = list(store.orders_of_patient(session, prior.id))
    steps = list(store.steps_of_patient(session, prior.id))
    links = rec.links_of_steps(session, [s.id for s in steps])
    studies = rec.studies_of_orders(session, [o.id for o in orders])
    snapshot: dict[str, Any] = {
        "prior": patient_snapshot(prior),
        "survivor": patient_snapshot(survivor),
        "orders": [{"id": o.id, "patient_pk": o.patient_pk} for o in orders],
        "steps": [
            {
                "id": s.id,
                "order_id": s.order_id,
                "patient_pk": s.patient_pk,
                "patient_id": s.patient_id,
                "issuer": s.issuer,
                "patient_name": s.patient_name,
                "status": s.status,
            }
            for s in steps
        ],
        "performed_steps": [
            {"performed_step_id": link.performed_step_id, "step_id": link.step_id} for link in links
        ],
        "studies": [
            {"id": st.id, "order_id": st.order_id, "matched_by": st.matched_by} for st in studies
        ],
    }
    by_id = {o.id: o for o in orders}
    for order in orders:
        order.patient_pk = survivor.id
        order.updated_at = ctx.now
        record(
            ctx,
            order,
            "patient merged",
            detail=f"from {prior.patient_id} into {survivor.patient_id}",
        )
    _refresh(ctx, steps, survivor, by_id)
    prior.merged_into_id = survivor.id
    prior.updated_at = ctx.now
    row = PatientMergeRow(
        source_pk=prior.id,
        survivor_pk=survivor.id,
        at=ctx.now,
        actor=ctx.actor[:200],
        origin=origin,
        message_id=ctx.message_id,
        snapshot=snapshot,
    )
    store.add(session, row)
    rec.drop_candidates(session, patient_pk=prior.id)
    audit(
        ctx,
        "merge",
        "patient",
        survivor.id,
        before=snapshot,
        after={
            "merge_id": row.id,
            "survivor": patient_snapshot(survivor),
            "merged": prior.id,
            "orders": [o.id for o in orders],
            "steps": [s.id for s in steps],
            **(extra_audit or {}),
        },
    )
    return Moved(row, tuple(o.id for o in orders), tuple(s.id for s in steps))


def undo_merge(ctx: Context, merge_id: int) -> Moved:
    """Put every order and step of a merge back with the prior patient, or refuse, saying why."""
    session = ctx.session
    row = get_locked(session, PatientMergeRow, merge_id, "merge")
    if row.undone_at is not None:
        raise UndoRefused(
            merge_id,
            [f"it was already undone at {row.undone_at:%Y-%m-%d %H:%M} by {row.undone_by}"],
        )
    snapshot = row.snapshot
    prior = store.get_patient(session, row.source_pk)
    survivor = store.get_patient(session, row.survivor_pk)
    assert prior is not None and survivor is not None
    problems = [
        f"merge {later.id} ({later.at:%Y-%m-%d %H:%M}) merged {survivor.patient_id} into "
        "another patient later; undo merge "
        f"{later.id} first"
        for later in rec.merges_after(session, row)
    ]
    if not problems:
        problems = _changes_since(session, row, prior, survivor)
    if problems:
        raise UndoRefused(merge_id, problems)

    orders: dict[int, OrderRow] = {}
    for moved in snapshot["orders"]:
        order = store.get_order(session, moved["id"])
        assert order is not None
        order.patient_pk = moved["patient_pk"]
        order.updated_at = ctx.now
        orders[order.id] = order
        record(
            ctx,
            order,
            "patient unmerged",
            detail=f"back from {survivor.patient_id} to {prior.patient_id} (merge {merge_id})",
        )
    prior.merged_into_id = None
    prior.updated_at = ctx.now
    # Every step of the moved orders goes with them, including any an order update added
    # while they were merged (it is the order's, so it is the prior patient's again).
    steps = [step for order_id in orders for step in store.steps_of_order(session, order_id)]
    _refresh(ctx, steps, prior, orders)
    notes = _notes(session, row, survivor, steps)
    row.undone_at = ctx.now
    row.undone_by = ctx.actor[:200]
    audit(
        ctx,
        "unmerge",
        "patient",
        prior.id,
        before={
            "merge_id": merge_id,
            "prior": patient_snapshot(prior) | {"merged_into_id": survivor.id},
            "survivor": patient_snapshot(survivor),
            "orders": [{"id": o["id"], "patient_pk": survivor.id} for o in snapshot["orders"]],
        },
        after={
            "merge_id": merge_id,
            "orders": snapshot["orders"],
            "steps": [s["id"] for s in snapshot["steps"]],
            "notes": notes,
        },
    )
    return Moved(
        row,
        tuple(o["id"] for o in snapshot["orders"]),
        tuple(s["id"] for s in snapshot["steps"]),
        tuple(notes),
    )


def _refresh(
    ctx: Context, steps: list[StepRow], patient: PatientRow, orders: dict[int, OrderRow]
) -> None:
    """Rewrite the steps' worklist items for ``patient`` (every status: history shows them too)."""
    for step in steps:
        order = orders.get(step.order_id) or store.get_order(ctx.session, step.order_id)
        assert order is not None
        refresh_step(step, patient, order)
        step.updated_at = ctx.now


def _changes_since(
    session: Session, row: PatientMergeRow, prior: PatientRow, survivor: PatientRow
) -> list[str]:
    """What changed since the merge that undo cannot put back without losing or guessing."""
    snapshot = row.snapshot
    problems: list[str] = []
    if prior.merged_into_id != survivor.id:
        problems.append(
            f"patient {prior.patient_id} is no longer merged into {survivor.patient_id}"
        )
    was = snapshot["prior"]
    if (prior.patient_id, prior.issuer) != (was["patient_id"], was["issuer"]):
        problems.append(
            f"the merged-away patient's ID changed since ({was['patient_id']} -> "
            f"{prior.patient_id})"
        )
    elif prior.attributes != was["attributes"]:
        problems.append(f"patient {prior.patient_id}'s demographics changed since the merge")
    for moved in snapshot["orders"]:
        order = store.get_order(session, moved["id"])
        if order is None or order.patient_pk != survivor.id:
            problems.append(f"order {moved['id']} no longer belongs to {survivor.patient_id}")
    for moved in snapshot["steps"]:
        step = rec.get_step(session, moved["id"])
        if step is None or step.patient_pk != survivor.id or step.order_id != moved["order_id"]:
            problems.append(f"step {moved['id']} moved on since the merge")
    linked = {
        (link.performed_step_id, link.step_id)
        for link in rec.links_of_steps(session, [s["id"] for s in snapshot["steps"]])
    }
    for link in snapshot["performed_steps"]:
        if (link["performed_step_id"], link["step_id"]) not in linked:
            problems.append(
                f"performed step {link['performed_step_id']} is no longer linked to step "
                f"{link['step_id']}"
            )
    studies = {
        st.id: st for st in rec.studies_of_orders(session, [o["id"] for o in snapshot["orders"]])
    }
    for study in snapshot["studies"]:
        if study["id"] not in studies:
            problems.append(
                f"study {study['id']} is no longer matched to order {study['order_id']}"
            )
    return problems


def _notes(
    session: Session, row: PatientMergeRow, survivor: PatientRow, steps: list[StepRow]
) -> list[str]:
    """What undo leaves as it is, for the person who asked to know."""
    notes = []
    since = rec.orders_created_since(session, survivor.id, _aware(row.at))
    if since:
        notes.append(
            f"{len(since)} order(s) created for {survivor.patient_id} since the merge stay with it "
            f"(orders {', '.join(str(o.id) for o in since)})"
        )
    before = {s["id"]: s["status"] for s in row.snapshot["steps"]}
    added = [s.id for s in steps if s.id not in before]
    if added:
        notes.append(
            f"step(s) {', '.join(map(str, added))}, added to the moved orders since the merge, "
            "go back with them"
        )
    moved_on = [s for s in steps if s.id in before and s.status != before[s.id]]
    if moved_on:
        notes.append(
            "step(s) "
            + ", ".join(f"{s.id} ({before.get(s.id)} -> {s.status})" for s in moved_on)
            + f" went on while merged; status messages sent meanwhile named {survivor.patient_id}"
        )
    return notes


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
