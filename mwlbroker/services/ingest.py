"""Take in one HL7 message: store it, apply it, and decide the ACK, all in one transaction.

The order of events is the broker's central promise: the raw message and its effects are
committed together, and only then does the caller get an :class:`IngestResult` to answer with.
A message whose effects fail is still stored (status ``failed``, answered AE) and can be
reprocessed; a message that can never be accepted is stored as ``rejected`` and answered AR.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from mwlbroker.domain.errors import MessageError, MessageRejected
from mwlbroker.domain.messages import AckCode, HL7ErrorCode, MessageStatus, MessageWarning
from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.header import MessageHeader, read_header
from mwlbroker.hl7v2.reader import HL7Message, content_digest, parse_message
from mwlbroker.hl7v2.sender_text import INTERNAL_FAULT, UNREADABLE, error_for_sender
from mwlbroker.hl7v2.versions import ACCEPTED_VERSIONS, describe_versions
from mwlbroker.services.acknowledgments import Acknowledgments, AckPlan
from mwlbroker.services.group_commit import GroupCommit
from mwlbroker.services.worklist import Context, audit
from mwlbroker.store import messages
from mwlbroker.store.db import (
    Database,
    DatabaseUnavailable,
    DuplicateKey,
    Session,
    is_duplicate_key,
)
from mwlbroker.store.messages import MessageRow
from mwlbroker.store.rows import get_locked

log = logging.getLogger("mwlbroker.ingest")


class Applier(Protocol):
    """Applies one kind of message: mapped first, outside any transaction, then written."""

    def prepare(self, message: HL7Message) -> Any:
        """Map the message (no database); raises :class:`MessageError` when it cannot be."""

    def apply(self, session: Session, prepared: Any, row: MessageRow) -> None:
        """Write what ``prepare`` gave inside the ingest transaction (its own savepoint)."""

    def warnings(self, prepared: Any) -> Sequence[MessageWarning]:
        """What the mapping changed in the message to take it (values cut to fit their VR)."""


ATTEMPTS = 3


class _Conflict(Exception):
    """A concurrent transaction committed a row this one also created; start again."""


@dataclass(frozen=True)
class IngestResult:
    """What the sender is told, and what the log line says."""

    ack_code: AckCode
    header: MessageHeader | None  # the received MSH (for the ACK); None when there was none
    message_id: int | None = None
    status: MessageStatus | None = None
    error: str | None = None
    error_code: int | None = None
    error_location: str | None = None
    duplicate: bool = False
    type_name: str = ""
    elapsed_ms: float = 0.0
    codec: str = "latin-1"
    warnings: tuple[MessageWarning, ...] = ()  # of an accepted message: ERR severity W
    # The answer the intake wrote itself (an order response, an enhanced-mode commit ACK);
    # None: the plain ACK. ``silent``: nothing at all (MSH-15 does not want a commit ACK).
    reply: bytes | None = None
    silent: bool = False

    @property
    def control_id(self) -> str:
        return self.header.control_id if self.header is not None else ""

    @property
    def ack_text(self) -> str | None:
        """The error as the sender reads it: an internal fault's detail (an exception, a
        driver's words) stays in the log and the message's record."""
        return error_for_sender(self.error, self.message_id)


@dataclass
class _Intake:
    """One received message, read and mapped, waiting for its place in a transaction."""

    row: MessageRow  # a draft, never added to a session: each attempt stores a copy
    now: datetime
    header: MessageHeader | None  # read from the message, else from its bytes (if any MSH)
    codec: str
    rejection: MessageRejected | None = None
    applier: Applier | None = None
    prepared: Any = None
    message: HL7Message | None = None  # for the order response, which echoes its segments
    plan: AckPlan | None = None  # None: the plain original-mode ACK


@dataclass
class IngestService:
    """Stores and applies inbound HL7 messages."""

    db: Database
    accepted_versions: tuple[str, ...] = ACCEPTED_VERSIONS
    default_codec: str = "latin-1"
    # The registry's applier names ("orders", "patients") -> what applies their messages.
    appliers: Mapping[str, Applier] = field(default_factory=dict)
    # The MSH-9 types the mapping profiles map; None takes every registered type.
    mapped: Collection[str] | None = None
    # Most messages one transaction takes when several connections deliver at once.
    max_batch: int = 64
    # Order responses and enhanced mode, where senders ask for them; None: plain ACKs only.
    acknowledgments: Acknowledgments | None = None
    group: GroupCommit[_Intake, IngestResult] = field(init=False, repr=False)
    # MSH-9 "TYPE^TRIGGER" -> its applier: the router, built once from the registry.
    routes: Mapping[str, Applier] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.group = GroupCommit(self._run_batch, max_batch=self.max_batch)
        self.routes = build_routes(self.appliers, self.mapped)

    # -- the intake path ------------------------------------------------------------------------

    def ingest(self, raw: bytes, *, peer: str = "", truncated: bool = False) -> IngestResult:
        """Store and apply one message; raises :class:`DatabaseUnavailable` if nothing was stored.

        Reading and mapping happen here, on the caller's thread and outside any transaction;
        the writes then join whatever messages other connections are committing at the same
        moment (:class:`GroupCommit`), and this returns once that transaction has committed.
        ``truncated`` marks a message that arrived too large and was cut: it is kept as rejected.
        """
        started = time.perf_counter()
        intake = self._prepare(raw, peer, truncated)
        result = self.group.submit(intake)
        if intake.plan is not None and intake.plan.enhanced and self.acknowledgments is not None:
            self.acknowledgments.wake()  # committed: an application ACK may be waiting
        result = _with_elapsed(result, (time.perf_counter() - started) * 1000)
        _log_result(result)
        return result

    def ingest_many(self, raws: Sequence[bytes], *, peer: str = "") -> list[IngestResult]:
        """Store and apply messages in order, each as if it had been sent alone; a result each.

        Each message is read, mapped, checked for a resend and applied as :meth:`ingest` does,
        with its own savepoint and its own outcome; they share commits the way messages of
        concurrent connections do (up to ``max_batch`` a transaction, queued with theirs), so
        thousands of messages cost a few hundred commits. Returns once all are committed. A
        message of which nothing could be stored (the database unavailable) is answered AR, to
        be sent again, as the listener answers it alone.
        """
        results: list[IngestResult] = []
        for start in range(0, len(raws), self.max_batch):
            chunk = raws[start : start + self.max_batch]
            started = time.perf_counter()
            intakes = [self._prepare(raw, peer, False) for raw in chunk]
            outcomes = self.group.submit_many(intakes)
            if self.acknowledgments is not None and any(
                intake.plan is not None and intake.plan.enhanced for intake in intakes
            ):
                self.acknowledgments.wake()  # committed: application ACKs may be waiting
            elapsed_ms = (time.perf_counter() - started) * 1000
            for raw, outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, IngestResult):
                    result = outcome
                else:
                    result = not_stored(raw, outcome)
                    log.error("message from %s not stored: %s", peer, outcome)
                result = _with_elapsed(result, elapsed_ms)
                _log_result(result)
                results.append(result)
        return results

    def check(self, raw: bytes) -> IngestResult:
        """What the intake would answer ``raw`` from reading and mapping it alone, storing
        nothing: a resend, and what applying it would run into, are not seen."""
        intake = self._prepare(raw, "", False)
        return _result(intake.row, intake.header, codec=intake.codec)

    def _prepare(self, raw: bytes, peer: str, truncated: bool) -> _Intake:
        now = datetime.now(UTC)
        row = _new_row(raw, peer, truncated, now)
        try:
            message, header = self._read(raw, truncated)
        except Exception as error:
            if not isinstance(error, MessageRejected):
                # A reader fault on bytes nobody foresaw: keep the message and refuse it, so
                # the sender hears why instead of seeing its connection dropped.
                log.exception("reading a message from %s failed", peer)
                error = MessageRejected(
                    f"{UNREADABLE}: {error}",
                    error_code=HL7ErrorCode.APPLICATION_INTERNAL_ERROR,
                )
            unread = read_header(raw)
            _describe_unread(row, unread)
            _mark(row, MessageStatus.REJECTED, error, now)
            return _Intake(
                row, now, unread, self.default_codec, rejection=error, plan=self._plan(unread)
            )
        _describe(row, header)
        row.digest = content_digest(message.text)
        row.dedup_key = _dedup_key(header)
        intake = _Intake(row, now, header, message.codec, message=message)
        intake.plan = self._plan(header)
        # Provisional until the effects are applied; set in full now so that success needs
        # no second write of the row.
        row.status, row.ack_code, row.processed_at = (
            MessageStatus.PROCESSED.value,
            AckCode.ACCEPT.value,
            now,
        )
        mapped = self._map(message, header, row, now)
        if mapped is not None:
            intake.applier, intake.prepared = mapped
        return intake

    def _plan(self, header: MessageHeader | None) -> AckPlan | None:
        return self.acknowledgments.plan(header) if self.acknowledgments is not None else None

    def _map(
        self, message: HL7Message, header: MessageHeader, row: MessageRow, now: datetime
    ) -> tuple[Applier, Any] | None:
        """The message's applier and what it prepared from the message, or None (the row marked
        rejected or failed) when the mapping cannot take it: one rule for intake and reprocess."""
        applier = self.routes[header.type_name]
        row.warnings = None
        try:
            prepared = applier.prepare(message)
            warnings = applier.warnings(prepared)
            row.warnings = [warning.as_json() for warning in warnings] or None
            return applier, prepared
        except MessageError as error:
            _mark_error(row, error, now)
        except Exception as error:
            log.exception("mapping message %s failed", header.control_id)
            _mark(row, MessageStatus.FAILED, _internal(error), now)
        return None

    def _run_batch(self, batch: Sequence[_Intake]) -> list[IngestResult | BaseException]:
        """Store a batch in one transaction; if that fails, each message on its own."""
        if len(batch) > 1:
            try:
                with self.db.transaction() as session:
                    return [self._store(session, intake) for intake in batch]
            except Exception:
                # Nothing of the batch was committed. A conflict with another node, or an
                # error one message's savepoint could not hold, must not hold back the rest.
                log.debug("a batch of %d failed; storing each on its own", len(batch))
        return [self._store_alone(intake) for intake in batch]

    def _store_alone(self, intake: _Intake) -> IngestResult | BaseException:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.db.transaction() as session:
                    return self._store(session, intake)
            except (DuplicateKey, _Conflict):
                # Another connection or node committed the same key a moment ago (this sender +
                # MSH-10, or a new patient): the next attempt sees it, as for any resend.
                if attempt == ATTEMPTS:
                    return DatabaseUnavailable("a conflicting write did not resolve")
            except Exception as error:
                return error
        raise AssertionError("unreachable")

    def _store(self, session: Session, intake: _Intake) -> IngestResult:
        result = self._store_message(session, intake)
        plan = intake.plan
        if plan is None or self.acknowledgments is None or result.header is None:
            return result
        # Built in the transaction: an application ACK for the outbound queue commits with
        # the message, and the answer says what was committed.
        row = session.get(MessageRow, result.message_id)
        assert row is not None  # stored just now, or the resent message's first copy
        reply = self.acknowledgments.reply(
            session,
            plan,
            result.header,
            intake.message,
            intake.prepared,
            row,
            duplicate=result.duplicate,
            codec=result.codec,
            now=intake.now,
        )
        return replace(result, reply=reply.payload, silent=reply.payload is None)

    def _store_message(self, session: Session, intake: _Intake) -> IngestResult:
        # A fresh row each time: a transaction rolled back and tried again starts from scratch.
        row = messages.copy_row(intake.row)
        now, header, codec = intake.now, intake.header, intake.codec
        if intake.rejection is not None:
            messages.add(session, row)
            return _result(row, header, codec=codec)
        assert header is not None  # a message read whole has its header
        # Almost every message is new: the insert itself is the duplicate check (the unique
        # sender + MSH-10 key), so a new message costs one statement here, a resend two.
        if not messages.add_unless_duplicate(session, row):
            existing = messages.by_dedup_key(session, row.dedup_key or "", for_update=True)
            if existing is None:
                raise _Conflict()  # the holder of the key went away meanwhile
            if existing.digest == row.digest:
                existing.duplicate_count += 1
                existing.last_duplicate_at = now
                return _result(existing, header, codec=codec, duplicate=True)
            # The sender reused an MSH-10 for different content. Dropping it as a resend
            # would lose an order without a word, so keep it and say so.
            row.dedup_key = None
            _mark(row, MessageStatus.REJECTED, _control_id_reused(header, existing), now)
            messages.add(session, row)
            return _result(row, header, codec=codec)
        if intake.applier is not None:
            self._apply(session, intake.applier, intake.prepared, header, row, now)
        return _result(row, header, codec=codec)

    def ingest_incomplete(self, raw: bytes, *, peer: str = "", reason: str = "") -> IngestResult:
        """Keep the bytes of a message whose frame never ended; there is nobody to ACK."""
        now = datetime.now(UTC)
        row = _new_row(raw, peer, True, now)
        rejection = MessageRejected(
            f"incomplete message: the connection ended ({reason}) before the end of the frame",
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
        result = self._store_rejected(row, rejection, now)
        _log_result(result, event="incomplete")
        return result

    def _store_rejected(
        self, row: MessageRow, rejection: MessageRejected, now: datetime
    ) -> IngestResult:
        unread = read_header(row.raw)
        _describe_unread(row, unread)
        _mark(row, MessageStatus.REJECTED, rejection, now)
        with self.db.transaction() as session:
            messages.add(session, row)
        return _result(row, unread, codec=self.default_codec)

    def _read(self, raw: bytes, truncated: bool) -> tuple[HL7Message, MessageHeader]:
        if truncated:
            # 100: what is kept lacks the segments after the cut.
            raise MessageRejected(
                f"message larger than the maximum accepted size; first {len(raw)} bytes kept",
                error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
            )
        message = parse_message(raw, self.default_codec)
        header = message.header()
        if not header.message_type:
            raise MessageRejected(
                "MSH-9 Message Type is empty",
                error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
                location="MSH-9",
            )
        if not header.control_id:
            raise MessageRejected(
                "MSH-10 Message Control ID is empty",
                error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
                location="MSH-10",
            )
        if self.acknowledgments is not None:
            # MSH-15 / MSH-16 (enhanced mode) must be values of table 0155, or the sender
            # cannot be told in the mode it asked for.
            self.acknowledgments.check(header)
        if header.version not in self.accepted_versions:
            raise MessageRejected(
                f"HL7 version {header.version or '(empty)'!r} in MSH-12 is not accepted "
                f"(accepted: {describe_versions(self.accepted_versions)})",
                error_code=HL7ErrorCode.UNSUPPORTED_VERSION_ID,
                location="MSH-12",
            )
        if header.type_name not in self.routes:
            known_type = any(key.startswith(header.message_type + "^") for key in self.routes)
            raise MessageRejected(
                f"message type {header.type_name!r} in MSH-9 is not handled by this broker"
                + _taken(self.routes, header.message_type),
                error_code=HL7ErrorCode.UNSUPPORTED_EVENT_CODE
                if known_type
                else HL7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                location="MSH-9",
            )
        return message, header

    def _apply(
        self,
        session: Session,
        applier: Applier,
        prepared: Any,
        header: MessageHeader,
        row: MessageRow,
        now: datetime,
    ) -> None:
        try:
            # A savepoint: if the effects fail halfway, they vanish and the message stays,
            # and so do the other messages sharing the transaction.
            with session.begin_nested():
                applier.apply(session, prepared, row)
        except DatabaseUnavailable:
            raise
        except Exception as error:
            if is_duplicate_key(error):
                raise _Conflict() from error
            # Rows the rolled-back effects created may linger in the session's identity map
            # after the savepoint is gone; everything before it is flushed, so start clean.
            session.expunge_all()
            session.add(row)
            if isinstance(error, MessageError):
                _mark_error(row, error, now)
            else:
                log.exception("applying message %s failed", header.control_id)
                _mark(row, MessageStatus.FAILED, _internal(error), now)
        else:
            if row.status != MessageStatus.PROCESSED:  # a reprocessed message
                row.status = MessageStatus.PROCESSED
                row.ack_code = AckCode.ACCEPT
                row.error = row.error_location = row.error_code = None
                row.processed_at = now

    # -- repair ---------------------------------------------------------------------------------

    def reprocess(self, message_id: int, *, actor: str = "") -> IngestResult:
        """Apply a stored message again, e.g. after its mapping was fixed. Processed ones are left.

        ``actor`` (a user of the web page) is written to the audit trail with the outcome.
        """
        started = time.perf_counter()
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            row = get_locked(session, MessageRow, message_id, "message")
            if row.status == MessageStatus.PROCESSED:
                raise ValueError(f"message {message_id} was already processed; it is applied once")
            copy = messages.resubmitted_as(session, message_id)
            if copy is not None:
                raise ValueError(
                    f"message {message_id} was edited and resubmitted as message {copy}; "
                    f"reprocess that one"
                )
            before: dict[str, object] = {"status": row.status, "error": row.error}
            row.attempts += 1
            try:
                message, header = self._read(row.raw, row.truncated)
            except MessageRejected as rejection:
                _mark(row, MessageStatus.REJECTED, rejection, now)
                result = _result(row, read_header(row.raw), codec=self.default_codec)
            else:
                _describe(row, header)
                row.digest = content_digest(message.text)
                clash = self._claim_key(session, row, header)
                if clash is None:
                    self._reapply(session, message, header, row, now)
                else:
                    _mark(row, MessageStatus.REJECTED, clash, now)
                result = _result(row, header, codec=message.codec)
            if actor:
                _audit(session, now, actor, "message reprocess", row, before)
        result = _with_elapsed(result, (time.perf_counter() - started) * 1000)
        _log_result(result, event="reprocessed")
        return result

    def _reapply(
        self,
        session: Session,
        message: HL7Message,
        header: MessageHeader,
        row: MessageRow,
        now: datetime,
    ) -> None:
        mapped = self._map(message, header, row, now)
        if mapped is not None:
            applier, prepared = mapped
            self._apply(session, applier, prepared, header, row, now)

    def resubmit(self, original_id: int, raw: bytes, *, actor: str) -> IngestResult:
        """Store an edited copy of a failed or rejected message and apply it.

        The original is kept byte for byte; the copy points at it. When both carry the same
        sender + MSH-10, the copy takes over that key, so the two can never both be applied.
        """
        started = time.perf_counter()
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            original = get_locked(session, MessageRow, original_id, "message")
            if original.status == MessageStatus.PROCESSED:
                raise ValueError(
                    f"message {original_id} was already processed; only a failed or rejected "
                    "message can be edited and resubmitted"
                )
            row = _new_row(raw, f"edited by {actor}", False, now)
            row.original_id = original.id
            try:
                message, header = self._read(raw, False)
            except MessageRejected as rejection:
                unread = read_header(raw)
                _describe_unread(row, unread)
                _mark(row, MessageStatus.REJECTED, rejection, now)
                messages.add(session, row)
                result = _result(row, unread, codec=self.default_codec)
            else:
                _describe(row, header)
                row.digest = content_digest(message.text)
                key = _dedup_key(header)
                if original.dedup_key == key:
                    original.dedup_key = None
                    session.flush()  # the key is free before the copy claims it
                holder = messages.by_dedup_key(session, key, for_update=True)
                row.status, row.ack_code, row.processed_at = (
                    MessageStatus.PROCESSED.value,
                    AckCode.ACCEPT.value,
                    now,
                )
                if holder is not None:
                    taken = _duplicate_key(
                        f"MSH-10 {header.control_id!r} from {_sender(header)} is already "
                        f"used by message {holder.id}; give the copy its own MSH-10"
                    )
                    _mark(row, MessageStatus.REJECTED, taken, now)
                    messages.add(session, row)
                else:
                    row.dedup_key = key
                    messages.add(session, row)
                    self._reapply(session, message, header, row, now)
                result = _result(row, header, codec=message.codec)
            _audit(
                session,
                now,
                actor,
                "message resubmit",
                original,
                {"status": original.status},
                extra={"copy_id": row.id, "copy_status": row.status},
            )
        result = _with_elapsed(result, (time.perf_counter() - started) * 1000)
        _log_result(result, event="resubmitted")
        return result

    def _claim_key(
        self, session: Session, row: MessageRow, header: MessageHeader
    ) -> MessageRejected | None:
        """Give a reprocessed message its sender + MSH-10 key, unless another message holds it.

        A resend of a rejected message is a second row with the same content: once one of the
        two is applied, the other must not be, or the message would be applied twice.
        """
        key = _dedup_key(header)
        if row.dedup_key == key:
            return None
        holder = messages.by_dedup_key(session, key, for_update=True)
        if holder is None or holder.id == row.id:
            row.dedup_key = key
            return None
        if holder.digest == row.digest:
            return _duplicate_key(
                f"resend of message {holder.id} ({holder.status}); it is applied once"
            )
        return _control_id_reused(header, holder)


# -- helpers --------------------------------------------------------------------------------------


def _taken(routes: Mapping[str, Applier], code: str) -> str:
    """ "; it takes ADT^A01 A02 ..." for a type with other triggers taken, else ""."""
    triggers = sorted(key.partition("^")[2] for key in routes if key.startswith(code + "^"))
    return f"; it takes {code}^{' '.join(triggers)}" if triggers else ""


def build_routes(
    appliers: Mapping[str, Applier], mapped: Collection[str] | None = None
) -> dict[str, Applier]:
    """The router: each registered MSH-9 type the mappings map, to its applier by name.

    A type the registry lists but no profile maps, or whose applier is not given, is left out,
    so the intake answers it as unsupported (AR) instead of failing to map it.
    """
    table: dict[str, Applier] = {}
    for type_name in registry.type_names():
        found = registry.route(type_name)
        assert found is not None  # every registered name routes
        applier = appliers.get(found.applier)
        if applier is not None and (mapped is None or type_name in mapped):
            table[type_name] = applier
    return table


def not_stored(raw: bytes, error: BaseException) -> IngestResult:
    """The answer to a message of which nothing was stored: AR, so that the sender resends it."""
    reason = "database unavailable" if isinstance(error, DatabaseUnavailable) else "internal error"
    header = read_header(raw)
    return IngestResult(
        ack_code=AckCode.REJECT,
        header=header,
        error=f"message not stored, {reason}; resend later ({error})",
        error_code=HL7ErrorCode.APPLICATION_INTERNAL_ERROR,
        type_name=header.type_name if header is not None else "",
    )


def _audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    row: MessageRow,
    before: dict[str, object],
    *,
    extra: dict[str, object] | None = None,
) -> None:
    """A staff action on a message, in the audit trail with the state before."""
    after = {"status": row.status, "error": row.error, **(extra or {})}
    audit(
        Context(session, now, row.id, actor), action, "message", row.id, before=before, after=after
    )


def _new_row(raw: bytes, peer: str, truncated: bool, now: datetime) -> MessageRow:
    # Every column the success path would touch is set here, so success writes the row once.
    return MessageRow(
        received_at=now,
        peer=peer[:64],
        raw=raw,
        size=len(raw),
        truncated=truncated,
        attempts=1,
        duplicate_count=0,
        error=None,
        error_code=None,
        error_location=None,
        warnings=None,
    )


def _dedup_key(header: MessageHeader) -> str:
    # Unit separator between the parts: it cannot occur in a decoded HL7 field.
    return "\x1f".join((header.sending_application, header.sending_facility, header.control_id))


def _sender(header: MessageHeader) -> str:
    return "/".join(part for part in (header.sending_application, header.sending_facility) if part)


def _describe(row: MessageRow, header: MessageHeader) -> None:
    row.sending_application = header.sending_application[:227]
    row.sending_facility = header.sending_facility[:227]
    row.receiving_application = header.receiving_application[:227]
    row.receiving_facility = header.receiving_facility[:227]
    row.message_type = header.message_type[:3]
    row.trigger_event = header.trigger_event[:3]
    row.control_id = header.control_id[:199] or None
    row.version = header.version[:16]
    row.charset = header.charset[:32]


def _describe_unread(row: MessageRow, header: MessageHeader | None) -> None:
    """Best-effort header columns for a message that could not be read (from its bytes)."""
    _describe(row, header if header is not None else _NO_HEADER)
    row.dedup_key = None
    row.digest = ""


_NO_HEADER = MessageHeader(fields=())


def _duplicate_key(text: str) -> MessageRejected:
    """A rejection for an MSH-10 another message holds: HL7 error 205, at MSH-10."""
    return MessageRejected(
        text, error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER, location="MSH-10"
    )


def _control_id_reused(header: MessageHeader, holder: MessageRow) -> MessageRejected:
    """The sender gave a different message the MSH-10 of ``holder``."""
    return _duplicate_key(
        f"MSH-10 {header.control_id!r} from {_sender(header)} was already used for a "
        f"different message (id {holder.id}); control IDs must be unique"
    )


def _mark(row: MessageRow, status: MessageStatus, error: MessageError, now: datetime) -> None:
    row.status = status
    row.ack_code = status.ack_code
    row.error = error.text
    row.error_code = int(error.error_code)
    row.error_location = error.location
    row.processed_at = now


def _mark_error(row: MessageRow, error: MessageError, now: datetime) -> None:
    rejected = error.ack_code == AckCode.REJECT
    _mark(row, MessageStatus.REJECTED if rejected else MessageStatus.FAILED, error, now)


def _internal(error: Exception) -> MessageError:
    return MessageError(f"{INTERNAL_FAULT}: {error}")


def _result(
    row: MessageRow, header: MessageHeader | None, *, codec: str, duplicate: bool = False
) -> IngestResult:
    return IngestResult(
        ack_code=AckCode(row.ack_code),
        header=header,
        message_id=row.id,
        status=MessageStatus(row.status),
        error=row.error,
        error_code=row.error_code,
        error_location=row.error_location,
        duplicate=duplicate,
        type_name=f"{row.message_type}^{row.trigger_event}"
        if row.trigger_event
        else row.message_type,
        codec=codec,
        warnings=tuple(MessageWarning.from_json(item) for item in row.warnings or ())
        if row.status == MessageStatus.PROCESSED
        else (),
    )


def _with_elapsed(result: IngestResult, elapsed_ms: float) -> IngestResult:
    return replace(result, elapsed_ms=elapsed_ms)


def _log_result(result: IngestResult, event: str = "message") -> None:
    log.info(
        "%s id=%s control_id=%s type=%s status=%s ack=%s duplicate=%s ms=%.1f%s",
        event,
        result.message_id,
        result.control_id or "-",
        result.type_name or "-",
        result.status,
        result.ack_code,
        result.duplicate,
        result.elapsed_ms,
        (f" error={result.error!r}" if result.error else "")
        + (f" warnings={len(result.warnings)}" if result.warnings else ""),
        extra={
            "event": event,
            "message_id": result.message_id,
            "control_id": result.control_id,
            "message_type": result.type_name,
            "status": str(result.status),
            "ack_code": str(result.ack_code),
            "duplicate": result.duplicate,
            "ms": round(result.elapsed_ms, 2),
            "error": result.error,
        },
    )
