"""The patient's visit moving on (ADT A02 ... A13), carried onto the worklist items still to do.

A transfer (A02), a discharge (A03), a change of patient class (A06, A07) and their
cancellations (A11, A12, A13) say where the patient is now (PV1-3), under which visit (PV1-19)
and as what kind of patient (PV1-2). The broker keeps those with the order, as the order's
visit attributes (CurrentPatientLocation, AdmissionID, PatientState), and rewrites the
worklist items that may still be performed: scheduled, arrived, ready, held or expired ones.
Items started or finished keep what they were performed with.
"""

from __future__ import annotations

from mwlbroker.domain.transitions import MAY_START
from mwlbroker.domain.worklist import CLEAR, Attributes
from mwlbroker.services.worklist import Context, audit, merge, record, refresh_step
from mwlbroker.store import worklist as store
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow

OPEN_TO_VISIT = tuple(sorted(status.value for status in MAY_START))
"""Steps a visit event rewrites: those not started (or held, or expired) yet."""


def move_visit(ctx: Context, patient: PatientRow, visit: Attributes, event: str) -> int:
    """Put the visit attributes on the orders of the patient's open items; returns how many."""
    if not visit:
        return 0
    steps = store.steps_of_patient(ctx.session, patient.id, statuses=OPEN_TO_VISIT)
    by_order: dict[int, list[StepRow]] = {}
    for step in steps:
        by_order.setdefault(step.order_id, []).append(step)
    changed = 0
    for order_id, open_steps in by_order.items():
        order = store.get_order(ctx.session, order_id)
        assert order is not None
        if _apply(ctx, order, visit, event):
            for step in open_steps:
                refresh_step(step, patient, order)
                step.updated_at = ctx.now
            changed += len(open_steps)
    return changed


def _apply(ctx: Context, order: OrderRow, visit: Attributes, event: str) -> bool:
    merged = merge(order.attributes, visit)
    if merged == order.attributes:
        return False
    before = {keyword: order.attributes.get(keyword) for keyword in visit}
    after = {keyword: merged.get(keyword) for keyword in visit}
    order.attributes = merged
    order.updated_at = ctx.now
    order.updated_message_id = ctx.message_id
    said = ", ".join(
        f"{keyword} {before[keyword] or '(none)'} -> {_shown(value)}"
        for keyword, value in visit.items()
        if before[keyword] != after[keyword]
    )
    record(ctx, order, "visit", detail=f"{event}: {said}")
    audit(ctx, "visit", "order", order.id, before=before, after=after)
    return True


def _shown(value: object) -> str:
    return "(cleared)" if value is CLEAR else str(value) or "(none)"
