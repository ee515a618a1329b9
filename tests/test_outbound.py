"""Status messages back to the RIS, received on a real MLLP socket, on SQLite and PostgreSQL.

The RIS orders over MLLP; a modality (pynetdicom) starts, completes or discontinues the exam by
MPPS; a small MLLP server in the test plays the RIS receiving ORM^O01 (v2.3.1) or OMI^O23
(v2.5.1) status messages, down at first when a test needs it, refusing when a test says so.
"""

from __future__ import annotations

import json

from tests.support.hl7_messages import segment_fields
from tests.support.mllp_peers import RIS
from tests.support.polling import wait_until
from tests.support.processes import cli_env, run_cli
from tests.support.workflow import FAST_RETRIES, destination, order, perform, queue


def orc5(message: bytes) -> str:
    return segment_fields(message, "ORC")[5]


# -- what the RIS hears -----------------------------------------------------------------------------


def test_the_ris_hears_in_progress_then_completed(broker_factory, ris):
    broker = broker_factory(outbound__destinations=[destination(ris)])
    step = order(broker, "C1")

    perform(broker, step, "COMPLETED")

    started, completed = ris.wait_for(2)
    for message in (started, completed):
        msh = segment_fields(message, "MSH")
        assert (msh[3], msh[5], msh[6], msh[9], msh[12]) == (
            "MWLBROKER",
            "RIS",
            "HOSPITAL",
            "ORM^O01",
            "2.3.1",
        )
        orc = segment_fields(message, "ORC")
        assert (orc[1], orc[2], orc[3]) == ("SC", "PLC1", "FPLC1")
        assert segment_fields(message, "PID")[3] == "PID1^^^HOSPITAL"
        assert segment_fields(message, "PID")[5] == "DOE^JOHN"
        obr = segment_fields(message, "OBR")
        assert (obr[18], obr[19], obr[20], obr[24]) == ("APLC1", "RPLC1", "SPLC1", "CT")
        assert obr[4] == "CTCHEST^CT chest^L"
        assert segment_fields(message, "ZDS")[1].split("^")[0] == step.study_instance_uid
    assert (orc5(started), orc5(completed)) == ("IP", "CM")
    assert segment_fields(started, "OBR")[7] == "20261127143500"  # the exam's start
    assert segment_fields(completed, "OBR")[8] == "20261127144500"  # and its end
    rows = wait_until(lambda: (rs := queue(broker)) and all(r.status == "sent" for r in rs) and rs)
    assert [(r.order_status, r.ack_code, r.attempts) for r in rows] == [
        ("IP", "AA", 1),
        ("CM", "AA", 1),
    ]
    assert [segment_fields(m, "MSH")[10] for m in (started, completed)] == [
        r.control_id for r in rows
    ]


def test_a_discontinued_exam_is_reported_dc(broker_factory, ris):
    broker = broker_factory(outbound__destinations=[destination(ris)])
    perform(broker, order(broker, "C1"), "DISCONTINUED")
    assert [orc5(m) for m in ris.wait_for(2)] == ["IP", "DC"]


def test_a_v251_destination_gets_omi_o23(broker_factory, ris):
    broker = broker_factory(outbound__destinations=[destination(ris, version="2.5.1")])
    step = order(broker, "C1")

    perform(broker, step)

    [message] = ris.wait_for(1)
    msh = segment_fields(message, "MSH")
    assert (msh[9], msh[12]) == ("OMI^O23^OMI_O23", "2.5.1")
    assert segment_fields(message, "ORC")[1:6] == ["SC", "PLC1", "FPLC1", "", "IP"]
    ipc = segment_fields(message, "IPC")
    assert ipc[1:6] == ["APLC1", "RPLC1", step.study_instance_uid, "SPLC1", "CT"]
    assert segment_fields(message, "ZDS") == []


def test_each_destination_gets_its_own_copy(broker_factory, ris):
    with RIS() as billing:
        broker = broker_factory(
            outbound__destinations=[
                destination(ris),
                destination(billing, "BILLING", version="2.5.1"),
            ]
        )
        perform(broker, order(broker, "C1"))
        assert segment_fields(ris.wait_for(1)[0], "MSH")[9] == "ORM^O01"
        assert segment_fields(billing.wait_for(1)[0], "MSH")[9] == "OMI^O23^OMI_O23"
    assert sorted(r.destination for r in queue(broker)) == ["BILLING", "RIS"]


def test_nothing_is_queued_without_destinations(broker):
    perform(broker, order(broker, "C1"), "COMPLETED")
    assert queue(broker) == []


# -- when the RIS is not there ----------------------------------------------------------------------


