"""Write a scheduled step's status change: its row, its worklist dataset, its order's history.

The domain decides whether a step may change (:func:`mwlbroker.domain.transitions.step_transition`);
this writes the change it allows, inside the caller's transaction, the same way for every use
case (order messages, MPPS and images, expiry).
"""

from __future__ import annotations

from mwlbroker.domain.transitions import StepTransition
from mwlbroker.services.worklist import Context, record, refresh_step
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow


def move_step(
    ctx: Context,
    order: OrderRow,
    patient: PatientRow,
    step: StepRow,
    change: StepTransition,
    event: str,
    *,
    detail: str = "",
) -> None:
    """Give ``step`` its new status, refresh what the worklist serves, and write a history line."""
    step.status = change.after.value
    step.updated_at = ctx.now
    refresh_step(step, patient, order)
    record(
        ctx,
        order,
        event,
        step=step,
        before=change.before.value,
        after=change.after.value,
        detail=detail,
    )
