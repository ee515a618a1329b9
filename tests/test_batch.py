"""HL7 batches (FHS/BHS ... BTS/FTS) over a real MLLP socket, on SQLite and PostgreSQL.

Each message of a batch is taken in as if sent alone and answered in one response batch: BHS,
an ACK per message, BTS with the count (FHS/FTS around it when the batch came in an FHS).
"""

from __future__ import annotations

from sqlalchemy import select

from mwlbroker.store.tables import MessageRow
from tests.support.dicom_peers import Modality
from tests.support.hl7_messages import ack_fields, hl7, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES, listed

BATCHES = SAMPLES / "batches"


def lines(*segments: str | bytes) -> bytes:
    """Segments and whole messages, one after another as in a batch (CR-terminated)."""
    return b"".join(s if isinstance(s, bytes) else (s + "\r").encode("latin-1") for s in segments)


def split_reply(reply: bytes) -> tuple[list[list[str]], list[dict[str, list[str]]]]:
    """The response batch's own segments (FHS/BHS/BTS/FTS, split by field, in order) and each
    ACK message in it, read independently of the broker's code."""
    wrappers: list[list[str]] = []
    acks: list[list[str]] = []
    for line in reply.decode("latin-1").split("\r"):
        if not line:
            continue
        if line[:3] in ("FHS", "BHS"):
            wrappers.append([line[:3], "|", *line.split("|")[1:]])
        elif line[:3] in ("BTS", "FTS"):
            wrappers.append(line.split("|"))
        elif line.startswith("MSH"):
            acks.append([line])
        else:
            acks[-1].append(line)
    return wrappers, [ack_fields(("\r".join(ack) + "\r").encode("latin-1")) for ack in acks]


def stored(broker, **where) -> list[MessageRow]:
    with broker.db.reading() as session:
        query = select(MessageRow).order_by(MessageRow.id)
        for name, value in where.items():
            query = query.where(getattr(MessageRow, name) == value)
        return list(session.scalars(query))


def still_serving(broker) -> None:
    """A new connection, a single message: the listener answers it AA."""
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("AFTERWARDS")))
    assert ack["MSA"][1:3] == ["AA", "AFTERWARDS"]


def accessions(broker) -> set[str]:
    modality = Modality(broker.dicom.port)
    try:
        return {str(item.AccessionNumber) for item in modality.worklist()}
    finally:
        modality.close()


def test_sample_batch_files_are_listed() -> None:
    assert [p.name for p in listed(BATCHES, "*.hl7")] == [
        "bhs_adt_and_orders.hl7",
        "fhs_bhs_three_vendors.hl7",
    ]


def test_an_fhs_batch_of_three_vendors_gets_an_ack_each_and_all_reach_the_worklist(broker):
    wire = (BATCHES / "fhs_bhs_three_vendors.hl7").read_bytes().replace(b"\n", b"\r")
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(peer.send(wire))
    names = [w[0] for w in wrappers]
    assert names == ["FHS", "BHS", "BTS", "FTS"]
    fhs, bhs, bts, fts = wrappers
    assert fhs[3] == "MWLBROKER" and fhs[5:7] == ["RIS_GATEWAY", "HOSPITAL"]
    assert fhs[12] == "F20261201.1"  # FHS-12 Reference File Control ID: the received FHS-11
    assert bhs[5:7] == ["RIS_GATEWAY", "HOSPITAL"]
    assert bhs[12] == "B20261201.1"  # BHS-12 Reference Batch Control ID
    assert bhs[11] and bhs[11] != fhs[11]  # each response header has a control ID of its own
    assert bts[1] == "3" and fts[1] == "1"
    assert len(bts) == 2  # no BTS-2 comment: the counts agreed
    assert [a["MSA"][1:3] for a in acks] == [
        ["AA", "1000001"],
        ["AA", "Q2201485T2309911"],
        ["AA", "AG000451"],
    ]
    # Each ACK answers its own message's sender and version.
    assert [a["MSH"][5] for a in acks] == ["EPIC", "HNAM_ORDER", "AGFA_RIS"]
    assert [a["MSH"][12] for a in acks] == ["2.3", "2.3", "2.3.1"]
    rows = stored(broker)
    assert [(r.control_id, r.status) for r in rows] == [
        ("1000001", "processed"),
        ("Q2201485T2309911", "processed"),
        ("AG000451", "processed"),
    ]
    # Each message is stored as its own bytes, not the batch's.
    assert rows[0].raw.startswith(b"MSH|^~\\&|EPIC|") and b"BHS" not in rows[0].raw
    assert rows[2].raw.startswith(b"MSH|^~\\&|AGFA_RIS|") and b"FTS" not in rows[2].raw
    modality = Modality(broker.dicom.port)
    try:
        items = {str(item.AccessionNumber): item for item in modality.worklist()}
    finally:
        modality.close()
    assert set(items) == {"E1001", "CRN20261201001", "AGACC451"}
    # The Agfa message is ISO 8859-1 inside the batch: read by its own MSH-18.
    assert str(items["AGACC451"].PatientName) == "MÜLLER^KLAUS^^DR."
    still_serving(broker)