def test_ris_down_then_up_gets_every_message_once_in_order_per_order(broker_factory):
    with RIS(listening=False) as ris:  # bound, not listening: connections are refused
        broker = broker_factory(outbound__destinations=[destination(ris)], **FAST_RETRIES)
        first, second = order(broker, "C1"), order(broker, "C2")
        perform(broker, first, "COMPLETED")
        perform(broker, second, "DISCONTINUED")

        pending = wait_until(lambda: (rows := queue(broker)) and rows[0].last_error and rows)
        assert [r.status for r in pending] == ["pending"] * 4
        assert "cannot connect" in pending[0].last_error  # what `outbound list` shows
        assert all(r.attempts == 0 for r in pending)  # nothing left the broker

        ris.listen()  # the RIS is back

        received = ris.wait_for(4)
        rows = wait_until(
            lambda: (rs := queue(broker)) and all(r.status == "sent" for r in rs) and rs
        )
    by_order: dict[str, list[str]] = {}
    for message in received:
        by_order.setdefault(segment_fields(message, "ORC")[2], []).append(orc5(message))
    assert by_order == {"PLC1": ["IP", "CM"], "PLC2": ["IP", "DC"]}
    assert len(received) == 4  # once each
    assert sorted(r.control_id for r in rows) == sorted(
        segment_fields(m, "MSH")[10] for m in received
    )


def test_a_refused_message_is_retried_then_held_with_its_order_until_released(
    broker_factory, database_url
):
    refusing = {"on": True}

    def answer(message: bytes) -> str:
        # This RIS refuses everything about order PLC1 until told otherwise.
        return "AE" if refusing["on"] and segment_fields(message, "ORC")[2] == "PLC1" else "AA"

    with RIS(answer) as ris:
        broker = broker_factory(
            outbound__destinations=[destination(ris)], outbound__max_attempts=2, **FAST_RETRIES
        )
        held_step, other_step = order(broker, "C1"), order(broker, "C2")
        perform(broker, held_step, "COMPLETED")  # IP refused twice, then held; CM waits
        perform(broker, other_step, "COMPLETED")  # another order's messages go through

        def settled():
            rows = queue(broker)
            failed = [r for r in rows if r.status == "failed"]
            sent = [r for r in rows if r.status == "sent"]
            return (failed, sent) if len(failed) == 1 and len(sent) == 2 else None

        [failed], sent = wait_until(settled)
        assert (failed.order_status, failed.attempts, failed.ack_code) == ("IP", 2, "AE")
        assert "not now" in failed.last_error
        assert [r.order_status for r in sent] == ["IP", "CM"]
        [waiting] = [r for r in queue(broker) if r.status == "pending"]
        assert (waiting.order_status, waiting.attempts) == ("CM", 0)  # never sent before IP

        env = cli_env(database_url)
        listed = run_cli("outbound", "list", "--status", "failed", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == [failed.id]
        shown = run_cli("outbound", "show", str(failed.id), env=env)
        assert "ORC|SC|PLC1|FPLC1||IP" in shown.stdout and "MSA|AE" in shown.stdout

        refusing["on"] = False
        retried = run_cli("outbound", "retry", str(failed.id), env=env)
        assert retried.returncode == 0, retried.stderr
        assert "pending" in retried.stdout

        rows = wait_until(
            lambda: (rs := queue(broker)) and all(r.status == "sent" for r in rs) and rs
        )
        assert len(rows) == 4
        plc1 = [orc5(m) for m in ris.received if segment_fields(m, "ORC")[2] == "PLC1"]
        assert plc1 == ["IP", "IP", "IP", "CM"]  # two refusals, the retry, then CM

        again = run_cli("outbound", "retry", str(failed.id), env=env)
        assert again.returncode == 1 and "already delivered" in again.stderr
        unknown = run_cli("outbound", "retry", "999999", env=env)
        assert unknown.returncode == 1 and "no outbound message" in unknown.stderr


def test_a_message_without_an_ack_counts_as_an_attempt(broker_factory):
    answers = iter([None, "AA"])  # the first attempt gets no answer at all

    with RIS(lambda _message: next(answers)) as ris:
        broker = broker_factory(
            outbound__destinations=[destination(ris)], outbound__ack_timeout=0.3, **FAST_RETRIES
        )
        perform(broker, order(broker, "C1"))
        received = ris.wait_for(2)
        [row] = wait_until(lambda: (rs := queue(broker)) and rs[0].status == "sent" and rs)
    assert row.attempts == 2 and row.last_error is None
    assert segment_fields(received[0], "MSH")[10] == segment_fields(received[1], "MSH")[10]
