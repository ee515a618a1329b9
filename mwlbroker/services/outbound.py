"""The outbound queue: status messages for the RIS, written with the change, sent in order.

A step's status change and the messages reporting it commit in one transaction (style
convention 5), so a change is never lost nor reported before it happened. A sender per
destination (the HL7 edge) claims the next message with :meth:`OutboundService.claim`, sends it,
and records what became of it; within an order, a message waits until every earlier one has
been acknowledged. A message the destination keeps refusing is marked failed, holding the later
messages of its order back, until ``mwlbroker outbound retry ID`` releases it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mwlbroker.domain.outbound import (
    ORDER_STATUS_OF,
    DeliveryStatus,
    Destination,
    StatusReport,
)
from mwlbroker.mapping.patient_message import build_merge_message
from mwlbroker.mapping.status_message import build_status_message
from mwlbroker.services.delivery import Retries, Wakeup, release
from mwlbroker.services.progress import StepChange
from mwlbroker.services.worklist import Context
from mwlbroker.store import outbound as store
from mwlbroker.store import worklist
from mwlbroker.store.db import Database, Session
from mwlbroker.store.outbound import OutboundRow
from mwlbroker.store.worklist import PatientRow

log = logging.getLogger("mwlbroker.outbound")


@dataclass(frozen=True)
class OutboundOptions(Retries):
    """The [outbound] settings; retry_seconds, retry_max_seconds and max_attempts come with :class:`Retries`."""

    destinations: tuple[Destination, ...] = ()
    application: str = "MWLBROKER"  # MSH-3
    facility: str = ""  # MSH-4
    ack_timeout: float = 30.0


@dataclass(frozen=True)
class Claim:
    """A message a sender has taken to send: it is its own until the claim lapses."""

    id: int
    destination: str
    control_id: str
    payload: bytes
    attempts: int  # attempts before this one


class OutboundService:
    """Queues status messages and keeps the record of their delivery."""

    def __init__(self, db: Database, options: OutboundOptions | None = None) -> None:
        self.db = db
        self.options = options or OutboundOptions()
        self.wakeup = Wakeup()  # the senders sleep on it; every commit that queues wakes them

    @property
    def destinations(self) -> tuple[Destination, ...]:
        return self.options.destinations

    # -- writing, inside the caller's transaction -------------------------------------------------

    def on_status_changes(self, ctx: Context, changes: Sequence[StepChange]) -> None:
        """Queue a status message per destination for each step whose status the RIS hears of."""
        for change in changes:
            order_status = ORDER_STATUS_OF.get(change.after)
            if order_status is None:
                continue
            report = StatusReport(
                order_status=order_status,
                placer_order_number=change.order.placer_order_number,
                filler_order_number=change.order.filler_order_number,
                patient=dict(change.patient.attributes),
                order=dict(change.order.attributes),
                procedure=dict(change.step.attributes.get("procedure", {})),
                step=dict(change.step.attributes.get("step", {})),
                at=ctx.now,
                started=change.started,
                ended=change.ended,
            )
            for destination in self.destinations:
                self._queue(ctx, change, report, destination)

    def _queue(
        self, ctx: Context, change: StepChange, report: StatusReport, destination: Destination
    ) -> None:
        row = _enqueue(
            ctx,
            destination.name,
            destination.message_type,
            order_id=change.order.id,
            step_id=change.step.id,
            order_status=report.order_status.value,
        )
        row.payload = build_status_message(
            report,
            destination,
            control_id=row.control_id,
            application=self.options.application,
            facility=self.options.facility,
        )

    def on_patient_merged(self, ctx: Context, prior: PatientRow, survivor: PatientRow) -> list[int]:
        """Queue an ADT^A40 per destination for a merge made here; returns the message ids.

        A patient-level message belongs to no order, so it waits for no order's messages.
        """
        ids = []
        for destination in self.destinations:
            row = _enqueue(ctx, destination.name, "ADT^A40")
            row.payload = build_merge_message(
                dict(survivor.attributes),
                dict(prior.attributes),
                destination,
                control_id=row.control_id,
                at=ctx.now,
                application=self.options.application,
                facility=self.options.facility,
            )
            ids.append(row.id)
        return ids

    def queue_acknowledgment(
        self, ctx: Context, destination: str, message_type: str, build: Callable[[str], bytes]
    ) -> OutboundRow:
        """Queue an application acknowledgment (enhanced mode) for ``destination``.

        ``build`` makes the message from the MSH-10 the queue gives it. It belongs to no order:
        it waits for nothing, and holds nothing back.
        """
        row = _enqueue(ctx, destination, message_type)
        row.payload = build(row.control_id)
        return row

    # -- the senders ----------------------------------------------------------------------------

    def claim(self, destination: str) -> Claim | None:
        """Take the next due message for ``destination``, if any, for one attempt.

        The claim lasts long enough to connect, send and wait for the ACK; if the process dies
        meanwhile, the message becomes due again when it lapses and is sent again, with the
        same MSH-10, so the receiver can tell.
        """
        now = datetime.now(UTC)
        lease = timedelta(seconds=2 * self.options.ack_timeout + 30)
        with self.db.transaction() as session:
            row = store.next_due(session, destination, now)
            if row is None:
                return None
            row.next_attempt_at = now + lease
            return Claim(row.id, row.destination, row.control_id, row.payload, row.attempts)

    def delivered(self, claim: Claim, ack_code: str, ack: str) -> None:
        """The destination acknowledged the message (AA or CA)."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            row = self._row(session, claim)
            row.status = DeliveryStatus.SENT.value
            row.attempts += 1
            row.sent_at = now
            row.ack_code = ack_code[:2]
            row.ack = ack
            row.last_error = None
        log.info(
            "outbound %d (%s) delivered to %s: %s",
            claim.id,
            claim.control_id,
            claim.destination,
            ack_code,
            extra={
                "event": "outbound_sent",
                "outbound_id": claim.id,
                "destination": claim.destination,
                "control_id": claim.control_id,
            },
        )

    def not_delivered(
        self,
        claim: Claim,
        error: str,
        *,
        sent: bool,
        ack_code: str | None = None,
        ack: str | None = None,
    ) -> float:
        """Record a failed attempt; returns the seconds until the message is due again.

        ``sent`` says whether the message left (a negative ACK, no ACK in time, the connection
        lost mid-way): such attempts count towards ``outbound.max_attempts``. When the
        destination could not be reached the message did not leave and is due again at once;
        the sender backs off connecting instead.
        """
        now = datetime.now(UTC)
        options = self.options
        delay = 0.0
        with self.db.transaction() as session:
            row = self._row(session, claim)
            row.last_error = error[:2000]
            if ack_code is not None:
                row.ack_code = ack_code[:2]
                row.ack = ack
            if sent:
                row.attempts += 1
                if row.attempts >= options.max_attempts:
                    row.status = DeliveryStatus.FAILED.value
                else:
                    delay = options.backoff(row.attempts)
            row.next_attempt_at = now + timedelta(seconds=delay)
            failed = row.status == DeliveryStatus.FAILED
            attempts = row.attempts
        (log.error if failed else log.warning)(
            "outbound %d (%s) to %s %s: %s",
            claim.id,
            claim.control_id,
            claim.destination,
            f"failed after {attempts} attempts, held with the later messages of its order"
            if failed
            else "not delivered" + (f", next attempt in {delay:g} s" if sent else ""),
            error,
            extra={
                "event": "outbound_failed" if failed else "outbound_retry",
                "outbound_id": claim.id,
                "destination": claim.destination,
                "attempts": attempts,
                "error": error,
            },
        )
        return delay

    def retry_failed(self) -> str:
        """Give every message held as failed another round of attempts (the outbound_retry
        job): a RIS that refused them may have been fixed since. Returns what it did."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            released = store.release_failed(session, now)
            depth = sum(
                count
                for (_destination, status), count in store.counts(session).items()
                if status == DeliveryStatus.PENDING
            )
        if released:
            self.wakeup.wake()
            log.info("released %d failed outbound message(s) for another round", released)
        return f"{released} failed message(s) released; {depth} pending"

    def retry(self, message_id: int) -> OutboundRow:
        """Release a failed message (or hurry a pending one): it is due now, attempts from zero.

        Raises LookupError for an unknown id and ValueError for a message already sent.
        """
        with self.db.transaction() as session:
            row = release(session, OutboundRow, message_id, "outbound message", done="delivered")
        self.wakeup.wake()
        log.info("outbound %d released for another attempt", message_id)
        return row

    def _row(self, session: Session, claim: Claim) -> OutboundRow:
        row = store.get(session, claim.id, for_update=True)
        if row is None:
            raise LookupError(f"outbound message {claim.id} vanished")
        return row


def _enqueue(
    ctx: Context,
    destination: str,
    message_type: str,
    *,
    order_id: int | None = None,
    step_id: int | None = None,
    order_status: str = "",
) -> OutboundRow:
    """A pending message for ``destination``, due now, with its MSH-10; the caller writes the
    payload, which carries that control ID."""
    row = OutboundRow(
        destination=destination,
        order_id=order_id,
        step_id=step_id,
        message_type=message_type,
        order_status=order_status,
        control_id="",
        payload=b"",
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=ctx.now,
        created_at=ctx.now,
    )
    worklist.add(ctx.session, row)  # the id makes the control ID unique across nodes
    row.control_id = f"MWLB{row.id:010d}"
    return row