def test_a_bare_bhs_batch_with_lf_line_ends_is_answered_bhs_to_bts(broker):
    wire = (BATCHES / "bhs_adt_and_orders.hl7").read_bytes()  # LF-separated, as the file is
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(peer.send(wire))
    assert [w[0] for w in wrappers] == ["BHS", "BTS"]
    assert wrappers[0][12] == "B20261201.2"
    assert wrappers[1][1] == "3"
    assert [a["MSA"][1:3] for a in acks] == [
        ["AA", "GE0000123"],
        ["AA", "GE0000124"],
        ["AA", "SMS20261201-0007"],
    ]
    assert accessions(broker) == {"GEACC7788", "SMSACC7001"}


def test_a_bad_message_in_a_batch_is_answered_ae_or_ar_and_the_others_are_applied(broker):
    unknown_cancel = orm("BAD2", control="CA", order_status="CA", order="NEVERORDERED")
    # HAPI's classic example header: no MSH-10 and HL7 2.2.
    hapi_without_control_id = hl7(
        "MSH|^~\\&|HIS|RIH|EKG|EKG|199904140038||ADT^A01||P|2.2",
        "PID|0001|00009874|00001122|A00977|SMITH^JOHN^M|MOM|19581119|F",
    )
    batch = lines(
        "BHS|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261201100000||||BATCH7",
        orm("GOOD1"),
        unknown_cancel,
        hapi_without_control_id,
        orm("GOOD4"),
        "BTS|4",
    )
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(peer.send(batch))
    assert wrappers[-1][1] == "4"
    assert [a["MSA"][1:3] for a in acks] == [
        ["AA", "GOOD1"],
        ["AE", "BAD2"],
        ["AR", ""],  # nothing to echo: the message has no MSH-10
        ["AA", "GOOD4"],
    ]
    assert "NEVERORDERED" in acks[1]["MSA"][3]
    assert acks[1]["ERR"][1].endswith("204&Unknown key identifier&HL70357")  # v2.3.1 ERR-1
    assert "MSH-10" in acks[2]["MSA"][3]
    assert "ERR" not in acks[0] and "ERR" not in acks[3]
    assert [(r.control_id, r.status) for r in stored(broker)] == [
        ("GOOD1", "processed"),
        ("BAD2", "failed"),
        (None, "rejected"),
        ("GOOD4", "processed"),
    ]
    assert accessions(broker) == {"APLGOOD1", "APLGOOD4"}
    still_serving(broker)


def test_a_bts_count_that_disagrees_is_reported_and_every_message_still_processed(broker):
    batch = lines(
        "FHS|^~\\&|RIS|HOSPITAL|||20261201100000||||FILE9",
        "BHS|^~\\&|RIS|HOSPITAL|||20261201100000||||BATCH9",
        orm("COUNT1"),
        orm("COUNT2"),
        "BTS|5",
        "FTS|3",
    )
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(peer.send(batch))
    assert [a["MSA"][1] for a in acks] == ["AA", "AA"]
    bts, fts = wrappers[2], wrappers[3]
    assert bts[1] == "2"  # the count of what the response holds
    assert bts[2] == "batch BATCH9: BTS-1 Batch Message Count says 5 but 2 messages were received"
    assert fts[1] == "1"
    assert fts[2] == "FTS-1 File Batch Count says 3 but 1 batch was received"
    assert len(stored(broker, status="processed")) == 2


def test_a_message_twice_in_a_batch_is_applied_once_and_a_reused_control_id_refused(broker):
    first = orm("TWICE")
    other_content = orm("TWICE", patient="SOMEONEELSE", order="PLOTHER")
    batch = lines("BHS|^~\\&|RIS|HOSPITAL", first, first, other_content, "BTS|3")
    with Peer(broker.hl7.port) as peer:
        _, acks = split_reply(peer.send(batch))
        again = ack_fields(peer.send(first))  # and once more alone, on the same connection
    assert [a["MSA"][1:3] for a in acks] == [["AA", "TWICE"], ["AA", "TWICE"], ["AR", "TWICE"]]
    assert "already used for a different message" in acks[2]["MSA"][3]
    assert again["MSA"][1:3] == ["AA", "TWICE"]
    processed = stored(broker, control_id="TWICE", status="processed")
    assert len(processed) == 1 and processed[0].duplicate_count == 2
    assert accessions(broker) == {"APLTWICE"}


def test_an_empty_batch_gets_a_batch_ack_with_no_messages(broker):
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(
            peer.send(lines("BHS|^~\\&|RIS|HOSPITAL|||20261201100000||||EMPTY1", "BTS|0"))
        )
    assert acks == []
    assert [w[0] for w in wrappers] == ["BHS", "BTS"]
    assert wrappers[0][12] == "EMPTY1" and wrappers[1][1] == "0"
    assert stored(broker) == []
    still_serving(broker)


