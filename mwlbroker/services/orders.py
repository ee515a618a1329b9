"""The order lifecycle: ORM^O01 and OMI^O23 become orders and worklist items, and follow them.

ORC-1 decides what happens (NW creates; XO changes; CA/OC cancel; DC discontinues; SC sets a
status; HD/RL hold and release) and the mapping's status table turns ORC-1 + ORC-5 into the
step status. Anything surprising (a change for an unknown order, a second NW, a final order
asked to change) raises a :class:`MessageError`: the message stays stored, answered AE with the
reason, and can be reprocessed once the cause is dealt with. A message may carry several
orders (one per placer order); each gets its own ORC-1, and all of them share the message's
transaction, so one failing order leaves the others unapplied too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.messages import HL7ErrorCode, MessageWarning
from mwlbroker.domain.transitions import HELD_ONLY, NOT_STARTED, StepTransition, step_transition
from mwlbroker.domain.worklist import MappedOrder, MappedStep, StepStatus
from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.reader import HL7Message
from mwlbroker.mapping.engine import MappingSet
from mwlbroker.services.merged_ids import check_merged, patient_for
from mwlbroker.services.step_status import move_step
from mwlbroker.services.worklist import (
    Context,
    merge,
    propagate_patient,
    record,
    refresh_step,
    resolve_patient,
)
from mwlbroker.store import worklist as store
from mwlbroker.store.db import Session
from mwlbroker.store.messages import MessageRow
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow

# Which steps an order control acts on, where it is not every open step (the rest stay).
_ONLY_FROM = {"HD": NOT_STARTED, "RL": HELD_ONLY}


StepsListener = Callable[[Context, Sequence[StepRow]], object]
"""Called inside the transaction with the steps an order message created (re-matching kept
performed steps and studies that were waiting for them)."""


class OrderService:
    """Applies order messages inside the ingest transaction (the registry's "orders" applier)."""

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings
        self.steps_listeners: list[StepsListener] = []

    def _steps_added(self, ctx: Context, steps: Sequence[StepRow]) -> None:
        if steps:
            for listener in self.steps_listeners:
                listener(ctx, steps)

    def prepare(self, message: HL7Message) -> tuple[HL7Message, list[MappedOrder]]:
        """Map the message's orders, before (and outside) the transaction that applies them."""
        return message, self.mappings.map_orders(message)

    def warnings(self, prepared: tuple[HL7Message, list[MappedOrder]]) -> list[MessageWarning]:
        """What the mapping changed in the message to take it (values cut to fit their VR)."""
        orders = prepared[1]
        return orders[0].warnings if orders else []  # every order holds the message's list

    def apply(
        self, session: Session, prepared: tuple[HL7Message, list[MappedOrder]], row: MessageRow
    ) -> None:
        """Apply every mapped order of a message inside the ingest transaction.

        The orders share the message's savepoint: when one fails, the error names it and none
        of them is applied, so a reprocess applies the message whole.
        """
        message, orders = prepared
        sender = "/".join(p for p in (row.sending_application, row.sending_facility) if p)
        ctx = Context(session, datetime.now(UTC), row.id, f"hl7 {sender} message {row.id}")
        for mapped in orders:
            try:
                self._apply_order(ctx, message, mapped)
            except MessageError as error:
                if mapped.group is None:
                    raise
                raise mapped.group.locate(error) from error

    def _apply_order(self, ctx: Context, message: HL7Message, mapped: MappedOrder) -> None:
        """Apply one order of the message: create, change or move its steps, by ORC-1."""
        session = ctx.session
        order = store.find_order(
            session,
            placer=mapped.placer_order_number,
            filler=mapped.filler_order_number,
            accession_numbers=[s.accession_number or "" for s in mapped.steps],
        )
        control = mapped.order_control
        said = _said(message, control)
        # A merged-away Patient ID: refused, or the survivor's (the profile's merged_patient:).
        check_merged(ctx, mapped.patient, mapped.merged_patient, "order")
        if control == "NW":
            if order is not None:
                raise MessageError(
                    f"order {_name(mapped)} already exists (created by message "
                    f"{order.created_message_id}); a second NW is not applied",
                    error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER,
                    location="ORC-2",
                )
            self._create(ctx, mapped)
            return
        if order is None:
            raise MessageError(
                f"{said} for unknown order {_name(mapped)}: it was never created (no NW)",
                error_code=HL7ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                location="ORC-2",
            )
        patient = self._same_patient(ctx, order, mapped)
        steps = list(store.steps_of_order(session, order.id))
        if steps and all(StepStatus(s.status).is_final for s in steps):
            final = ", ".join(sorted({s.status for s in steps}))
            if control != "XO" and all(s.status == mapped.step_status for s in steps):
                record(ctx, order, "unchanged", detail=f"{said}: already {final}")
                return
            raise MessageError(
                f"order {_name(mapped)} is {final}; {said} cannot change it",
                error_code=HL7ErrorCode.APPLICATION_RECORD_LOCKED,
                location="ORC-1",
            )
        order.order_control = control
        order.updated_message_id = ctx.message_id
        order.updated_at = ctx.now
        if control == "XO":
            self._change(ctx, order, steps, mapped)
        else:
            self._set_status(ctx, order, patient, steps, mapped)

    # -- NW ---------------------------------------------------------------------------------------

    def _create(self, ctx: Context, mapped: MappedOrder) -> None:
        patient, changed = patient_for(ctx, mapped.patient, mapped.merged_patient, "order")
        if changed and patient.created_at != ctx.now:  # a new patient has no items to update
            propagate_patient(ctx, patient)
        self._check_study_uids(ctx, patient, mapped.steps)
        order = OrderRow(
            placer_order_number=mapped.placer_order_number,
            filler_order_number=mapped.filler_order_number,
            patient_pk=patient.id,
            profile=mapped.profile[:64],
            order_control=mapped.order_control,
            attributes=merge({}, mapped.order),
            created_message_id=ctx.message_id,
            updated_message_id=ctx.message_id,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        store.add(ctx.session, order)
        record(
            ctx,
            order,
            "created",
            after=mapped.step_status,
            detail=f"{len(mapped.steps)} step(s), profile {mapped.profile}",
        )
        added = [
            self._add_step(ctx, order, patient, mapped_step, mapped.step_status)
            for mapped_step in mapped.steps
        ]
        self._steps_added(ctx, added)

    def _add_step(
        self,
        ctx: Context,
        order: OrderRow,
        patient: PatientRow,
        mapped: MappedStep,
        status: StepStatus,
    ) -> StepRow:
        step = StepRow(
            order_id=order.id,
            patient_pk=patient.id,
            patient_id=patient.patient_id,
            status=status.value,
            attributes={"procedure": merge({}, mapped.procedure), "step": merge({}, mapped.step)},
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        refresh_step(step, patient, order)
        store.add(ctx.session, step)
        record(
            ctx,
            order,
            "step added",
            step=step,
            after=status.value,
            detail=f"SPS {step.sps_id} accession {step.accession_number}",
        )
        return step

    # -- XO ---------------------------------------------------------------------------------------

    def _change(
        self, ctx: Context, order: OrderRow, steps: list[StepRow], mapped: MappedOrder
    ) -> None:
        patient, changed = patient_for(ctx, mapped.patient, mapped.merged_patient, "order")
        if changed:
            propagate_patient(ctx, patient)
        self._check_study_uids(ctx, patient, mapped.steps)
        order.attributes = merge(order.attributes, mapped.order)
        by_key = {_step_key_of_row(s): s for s in steps}
        seen: set[int] = set()
        added: list[StepRow] = []
        for mapped_step in mapped.steps:
            existing = by_key.get(_step_key(mapped_step))
            if existing is None:
                added.append(self._add_step(ctx, order, patient, mapped_step, mapped.step_status))
                continue
            seen.add(existing.id)
            current = StepStatus(existing.status)
            if current.is_final:
                continue
            existing.attributes = {
                "procedure": merge(existing.attributes.get("procedure", {}), mapped_step.procedure),
                "step": merge(existing.attributes.get("step", {}), mapped_step.step),
            }
            # The update rewrites the step even when its status stays; the history says so.
            change = step_transition(current, mapped.step_status) or StepTransition(
                current, current
            )
            move_step(ctx, order, patient, existing, change, "step changed")
        for step in steps:
            if step.id in seen:
                continue
            # The update no longer lists this step: it leaves the worklist, kept in history.
            removed = step_transition(StepStatus(step.status), StepStatus.REMOVED)
            if removed is not None:
                move_step(
                    ctx,
                    order,
                    patient,
                    step,
                    removed,
                    "step removed",
                    detail="not in the order update",
                )
        self._steps_added(ctx, added)

    # -- CA, OC, DC, SC, HD, RL -------------------------------------------------------------------

    def _set_status(
        self,
        ctx: Context,
        order: OrderRow,
        patient: PatientRow,
        steps: list[StepRow],
        mapped: MappedOrder,
    ) -> None:
        target = mapped.step_status
        control = mapped.order_control
        changed = 0
        only_from = _ONLY_FROM.get(control)
        detail = f"ORC-1 {control} ORC-5 {mapped.order_status or '(empty)'}"
        for step in steps:
            change = step_transition(StepStatus(step.status), target, only_from=only_from)
            if change is None:
                continue
            move_step(ctx, order, patient, step, change, "status", detail=detail)
            changed += 1
        if not changed:
            record(ctx, order, "unchanged", detail=f"ORC-1 {control}: no step to change")

    # -- checks -----------------------------------------------------------------------------------

    def _same_patient(self, ctx: Context, order: OrderRow, mapped: MappedOrder) -> PatientRow:
        patient = store.get_patient(ctx.session, order.patient_pk)
        assert patient is not None
        if mapped.patient.patient_id:
            named = resolve_patient(ctx, mapped.patient.patient_id, mapped.patient.issuer)
            if named is None or named.id != patient.id:
                raise MessageError(
                    f"order {_name(mapped)} belongs to patient {patient.patient_id}, but the "
                    f"message names {mapped.patient.patient_id}; merge the patients (A40) or "
                    "cancel and re-order",
                    # 205: the order number is already taken by another patient's order.
                    error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER,
                    location="PID-3",
                )
        return patient

    def _check_study_uids(self, ctx: Context, patient: PatientRow, steps: list[MappedStep]) -> None:
        uids = [s.study_instance_uid or "" for s in steps]
        for clash in store.study_uid_owners(ctx.session, uids, other_than_patient=patient.id):
            raise MessageError(
                f"Study Instance UID {clash.study_instance_uid} already belongs to patient "
                f"{clash.patient_id} (accession {clash.accession_number}); it cannot be given "
                f"to patient {patient.patient_id}",
                error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER,
                location="ZDS-1",
            )


def _said(message: HL7Message, control: str) -> str:
    """How the message asked for ``control``: "ORC-1 XO", or "SIU^S13 (XO)" for appointments."""
    found = registry.route(message.header().type_name)
    if found is not None and found.trigger.meaning == registry.Meaning.APPOINTMENT:
        return f"{found.type_name} ({control})"
    return f"ORC-1 {control}"


def _name(mapped: MappedOrder) -> str:
    return repr(mapped.placer_order_number or mapped.filler_order_number or "?")


def _step_key(step: MappedStep) -> tuple[str, str]:
    if step.sps_id:
        return ("sps", step.sps_id)
    return ("rp", f"{step.accession_number}/{step.requested_procedure_id}")


def _step_key_of_row(step: StepRow) -> tuple[str, str]:
    if step.sps_id:
        return ("sps", step.sps_id)
    return ("rp", f"{step.accession_number}/{step.requested_procedure_id}")
