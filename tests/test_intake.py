"""HL7 intake over a real MLLP socket, on SQLite and PostgreSQL: every rule of the ACK contract."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from mwlbroker.store.tables import MessageRow
from tests.support.hl7_messages import ack_fields, hl7, orm
from tests.support.mllp_peers import Peer
from tests.support.polling import wait_until
from tests.support.samples import SAMPLES, sample_files


def stored(broker, **where) -> list[MessageRow]:
    with broker.db.reading() as session:
        query = select(MessageRow).order_by(MessageRow.id)
        for name, value in where.items():
            query = query.where(getattr(MessageRow, name) == value)
        return list(session.scalars(query))


def test_order_is_stored_and_acked_aa_answering_the_sender(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("MSG001")))
    assert ack["MSA"][1:3] == ["AA", "MSG001"]
    assert ack["MSH"][3] == "MWLBROKER"  # MSH-3: us
    assert ack["MSH"][5:7] == ["RIS", "HOSPITAL"]  # MSH-5/6 answer the sender's MSH-3/4
    assert ack["MSH"][9] == "ACK^O01^ACK"  # MSH-9.3 message structure exists from v2.3.1
    assert ack["MSH"][12] == "2.3.1"
    assert "ERR" not in ack
    [row] = stored(broker, control_id="MSG001")
    assert (row.status, row.ack_code, row.message_type, row.trigger_event) == (
        "processed",
        "AA",
        "ORM",
        "O01",
    )
    assert row.raw == orm("MSG001")  # byte for byte
    assert (row.sending_application, row.sending_facility, row.version) == (
        "RIS",
        "HOSPITAL",
        "2.3.1",
    )


def test_every_sample_message_is_accepted(broker):
    with Peer(broker.hl7.port) as peer:
        for path in sample_files():
            wire = path.read_bytes().replace(b"\n", b"\r")
            ack = ack_fields(peer.send(wire))
            assert ack["MSA"][1] == "AA", (path.name, ack)
    assert len(stored(broker, status="processed")) == len(sample_files())


def test_v251_ack_uses_three_part_msh9_and_echoes_charset(broker):
    wire = (SAMPLES / "10_omi_o23_nw_v251.hl7").read_bytes().replace(b"\n", b"\r")
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(wire))
    assert ack["MSH"][9] == "ACK^O23^ACK"
    assert ack["MSH"][18] == "UNICODE UTF-8"


def test_many_messages_on_one_connection(broker):
    with Peer(broker.hl7.port) as peer:
        codes = [ack_fields(peer.send(orm(f"SEQ{i}")))["MSA"][1:3] for i in range(50)]
    assert codes == [["AA", f"SEQ{i}"] for i in range(50)]
    assert len(stored(broker)) == 50


def test_many_concurrent_connections(broker):
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            with Peer(broker.hl7.port) as peer:
                for i in range(10):
                    control_id = f"T{number}-{i}"
                    results[control_id] = ack_fields(peer.send(orm(control_id)))["MSA"][1]
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(results) == 200 and set(results.values()) == {"AA"}
    assert len(stored(broker, status="processed")) == 200


def test_frame_split_across_reads_and_junk_before_start_block(broker):
    wire = b"\r\n\x00junk" + b"\x0b" + orm("SPLIT1") + b"\x1c\r"
    with Peer(broker.hl7.port) as peer:
        for i in range(0, len(wire), 7):
            peer.send_raw(wire[i : i + 7])
        assert ack_fields(peer.read_ack())["MSA"][1:3] == ["AA", "SPLIT1"]
    assert len(stored(broker, control_id="SPLIT1")) == 1


def test_resent_message_gets_the_same_ack_and_is_stored_once(broker):
    with Peer(broker.hl7.port) as peer:
        first = ack_fields(peer.send(orm("DUP1")))
        # A resend often carries a new MSH-7; it is still the same message.
        again = ack_fields(peer.send(orm("DUP1").replace(b"20261127101500", b"20261127101600")))
    assert first["MSA"][1:3] == again["MSA"][1:3] == ["AA", "DUP1"]
    [row] = stored(broker, control_id="DUP1")
    assert row.duplicate_count == 1


def test_same_control_id_from_another_sender_is_a_different_message(broker):
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(orm("X1", sender="RIS")))["MSA"][1] == "AA"
        assert ack_fields(peer.send(orm("X1", sender="EMERGENCY", order="EM1")))["MSA"][1] == "AA"
    assert len(stored(broker, control_id="X1")) == 2


def test_reused_control_id_with_other_content_is_kept_and_refused(broker):
    with Peer(broker.hl7.port) as peer:
        peer.send(orm("REUSED", patient="P1"))
        ack = ack_fields(peer.send(orm("REUSED", patient="P2")))
    assert ack["MSA"][1:3] == ["AR", "REUSED"]
    assert ack["MSA"][3].startswith("MSH-10 'REUSED' from RIS/HOSPITAL was already used")
    assert "^205&" in ack["ERR"][1]  # HL7 table 0357: duplicate key identifier
    rows = stored(broker, control_id="REUSED")
    assert [r.status for r in rows] == ["processed", "rejected"]
    assert b"P2" in rows[1].raw


def test_unsupported_message_type_is_rejected_ar_and_stored(broker):
    message = orm("ORU1", msg_type="ORU^R01", version="2.5.1")
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(message))
    assert ack["MSA"][1:3] == ["AR", "ORU1"]
    assert ack["ERR"][2] == "MSH^1^9"  # ERR-2 location
    assert ack["ERR"][3].startswith("200^")
    assert ack["ERR"][4] == "E"
    [row] = stored(broker, control_id="ORU1")
    assert row.status == "rejected" and row.raw == message


def test_unsupported_trigger_event_is_rejected_with_its_own_code(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("ADT99", msg_type="ADT^A99", version="2.5.1")))
    assert ack["MSA"][1] == "AR" and ack["ERR"][3].startswith("201^")


def test_unsupported_version_is_rejected_in_v231_err_form(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("V1", version="2.1")))
    assert ack["MSA"][1:3] == ["AR", "V1"]
    assert "2.1" in ack["MSA"][3]
    assert "203&" in ack["ERR"][1]  # ERR-1 code and location, v2.3.1 and older


@pytest.mark.parametrize("version", ["2.7", "2.7.1", "2.8", "2.8.2"])
def test_ack_to_a_v27_or_newer_sender_keeps_err_fields_in_place(broker_factory, version):
    """ERR-1 was withdrawn in v2.7: ERR-2 location, ERR-3 code, ERR-4 severity stay where they were."""
    broker = broker_factory(hl7__accepted_versions=["2.3.1", "2.5.1"])  # a site that narrows them
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm(f"V{version}", msg_type="ADT^A08", version=version)))
    assert ack["MSA"][1:3] == ["AR", f"V{version}"]
    assert ack["MSH"][12] == version
    assert ack["ERR"][1] == ""
    assert ack["ERR"][2] == "MSH^1^12"
    assert ack["ERR"][3].startswith("203^")
    assert ack["ERR"][4] == "E"
    assert version in ack["ERR"][8]


def test_missing_control_id_is_rejected(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("")))
    assert ack["MSA"][1] == "AR" and "MSH-10" in ack["MSA"][3]


def test_garbage_and_truncated_messages_do_not_stop_the_service(broker):
    with Peer(broker.hl7.port) as peer:
        garbage = ack_fields(peer.send(b"\x00\xff\xfe not hl7 at all \x10"))
        truncated = ack_fields(peer.send(b"MSH|^~\\&|RIS|HOSP|MWL"))
        after = ack_fields(peer.send(orm("AFTER1")))
    assert garbage["MSA"][1] == "AR"
    assert truncated["MSA"][1] == "AR"
    assert after["MSA"][1:3] == ["AA", "AFTER1"]
    rejected = stored(broker, status="rejected")
    assert [r.raw for r in rejected] == [
        b"\x00\xff\xfe not hl7 at all \x10",
        b"MSH|^~\\&|RIS|HOSP|MWL",
    ]


def test_oversize_message_is_rejected_without_buffering_it(broker_factory):
    broker = broker_factory(hl7__max_message_bytes=4096)
    big = orm("BIG1", extra="|" + "x" * 200_000)
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(big))
        assert ack["MSA"][1:3] == ["AR", "BIG1"]
        assert "maximum" in ack["MSA"][3]
        assert ack_fields(peer.send(orm("SMALL1")))["MSA"][1] == "AA"
    [row] = stored(broker, control_id="BIG1")
    assert row.truncated and len(row.raw) == 4096 and row.status == "rejected"


def test_idle_connection_is_closed_after_the_timeout(broker_factory):
    broker = broker_factory(hl7__idle_timeout=0.5)
    with Peer(broker.hl7.port, timeout=10) as peer:
        assert peer.closed_by_server()


def test_connection_closed_mid_frame_keeps_the_bytes(broker):
    with Peer(broker.hl7.port) as peer:
        peer.send_raw(b"\x0bMSH|^~\\&|RIS|HOSPITAL|MWL|RAD|20261127||ORM^O01|HALF1|P|2.3.1\rPID|1")
    [row] = wait_until(lambda: stored(broker, control_id="HALF1"))
    assert row.status == "rejected" and "incomplete" in row.error


def test_latin1_message_is_stored_raw_and_acked_in_its_charset(broker):
    wire = (SAMPLES / "08_orm_o01_latin1_v231.hl7").read_bytes().replace(b"\n", b"\r")
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(wire))
    assert ack["MSA"][1] == "AA" and ack["MSH"][18] == "8859/1"
    [row] = stored(broker, charset="8859/1")
    assert row.raw == wire and "MÜLLER".encode("latin-1") in row.raw


def test_ack_aa_only_after_commit_database_gone_gives_ar(broker):
    # Take the table away underneath the running broker: nothing can be committed now.
    with broker.db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE message RENAME TO message_away")
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("NODB1")))
        assert ack["MSA"][1:3] == ["AR", "NODB1"]
        assert "not stored" in ack["MSA"][3]
        with broker.db.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE message_away RENAME TO message")
        # The broker recovers by itself once the database is back.
        assert ack_fields(peer.send(orm("NODB1")))["MSA"][1:3] == ["AA", "NODB1"]
    assert len(stored(broker, control_id="NODB1")) == 1


def test_hl7_null_and_z_segments_are_accepted(broker):
    message = hl7(
        "MSH|^~\\&|RIS|HOSPITAL|MWL|RAD|20261127||ADT^A08|Z1|P|2.3.1",
        'PID|1||PID1^^^HOSPITAL^MR||DOE^JOHN||""',
        "ZPI|1|local^data",
    )
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(message))["MSA"][1] == "AA"
