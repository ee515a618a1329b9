"""How a message is answered: the ACK, the order response, or enhanced mode's two answers.

The intake decides, per message, before its transaction (:meth:`Acknowledgments.plan`):

* **Original mode** (MSH-15 and MSH-16 empty): the ACK as ever, unless the sender's mapping
  profile says ``acknowledgment: application`` for the message type; then the order response
  (ORR^O02, ORI^O24, ORG^O20) with the same MSA goes back on the connection instead.
* **Enhanced mode**: on the connection, the commit ACK (CA once the message is stored, CR or
  CE when it is never accepted), when MSH-15 asks for it; and the application
  acknowledgment (the order response, or an ACK for other types) when MSH-16 asks for it, as
  a new message through the outbound queue to the destination the sender's profile names in
  ``acknowledgment_destination``. It is written in the same transaction as the message, so it
  is sent once the message is committed, and retried like every outbound message.

Then, inside the transaction, :meth:`Acknowledgments.reply` writes what the plan says, and the
message's record says what became of its application acknowledgment (``application_ack``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mwlbroker.domain.errors import MessageError, MessageRejected
from mwlbroker.domain.messages import AckCode, AckCondition, CommitCode, MessageWarning
from mwlbroker.domain.worklist import MappedOrder, StepStatus
from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.application_ack import (
    accept_condition,
    ack_conditions,
    build_order_response,
    commit_code,
)
from mwlbroker.hl7v2.header import MessageHeader
from mwlbroker.hl7v2.reader import HL7Message
from mwlbroker.hl7v2.sender_text import error_for_sender
from mwlbroker.mapping.engine import MappingSet, Profile
from mwlbroker.services.outbound import OutboundService
from mwlbroker.services.worklist import Context
from mwlbroker.store.db import Session
from mwlbroker.store.messages import MessageRow

log = logging.getLogger("mwlbroker.ingest")

# ORC-5 Order Status (HL7 table 0038) of an order whose steps are now in a status.
ORDER_STATUS_OF_STEP = {
    StepStatus.SCHEDULED: "SC",
    StepStatus.ARRIVED: "SC",
    StepStatus.READY: "SC",
    StepStatus.STARTED: "IP",
    StepStatus.COMPLETED: "CM",
    StepStatus.DISCONTINUED: "DC",
    StepStatus.CANCELED: "CA",
    StepStatus.HELD: "HD",
}


@dataclass(frozen=True)
class AckPlan:
    """How one message is to be answered, decided from its header and its sender's profile."""

    conditions: tuple[AckCondition, AckCondition] | None  # MSH-15, MSH-16; None: original mode
    response_type: str = ""  # the type's application acknowledgment (ORR^O02 ...); "": an ACK
    order_response: bool = False  # original mode: the profile asks for the order response
    destination: str = ""  # enhanced mode: the destination of the application acknowledgment
    profile: str = ""
    sender: str = ""  # MSH-3/MSH-4, for the log and the record

    @property
    def enhanced(self) -> bool:
        return self.conditions is not None


@dataclass(frozen=True)
class Reply:
    """What goes back on the connection (``None``: nothing, as MSH-15 asks), and whether an
    application acknowledgment was queued."""

    payload: bytes | None
    queued: bool = False


