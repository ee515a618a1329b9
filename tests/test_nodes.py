"""Several `mwlbroker serve` processes on one database, and stopping one gracefully.

Each test starts real serve processes (on SQLite and on PostgreSQL) and talks to them as a
RIS and a modality would: MLLP over sockets, MPPS with pynetdicom, a RIS receiving status
messages. What it checks is what an administrator running two nodes relies on.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

import pytest
from pydicom.uid import generate_uid

from mwlbroker.store import jobs as job_store
from mwlbroker.store import messages, outbound, worklist
from mwlbroker.store.db import Database
from tests.support.dicom_peers import Modality, ended, in_progress
from tests.support.hl7_messages import ack_fields, orm, segment_fields
from tests.support.mllp_peers import RIS, Peer
from tests.support.polling import stays_true, wait_until
from tests.support.processes import start_serve

pytestmark = pytest.mark.slow

QUIET = {  # every job off but the one a test watches
    "MWLBROKER_JOBS_EXPIRE_STEPS": "off",
    "MWLBROKER_JOBS_RETENTION": "off",
    "MWLBROKER_JOBS_OUTBOUND_RETRY": "off",
    "MWLBROKER_JOBS_DUPLICATE_SWEEP": "off",
}


def _runs(db: Database) -> list[job_store.JobRunRow]:
    with db.reading() as session:
        found = job_store.runs(session, job="health_check", limit=10000)
    return sorted(found, key=lambda row: row.id)


def test_scheduled_jobs_run_on_one_node_and_move_on_when_it_dies(database_url, tmp_path):
    settings = {
        **QUIET,
        "MWLBROKER_JOBS_HEALTH_CHECK": "every 1s",
        "MWLBROKER_JOBS_LEASE_SECONDS": "3",
    }
    first = start_serve(database_url, tmp_path, **settings)
    second = start_serve(database_url, tmp_path, **settings)
    db = Database(database_url)
    try:
        wait_until(lambda: len(_runs(db)) >= 5, timeout=20)
        nodes = {row.node for row in _runs(db)}
        assert len(nodes) == 1, f"both nodes ran the job: {nodes}"
        [holder] = nodes
        pids = {first.process.pid: first, second.process.pid: second}
        dying = pids[int(holder.rsplit(":", 1)[1])]
        survivor = second if dying is first else first

        dying.process.send_signal(signal.SIGKILL)  # no goodbye: the lease must run out
        dying.process.wait(10)
        killed_at = datetime.now(UTC)
        taken = wait_until(lambda: [r for r in _runs(db) if r.node != holder] or None, timeout=20)
        # The survivor waited for the lease to lapse (3 s), then took over on its own.
        assert (taken[0].started_at.replace(tzinfo=UTC) - killed_at).total_seconds() > 0.5
        before = len(_runs(db))
        wait_until(lambda: len(_runs(db)) >= before + 3, timeout=20)
        later = [r for r in _runs(db) if r.started_at.replace(tzinfo=UTC) > killed_at]
        assert {r.node for r in later} == {taken[0].node}
        assert str(survivor.process.pid) in taken[0].node
    finally:
        db.dispose()
        for served in (first, second):
            if served.process.poll() is None:
                served.terminate()
            else:
                served.close()


def test_a_node_stopping_gracefully_hands_the_jobs_over_at_once(database_url, tmp_path):
    settings = {
        **QUIET,
        "MWLBROKER_JOBS_HEALTH_CHECK": "every 1s",
        "MWLBROKER_JOBS_LEASE_SECONDS": "60",  # a lapse would take a minute: none is needed
    }
    first = start_serve(database_url, tmp_path, **settings)
    db = Database(database_url)
    second = None
    try:
        wait_until(lambda: len(_runs(db)) >= 2, timeout=20)
        second = start_serve(database_url, tmp_path, **settings)
        assert first.terminate() == 0
        stopped_at = datetime.now(UTC)
        wait_until(
            lambda: [r for r in _runs(db) if str(second.process.pid) in r.node] or None,
            timeout=15,
        )
        assert (datetime.now(UTC) - stopped_at).total_seconds() < 15
    finally:
        db.dispose()
        for served in (first, second):
            if served is not None and served.process.poll() is None:
                served.terminate()


def test_the_same_message_sent_to_two_nodes_is_applied_once(database_url, tmp_path):
    first = start_serve(database_url, tmp_path, **QUIET)
    second = start_serve(database_url, tmp_path, **QUIET)
    db = Database(database_url)
    try:
        answers: dict[int, str] = {}
        go = threading.Barrier(2)

        def send(port: int) -> None:
            with Peer(port) as peer:
                go.wait()
                answers[port] = ack_fields(peer.send(orm("TWICE")))["MSA"][1]

        threads = [
            threading.Thread(target=send, args=(served.hl7_port,)) for served in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert list(answers.values()) == ["AA", "AA"]  # both answered: one stored, one resend
        with db.reading() as session:
            [message] = messages.latest(session, control_id="TWICE")
            assert message.duplicate_count == 1
            assert len(worklist.search_steps(session, accession_number="APLTWICE")) == 1
    finally:
        db.dispose()
        first.terminate()
        second.terminate()


def test_status_messages_go_to_the_ris_once_from_two_nodes(database_url, tmp_path):
    with RIS() as ris:
        settings = {**QUIET, "MWLBROKER_OUTBOUND_DESTINATIONS": f"RIS=127.0.0.1:{ris.port}"}
        first = start_serve(database_url, tmp_path, **settings)
        second = start_serve(database_url, tmp_path, **settings)
        db = Database(database_url)
        try:
            with Peer(first.hl7_port) as peer:
                assert ack_fields(peer.send(orm("ONCE")))["MSA"][1] == "AA"
            modality = Modality(second.dicom_port)  # the exam is reported to the other node
            try:
                [item] = modality.worklist(accession="APLONCE")
                uid = generate_uid()
                assert modality.create(in_progress(item), uid)[0].Status == 0x0000
                assert modality.set(uid, ended("COMPLETED")).Status == 0x0000
            finally:
                modality.close()
            ris.wait_for(2)
            # Nothing says "no node will send again", so watch a window for the wrong thing:
            # 3 s, in which both nodes' senders look at the queue again (each polls every second
            # when nobody wakes it: services/delivery.py POLL_SECONDS).
            stays_true(
                lambda: len(ris.received) == 2,
                seconds=3,
                what="the RIS having received each status message once",
            )
            assert [segment_fields(m, "ORC")[5] for m in ris.received] == ["IP", "CM"]
            with db.reading() as session:
                rows = outbound.latest(session)
                assert sorted((r.order_status, r.status, r.attempts) for r in rows) == [
                    ("CM", "sent", 1),
                    ("IP", "sent", 1),
                ]
        finally:
            db.dispose()
            first.terminate()
            second.terminate()


def test_sigterm_finishes_the_message_in_hand_and_loses_nothing_acknowledged(
    database_url, tmp_path
):
    served = start_serve(database_url, tmp_path, **QUIET)
    acked: list[str] = []
    stop_after = threading.Event()

    def stream() -> None:
        try:
            with Peer(served.hl7_port) as peer:
                for number in range(2000):
                    control_id = f"T{number}"
                    answer = ack_fields(peer.send(orm(control_id)))
                    if answer["MSA"][1] == "AA":
                        acked.append(control_id)
                    if len(acked) == 30:
                        stop_after.set()
        except (OSError, AssertionError, KeyError, IndexError):
            return  # the broker closed the connection: the stream ends here

    sender = threading.Thread(target=stream)
    sender.start()
    assert stop_after.wait(60)
    assert served.terminate() == 0  # SIGTERM: a clean exit, within the test's 30 s
    sender.join(30)
    assert any(record.get("event") == "stopped" for record in served.log)
    assert 30 <= len(acked) < 2000
    db = Database(database_url)
    try:
        with db.reading() as session:
            stored = {row.control_id for row in messages.latest(session, limit=5000)}
        assert set(acked) <= stored  # every acknowledged message is there
    finally:
        db.dispose()