def test_garbage_between_messages_is_answered_ar_and_the_messages_around_it_processed(broker):
    batch = lines(
        "BHS|^~\\&|RIS|HOSPITAL",
        orm("AROUND1"),
        "BTS|1",
        "this line is no segment at all",
        "BHS|^~\\&|RIS|HOSPITAL",
        orm("AROUND2"),
        "BTS|1",
    )
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(peer.send(batch))
    assert [w[0] for w in wrappers] == ["BHS", "BTS", "BHS", "BTS", "BHS", "BTS"]
    assert [a["MSA"][1:3] for a in acks] == [["AA", "AROUND1"], ["AR", ""], ["AA", "AROUND2"]]
    assert "line 7 of the batch is not part of any HL7 message" in acks[1]["MSA"][3]
    # No MSH to take a version from: the v2.5.1 layout, ERR-2 location and ERR-3 table 0357.
    assert acks[1]["ERR"][2].startswith("MSH")
    assert acks[1]["ERR"][3] == "100^Segment sequence error^HL70357"
    rejected = stored(broker, status="rejected")
    assert [r.raw for r in rejected] == [b"this line is no segment at all\r"]
    assert len(stored(broker, status="processed")) == 2


def test_an_fhs_with_two_batches_and_the_batch_own_separators(broker):
    # The second batch declares '#' and '$' in BHS-1/2; its BTS is read with them. The
    # messages inside declare their own separators in their MSH.
    batch = lines(
        "FHS|^~\\&|RIS|HOSPITAL|||20261201100000||||FILE2",
        "BHS|^~\\&|RIS|HOSPITAL|||20261201100000||||FIRST",
        orm("TWO1"),
        "BTS|1",
        "BHS#$~\\&#ENGINE$EAST#HOSPITAL####SECURITY#NAME#COMMENT#SECOND",
        orm("TWO2"),
        orm("TWO3"),
        "BTS#2",
        "FTS|2",
    )
    with Peer(broker.hl7.port) as peer:
        wrappers, acks = split_reply(peer.send(batch))
    assert [w[0] for w in wrappers] == ["FHS", "BHS", "BTS", "BHS", "BTS", "FTS"]
    assert wrappers[1][12] == "FIRST" and wrappers[2][1] == "1"
    second = wrappers[3]
    assert second[5:7] == ["ENGINE^EAST", "HOSPITAL"]  # recoded into the response's separators
    assert second[12] == "SECOND"
    assert wrappers[4] == ["BTS", "2"]  # BTS#2 agreed: no comment
    assert wrappers[5] == ["FTS", "2"]
    assert [a["MSA"][1:3] for a in acks] == [["AA", "TWO1"], ["AA", "TWO2"], ["AA", "TWO3"]]


def test_batches_and_single_messages_share_a_connection(broker):
    with Peer(broker.hl7.port) as peer:
        single = ack_fields(peer.send(orm("MIX1")))
        _, acks = split_reply(peer.send(lines("BHS|^~\\&|RIS", orm("MIX2"), "BTS|1")))
        after = ack_fields(peer.send(orm("MIX3")))
    assert single["MSA"][1:3] == ["AA", "MIX1"]
    assert [a["MSA"][1:3] for a in acks] == [["AA", "MIX2"]]
    assert after["MSA"][1:3] == ["AA", "MIX3"]
    assert len(stored(broker, status="processed")) == 3


def test_send_prints_each_ack_of_a_batch_and_exits_1_when_one_is_not_aa(
    broker, database_url, tmp_path
):
    env = cli_env(database_url)
    sample = BATCHES / "bhs_adt_and_orders.hl7"
    sent = run_cli("send", "-q", "--port", str(broker.hl7.port), str(sample), env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.splitlines() == [
        f"{sample} (1/3 of the batch): AA GE0000123",
        f"{sample} (2/3 of the batch): AA GE0000124",
        f"{sample} (3/3 of the batch): AA SMS20261201-0007",
    ]
    bad = tmp_path / "bad-batch.hl7"
    bad.write_bytes(lines("BHS|^~\\&|RIS", orm("SENT1"), orm("SENT2", msg_type="ORM^O99"), "BTS|2"))
    sent = run_cli("send", "-q", "--port", str(broker.hl7.port), str(bad), env=env)
    assert sent.returncode == 1, sent.stdout + sent.stderr
    out = sent.stdout.splitlines()
    assert out[0] == f"{bad} (1/2 of the batch): AA SENT1"
    assert out[1].startswith(f"{bad} (2/2 of the batch): AR SENT2 - message type 'ORM")


def test_split_keeps_each_message_byte_for_byte_whatever_the_line_ends() -> None:
    from mwlbroker.hl7v2.batch import split_batch

    for end in (b"\r", b"\n", b"\r\n"):
        first, second = (orm(c).replace(b"\r", end) for c in ("SPLIT1", "SPLIT2"))
        header = b"BHS|^~\\&|RIS|HOSPITAL|||20261201100000||||B1" + end
        content = b"\xef\xbb\xbf" + header + first + end + second + b"BTS|2" + end
        found = split_batch(content)
        [batch] = found.batches
        assert [p.raw for p in batch.parts] == [first + end, second], end
        assert [p.line for p in batch.parts] == [2, 7]  # a blank line after the first
        assert batch.header is not None and batch.header.sent(11) == "B1"
        assert found.all_problems == []