class Acknowledgments:
    """Plans and writes the answers to messages whose sender wants more than the plain ACK."""

    def __init__(
        self,
        mappings: MappingSet,
        outbound: OutboundService | None,
        *,
        application: str = "MWLBROKER",
        facility: str = "",
    ) -> None:
        self.mappings = mappings
        self.outbound = outbound
        self.application = application
        self.facility = facility
        # Most sites ask for no order response: then original mode needs no profile look-up.
        self._order_responses = any(
            entry.acknowledgment == "application"
            for profile in mappings.profiles
            for entry in profile.messages.values()
        )
        # Most sites leave enhanced mode off: then MSH-15 / MSH-16 need no profile look-up.
        self._enhanced_mode = any(profile.enhanced_mode for profile in mappings.profiles)

    def plan(self, header: MessageHeader | None) -> AckPlan | None:
        """The plan for a message with ``header``; ``None`` for the plain original-mode ACK.

        A header whose MSH-15 or MSH-16 is not in table 0155 gets no plan: the intake rejects
        such a message (AR in original mode, the only mode it can be sure the sender reads).
        """
        if header is None:
            return None
        enhanced = self._enhanced_mode and _asks_for_enhanced_mode(header)
        if not enhanced and not self._order_responses:
            return None
        profile = self._profile(header)
        try:
            conditions = ack_conditions(header) if self._honours(header, profile) else None
        except MessageRejected:
            return None
        if conditions is None and not self._order_responses:
            return None
        entry = registry.message_type(header.message_type)
        response_type = entry.application_ack if entry is not None else ""
        sender = "/".join(p for p in (header.sending_application, header.sending_facility) if p)
        mapping = profile.message_mapping(header.type_name) if profile is not None else None
        order_response = (
            bool(response_type) and mapping is not None and mapping.acknowledgment == "application"
        )
        if conditions is None and not order_response:
            return None
        return AckPlan(
            conditions,
            response_type=response_type if mapping is not None else "",
            order_response=order_response,
            destination=profile.acknowledgment_destination if profile is not None else "",
            profile=profile.name if profile is not None else "",
            sender=sender or "(no MSH-3/MSH-4)",
        )

    def check(self, header: MessageHeader) -> None:
        """Raise :class:`MessageRejected` for an MSH-15 / MSH-16 outside table 0155, unless the
        sender's profile answers it in original mode whatever it asks (no ``enhanced_mode: true``)."""
        if _asks_for_enhanced_mode(header) and self._honours(header, self._profile(header)):
            ack_conditions(header)

    def accept_condition(self, header: MessageHeader | None) -> AckCondition | None:
        """MSH-15 as the sender's profile lets it count; ``None``: answer in original mode."""
        if header is None or not _asks_for_enhanced_mode(header):
            return None
        if not self._honours(header, self._profile(header)):
            return None
        return accept_condition(header)

    def _profile(self, header: MessageHeader) -> Profile | None:
        try:
            return self.mappings.profile_for(
                header.sending_application, header.sending_facility, header.type_name
            )
        except MessageError:
            return None  # no profile maps it for this sender: the intake rejects it

    @staticmethod
    def _honours(header: MessageHeader, profile: Profile | None) -> bool:
        """Whether MSH-15 / MSH-16 are honoured: where the profile says enhanced_mode: true."""
        return _asks_for_enhanced_mode(header) and profile is not None and profile.enhanced_mode

    def reply(
        self,
        session: Session,
        plan: AckPlan,
        header: MessageHeader,
        message: HL7Message | None,
        prepared: Any,
        row: MessageRow,
        *,
        duplicate: bool,
        codec: str,
        now: datetime,
    ) -> Reply:
        """Inside the intake's transaction: the answer for the connection, and in enhanced mode
        the application acknowledgment queued (or, on the record, why not)."""
        code = AckCode(row.ack_code)

        def application_message(control_id: str | None = None) -> bytes:
            if plan.response_type:
                outcomes = _order_outcomes(prepared)
                order_status, filler = next(iter(outcomes.values()), ("", None))
                return build_order_response(
                    header,
                    plan.response_type,
                    code,
                    message,
                    order_status=order_status,
                    filler_order_number=filler,
                    outcomes=outcomes,
                    text=error_for_sender(row.error, row.id),
                    error_code=row.error_code,
                    location=row.error_location,
                    application=self.application,
                    facility=self.facility,
                    codec=codec,
                    control_id=control_id,
                )
            return build_ack(
                header,
                code,
                text=error_for_sender(row.error, row.id),
                error_code=row.error_code,
                location=row.error_location,
                application=self.application,
                facility=self.facility,
                codec=codec,
                control_id=control_id,
                warnings=[MessageWarning.from_json(item) for item in row.warnings or ()]
                if code == AckCode.ACCEPT
                else (),
            )

        if plan.conditions is None:
            return Reply(application_message())
        accept, application = plan.conditions
        commit = commit_code(code, row.error_code)
        commit_sent = accept.wants(commit == CommitCode.ACCEPT)
        payload = None
        if commit_sent:
            refused = commit != CommitCode.ACCEPT
            payload = build_ack(
                header,
                commit,
                text=error_for_sender(row.error, row.id) if refused else None,
                error_code=row.error_code if refused else None,
                location=row.error_location if refused else None,
                application=self.application,
                facility=self.facility,
                codec=codec,
            )
        if duplicate:
            # The first copy's application acknowledgment is queued already: one is enough.
            return Reply(payload)
        queued = self._application_ack(
            session, plan, row, code, application, commit_sent, application_message, now
        )
        return Reply(payload, queued)

    def _application_ack(
        self,
        session: Session,
        plan: AckPlan,
        row: MessageRow,
        code: AckCode,
        wanted: AckCondition,
        commit_sent: bool,
        build: Callable[[str], bytes],
        now: datetime,
    ) -> bool:
        """Queue the application acknowledgment if MSH-16 wants it; note on the row what
        became of it. Returns whether one was queued."""
        kind = plan.response_type or "ACK"
        destinations = {d.name for d in self.outbound.destinations} if self.outbound else set()
        queued = False
        if code == AckCode.REJECT and commit_sent:
            note = "not sent: the commit acknowledgment reported the rejection"
        elif not wanted.wants(code == AckCode.ACCEPT):
            note = f"not sent: MSH-16 is {wanted.value} and the outcome is {code.value}"
        elif not plan.destination or plan.destination not in destinations:
            where = (
                f"profile {plan.profile} names no acknowledgment_destination"
                if not plan.destination
                else f"{plan.destination!r} is not an [[outbound.destinations]] name"
            )
            note = f"not sent: no destination for application acknowledgments to {plan.sender}"
            note += f" ({where})" if plan.profile else ""
            log.warning(
                "message %s from %s asks for an application acknowledgment (MSH-16 %s), but "
                "there is no destination to send it to: %s",
                row.id,
                plan.sender,
                wanted.value,
                note,
                extra={"event": "application_ack_undeliverable", "message_id": row.id},
            )
        else:
            assert self.outbound is not None
            ctx = Context(session, now, row.id, f"hl7 {plan.sender} message {row.id}")
            sent = self.outbound.queue_acknowledgment(ctx, plan.destination, kind, build)
            note = (
                f"{kind} {code.value} queued for {plan.destination} as outbound message {sent.id}"
            )
            queued = True
        row.application_ack = note[:200]
        return queued

    def wake(self) -> None:
        """After the commit: the outbound senders have an application acknowledgment to send."""
        if self.outbound is not None:
            self.outbound.wakeup.wake()


def _asks_for_enhanced_mode(header: MessageHeader) -> bool:
    """MSH-15 or MSH-16 is set (chapter 2.9.3); both empty is original mode."""
    return bool(header.accept_ack_type or header.application_ack_type)


def _order_outcomes(prepared: Any) -> dict[str, tuple[str, str | None]]:
    """Placer order number -> ORC-5 and filler number, for each mapped order of an order
    message (empty for anything else: an ADT, a message that could not be mapped)."""
    if not (isinstance(prepared, tuple) and len(prepared) == 2 and isinstance(prepared[1], list)):
        return {}
    return {
        mapped.placer_order_number or "": (
            ORDER_STATUS_OF_STEP.get(mapped.step_status, ""),
            mapped.filler_order_number,
        )
        for mapped in prepared[1]
        if isinstance(mapped, MappedOrder)
    }
