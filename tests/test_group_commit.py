"""Group commit: messages arriving together share a transaction, and each keeps its own fate.

On SQLite and PostgreSQL: concurrent MLLP senders are answered after shared commits, a
message sent on two connections at once is applied once, and a message that fails inside a
shared transaction is stored with its error while its neighbours are applied.
(The crash test kills the broker under eight such senders.)
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from mwlbroker.services.ingest import IngestResult, IngestService
from mwlbroker.store.tables import MessageRow, OrderRow, PatientRow
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.polling import wait_until

SENDERS = 8


def test_concurrent_senders_share_commits_and_a_double_send_is_applied_once(broker):
    group = broker.ingest.group
    batches_before, items_before = group.batches, group.items
    acks: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(SENDERS)

    def sender(number: int) -> None:
        try:
            with Peer(broker.hl7.port) as peer:
                start.wait()
                # Every sender also sends the same message at about the same moment.
                for control_id in ["TWICE", *(f"G{number}-{i}" for i in range(20))]:
                    code = ack_fields(peer.send(orm(control_id)))["MSA"][1]
                    acks.setdefault(control_id, []).append(code)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert acks.pop("TWICE") == ["AA"] * SENDERS
    assert len(acks) == SENDERS * 20 and all(codes == ["AA"] for codes in acks.values())
    with broker.db.reading() as session:
        twice = session.scalars(select(MessageRow).where(MessageRow.control_id == "TWICE")).all()
        orders = session.scalar(select(func.count()).select_from(OrderRow))
        processed = session.scalar(
            select(func.count()).select_from(MessageRow).where(MessageRow.status == "processed")
        )
    assert len(twice) == 1 and twice[0].duplicate_count == SENDERS - 1
    assert orders == processed == SENDERS * 20 + 1
    # Messages did share transactions: fewer batches than messages.
    items = group.items - items_before
    assert items == SENDERS * 21
    assert group.batches - batches_before < items


class _Gate:
    """Holds the first message's transaction open until the test lets it go."""

    def __init__(self, inner: Any, control_id: str) -> None:
        self.inner = inner
        self.control_id = control_id
        self.entered = threading.Event()
        self.release = threading.Event()

    def prepare(self, message: Any) -> Any:
        return self.inner.prepare(message)

    def warnings(self, prepared: Any) -> Any:
        return self.inner.warnings(prepared)

    def apply(self, session: Any, prepared: Any, row: MessageRow) -> None:
        if row.control_id == self.control_id:
            self.entered.set()
            assert self.release.wait(30)
        self.inner.apply(session, prepared, row)


def _with_study(message: bytes, uid: str) -> bytes:
    return message + f"ZDS|{uid}^100^Application^DICOM\r".encode()


def test_a_failing_message_in_a_batch_does_not_undo_its_neighbours(broker):
    gate = _Gate(broker.ingest.appliers["orders"], "FIRST")
    service = IngestService(broker.db, appliers={"orders": gate})
    results: dict[str, IngestResult] = {}

    def send(control_id: str, message: bytes) -> threading.Thread:
        def run() -> None:
            results[control_id] = service.ingest(message)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    # FIRST leads a batch of its own and is held inside it; the next three queue behind it
    # and are then committed together, in one transaction.
    threads = [send("FIRST", _with_study(orm("FIRST", patient="PA"), "1.2.3.1"))]
    assert gate.entered.wait(10)
    batch = [
        ("GOOD1", orm("GOOD1", patient="PB")),
        # A new patient PC, then a study UID that belongs to PA: refused after the insert.
        ("BAD", _with_study(orm("BAD", patient="PC"), "1.2.3.1")),
        ("GOOD2", orm("GOOD2", patient="PC")),
    ]
    for queued, (control_id, message) in enumerate(batch, start=1):
        threads.append(send(control_id, message))
        wait_until(lambda queued=queued: service.group.waiting == queued)
    gate.release.set()
    for thread in threads:
        thread.join(30)

    assert (service.group.batches, service.group.items) == (2, 4)
    assert {c: r.ack_code.value for c, r in results.items()} == {
        "FIRST": "AA",
        "GOOD1": "AA",
        "BAD": "AE",
        "GOOD2": "AA",
    }
    assert "Study Instance UID 1.2.3.1 already belongs to patient PA" in (
        results["BAD"].error or ""
    )
    with broker.db.reading() as session:
        rows = {
            row.control_id: row
            for row in session.scalars(select(MessageRow).where(MessageRow.control_id != None))  # noqa: E711
        }
        patients = session.scalars(select(PatientRow.patient_id).order_by(PatientRow.id)).all()
        orders = session.scalars(select(OrderRow.placer_order_number).order_by(OrderRow.id)).all()
    assert rows["BAD"].status == "failed" and rows["BAD"].ack_code == "AE"
    assert "Study Instance UID" in (rows["BAD"].error or "")
    assert rows["GOOD1"].status == rows["GOOD2"].status == "processed"
    # The refused message's patient vanished with it; the next message created PC once.
    assert patients == ["PA", "PB", "PC"]
    assert orders == ["PLFIRST", "PLGOOD1", "PLGOOD2"]
