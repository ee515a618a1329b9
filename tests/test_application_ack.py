"""Application acknowledgments and enhanced mode, over real MLLP, on SQLite and PostgreSQL.

A sender whose profile asks for the order response gets ORR^O02 / ORI^O24 / ORG^O20 on its
connection instead of the ACK. A sender in enhanced mode (MSH-15 / MSH-16) gets the commit ACK
on its connection, and the application acknowledgment arrives as a message of its own at a
real MLLP listener playing the sender's inbound interface (the ``ris`` fixture). The test
messages are shaped the way RIS and EHR interfaces send them (a Centricity-style ORM in
v2.3.1, an IHE OMI in v2.5.1, an Epic-style OMG with MSH-15/16 set, a Cerner-style ADT).
"""

from __future__ import annotations

import json

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from sqlalchemy import event, select

from mwlbroker.domain.messages import AckCode, CommitCode
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.application_ack import build_order_response
from mwlbroker.hl7v2.reader import parse_message as read_message
from mwlbroker.mllp.framing import frame
from mwlbroker.store.tables import MessageRow
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.polling import stays_true, wait_until
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES
from tests.support.workflow import destination, queue

PROFILE = """\
profile: ris-acknowledgments
description: the RIS wants order responses, and its application ACKs on its inbound port
extends: ihe-swf
priority: 10
match:
  sending_application: "*"
acknowledgment_destination: RIS
enhanced_mode: true
messages:
  ORM^O01: {acknowledgment: application}
  OMI^O23: {acknowledgment: application}
  OMG^O19: {acknowledgment: application}
"""


def msh(
    message_type: str,
    control_id: str,
    version: str,
    *,
    accept: str = "",
    application: str = "",
    sender: str = "RIS^1.2.840.114350^ISO|RADIOLOGY",
) -> str:
    return (
        f"MSH|^~\\&|{sender}|MWLBROKER|RAD|20261206101500||{message_type}|{control_id}|P|"
        f"{version}|||{accept}|{application}"
    ).rstrip("|")


def orm(control_id: str, *, control: str = "NW", order: str = "", **header: str) -> bytes:
    """ORM^O01 v2.3.1 as a Centricity / Agfa RIS sends it: ORC, OBR with accession in OBR-18."""
    order = order or f"P{control_id}"
    return hl7(
        msh("ORM^O01", control_id, header.pop("version", "2.3.1"), **header),
        "PID|1||MRN1001^^^HOSP^MR~998877^^^SSA^SS||SMITH^ANNA^M||19800315|F",
        "PV1|1|O|RAD^^^HOSP||||1234^JONES^PAUL",
        f"ORC|{control}|{order}|F{order}||SC||^^^20261206120000^^R",
        f"OBR|1|{order}|F{order}|CT100^CT HEAD^L||||||||||||||A{order}|R{order}|S{order}||||CT",
    )


def omi(control_id: str, **header: str) -> bytes:
    """OMI^O23 v2.5.1 as IHE RAD-4 writes it: ORC, TQ1, OBR and one IPC."""
    order = f"P{control_id}"
    return hl7(
        msh("OMI^O23^OMI_O23", control_id, "2.5.1", **header),
        "PID|1||MRN2002^^^HOSP^MR||NGUYEN^BAO||19650101|M",
        f"ORC|NW|{order}^RIS|F{order}^RIS||SC",
        "TQ1|1||||||20261206130000||R",
        f"OBR|1|{order}^RIS|F{order}^RIS|MR200^MR KNEE^L||||||||||||||||||||MR",
        f"IPC|A{order}|R{order}|1.2.826.0.1.3680043.10.543.77{len(control_id)}|S{order}|MR",
    )


def omg(control_id: str, **header: str) -> bytes:
    """OMG^O19 v2.5.1 as an Epic order feed sends it: ORC, TQ1, OBR with OBR-18 accession."""
    order = f"P{control_id}"
    return hl7(
        msh("OMG^O19^OMG_O19", control_id, "2.5.1", **header),
        "PID|1||E3003^^^EPI^MR||OKAFOR^CHIDI^^^^^L||19910214|M",
        f"ORC|NW|{order}^EPC|F{order}^EPC||SC||||20261206101500",
        "TQ1|1||||||20261206140000||R^Routine^HL70485",
        f"OBR|1|{order}^EPC|F{order}^EPC|US300^US ABDOMEN^L||||||||||||||A{order}|R{order}|"
        f"S{order}||||US",
    )


def adt(control_id: str, **header: str) -> bytes:
    """ADT^A08 v2.5.1 as a Cerner PAS sends a demographic update."""
    return hl7(
        msh("ADT^A08^ADT_A01", control_id, "2.5.1", **header),
        "EVN|A08|20261206101500",
        "PID|1||MRN1001^^^HOSP^MR||SMITH^ANNA^MARIA||19800315|F",
        "PV1|1|O",
    )


@pytest.fixture
def acks_folder(tmp_path):
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "ris.yaml").write_text(PROFILE)
    return folder


@pytest.fixture
def site(broker_factory, acks_folder, ris):
    """A broker whose profile asks for order responses, with the RIS as its destination."""
    return broker_factory(mappings__dir=str(acks_folder), outbound__destinations=[destination(ris)])


def strict(message: bytes):
    """The message read by hl7apy with strict validation: a layout error raises."""
    return parse_message(message.decode("latin-1"), validation_level=VALIDATION_LEVEL.STRICT)


def record(broker, control_id: str) -> MessageRow:
    with broker.db.reading() as session:
        query = select(MessageRow).where(MessageRow.control_id == control_id)
        return session.scalars(query).one()


# -- original mode: the order response instead of the ACK ------------------------------------------


def test_orm_answered_with_orr_o02_carrying_the_order(site):
    with Peer(site.hl7.port) as peer:
        reply = peer.send(orm("ORM1"))

    fields = ack_fields(reply)
    assert fields["MSH"][9] == "ORR^O02^ORR_O02"
    assert fields["MSH"][5:7] == ["RIS^1.2.840.114350^ISO", "RADIOLOGY"]
    assert fields["MSH"][12] == "2.3.1"
    assert fields["MSA"][1:3] == ["AA", "ORM1"]
    assert "ERR" not in fields
    assert fields["PID"][3] == "MRN1001^^^HOSP^MR~998877^^^SSA^SS"
    assert fields["ORC"][1:6] == ["OK", "PORM1", "FPORM1", "", "SC"]
    assert fields["OBR"][18] == "APORM1"
    assert strict(reply).name == "ORR_O02"
    assert record(site, "ORM1").status == "processed"


def test_a_message_of_two_orders_is_answered_order_by_order(site):
    """Sample 13 (two placer orders, Epic-shaped), then one message changing the first and
    canceling the second: each ORC of the ORR answers its own ORC-1 with its own ORC-5."""
    sample = (SAMPLES / "13_orm_o01_two_orders_v231.hl7").read_bytes().replace(b"\n", b"\r")
    lines = sample.decode().split("\r")
    follow_up = "\r".join(
        line.replace("|RIS0000013|", "|RIS0000013B|")
        .replace("ORC|NW|550120331", "ORC|XO|550120331")
        .replace(
            "ORC|NW|550120332^EPC|FIL20261202012^RIS||SC",
            "ORC|CA|550120332^EPC|FIL20261202012^RIS||CA",
        )
        for line in lines
    ).encode()
    with Peer(site.hl7.port) as peer:
        created = peer.send(sample)
        changed = peer.send(follow_up)

    def orcs(reply: bytes) -> list[list[str]]:
        return [
            line.split("|")[1:6]
            for line in reply.decode("latin-1").split("\r")
            if line.startswith("ORC|")
        ]

    assert ack_fields(created)["MSA"][1:3] == ["AA", "RIS0000013"]
    assert orcs(created) == [
        ["OK", "550120331^EPC", "FIL20261202011^RIS", "", "SC"],
        ["OK", "550120332^EPC", "FIL20261202012^RIS", "", "SC"],
    ]
    assert ack_fields(changed)["MSA"][1:3] == ["AA", "RIS0000013B"]
    assert orcs(changed) == [
        ["XR", "550120331^EPC", "FIL20261202011^RIS", "", "SC"],
        ["CR", "550120332^EPC", "FIL20261202012^RIS", "", "CA"],
    ]
    assert strict(changed).name == "ORR_O02"


def test_omi_answered_with_ori_o24(site):
    with Peer(site.hl7.port) as peer:
        reply = peer.send(omi("OMI1"))

    fields = ack_fields(reply)
    assert fields["MSH"][9] == "ORI^O24^ORI_O24"
    assert fields["MSA"][1:3] == ["AA", "OMI1"]
    assert fields["ORC"][1:6] == ["OK", "POMI1^RIS", "FPOMI1^RIS", "", "SC"]
    assert fields["IPC"][1] == "APOMI1"
    assert strict(reply).name == "ORI_O24"


def test_omg_answered_with_org_o20(site):
    with Peer(site.hl7.port) as peer:
        reply = peer.send(omg("OMG1"))

    fields = ack_fields(reply)
    assert fields["MSH"][9] == "ORG^O20^ORG_O20"
    assert fields["MSA"][1:3] == ["AA", "OMG1"]
    assert fields["ORC"][1:6] == ["OK", "POMG1^EPC", "FPOMG1^EPC", "", "SC"]
    assert strict(reply).name == "ORG_O20"


def test_an_order_of_two_procedures_gets_an_order_group_for_each(site):
    """ORC OBR ZDS OBR ZDS (one order, two requested procedures): ORC+OBR twice in the ORR."""
    sample = SAMPLES / "09_orm_o01_multi_obr_v231.hl7"
    with Peer(site.hl7.port) as peer:
        reply = peer.send(sample.read_bytes())

    lines = reply.decode("latin-1").split("\r")
    assert [line[:3] for line in lines] == ["MSH", "MSA", "PID", "ORC", "OBR", "ORC", "OBR"]
    orcs = [line.split("|") for line in lines if line.startswith("ORC|")]
    assert [orc[1:6] for orc in orcs] == [
        ["OK", "PLC20261123001^RIS", "FIL20261123001^RIS", "", "SC"]
    ] * 2
    assert [line.split("|")[1] for line in lines if line.startswith("OBR|")] == ["1", "2"]
    assert strict(reply).name == "ORR_O02"


def test_a_resent_message_gets_its_commit_ack_again_and_one_application_ack(site, ris):
    message = orm("DUP1", accept="AL", application="AL")
    with Peer(site.hl7.port) as peer:
        first, second = ack_fields(peer.send(message)), ack_fields(peer.send(message))
    assert first["MSA"][1:3] == second["MSA"][1:3] == ["CA", "DUP1"]
    assert ack_fields(ris.wait_for(1)[0])["MSA"][1:3] == ["AA", "DUP1"]
    stays_true(lambda: len(ris.received) == 1, 0.5)
    assert record(site, "DUP1").duplicate_count == 1


def test_an_order_that_cannot_be_applied_gets_orr_with_ae_and_err(site):
    with Peer(site.hl7.port) as peer:
        reply = peer.send(orm("XO1", control="XO", order="NEVER-ORDERED"))

    fields = ack_fields(reply)
    assert fields["MSH"][9] == "ORR^O02^ORR_O02"
    assert fields["MSA"][1:3] == ["AE", "XO1"]
    assert "unknown order" in fields["MSA"][3]
    # v2.3.1: ERR-1 segment ^ sequence ^ field ^ code & text & table 0357
    assert fields["ERR"][1] == "ORC^1^2^204&Unknown key identifier&HL70357"
    assert fields["ORC"][1:4] == ["UX", "NEVER-ORDERED", "FNEVER-ORDERED"]
    assert strict(reply).name == "ORR_O02"
    assert record(site, "XO1").status == "failed"


def test_without_the_profile_key_the_sender_gets_the_plain_ack(broker):
    with Peer(broker.hl7.port) as peer:
        fields = ack_fields(peer.send(orm("PLAIN1")))
    assert fields["MSH"][9] == "ACK^O01^ACK"
    assert fields["MSA"][1:3] == ["AA", "PLAIN1"]


# -- enhanced mode ----------------------------------------------------------------------------------


def test_enhanced_mode_commit_ack_at_once_then_the_application_ack_at_the_ris(site, ris):
    with Peer(site.hl7.port) as peer:
        commit = ack_fields(peer.send(omg("ENH1", accept="AL", application="AL")))

    assert commit["MSH"][9] == "ACK^O19^ACK"
    assert commit["MSA"][1:3] == ["CA", "ENH1"]
    assert "ERR" not in commit
    [application] = ris.wait_for(1)
    fields = ack_fields(application)
    assert fields["MSH"][9] == "ORG^O20^ORG_O20"
    assert fields["MSH"][5:7] == ["RIS^1.2.840.114350^ISO", "RADIOLOGY"]
    assert fields["MSH"][12] == "2.5.1"
    assert fields["MSA"][1:3] == ["AA", "ENH1"]
    assert fields["ORC"][1] == "OK"
    assert strict(application).name == "ORG_O20"
    # The RIS's own ACK (original mode on that leg) answered the broker's MSH-10.
    [row] = wait_until(lambda: [r for r in queue(site) if r.status == "sent"] or None)
    assert (row.message_type, row.ack_code) == ("ORG^O20", "AA")
    assert fields["MSH"][10] == row.control_id
    assert f"queued for RIS as outbound message {row.id}" in record(site, "ENH1").application_ack


def test_a_v28_sender_gets_its_commit_ack_and_org_o20_in_the_v28_layout(site, ris):
    message = omg("V28", accept="AL", application="AL").replace(b"|2.5.1|", b"|2.8|", 1)
    with Peer(site.hl7.port) as peer:
        commit = peer.send(message)
    assert ack_fields(commit)["MSA"][1:3] == ["CA", "V28"]
    assert strict(commit).msh.msh_12.value == "2.8"
    [application] = ris.wait_for(1)
    parsed = strict(application)
    assert (parsed.name, parsed.msh.msh_12.value) == ("ORG_O20", "2.8")
    assert ack_fields(application)["MSA"][1:3] == ["AA", "V28"]


def test_msh15_ne_sends_no_commit_ack(site, ris):
    with Peer(site.hl7.port) as peer:
        peer.send_raw(frame(orm("NE1", accept="NE", application="AL")))
        # The next answer on the connection is the next message's: none came for NE1.
        fields = ack_fields(peer.send(orm("AFTER1")))
    assert fields["MSA"][2] == "AFTER1"
    [application] = ris.wait_for(1)
    assert ack_fields(application)["MSA"][1:3] == ["AA", "NE1"]
    assert record(site, "NE1").status == "processed"


def test_msh16_er_sends_the_application_ack_only_on_error(site, ris):
    with Peer(site.hl7.port) as peer:
        ok = ack_fields(peer.send(orm("ER1", accept="AL", application="ER")))
        failed = ack_fields(
            peer.send(orm("ER2", control="CA", order="NOT-THERE", accept="AL", application="ER"))
        )
    # Stored either way: the commit ACK is CA; the outcome travels in the application ACK.
    assert (ok["MSA"][1], failed["MSA"][1]) == ("CA", "CA")
    [application] = ris.wait_for(1)
    fields = ack_fields(application)
    assert fields["MSA"][1:3] == ["AE", "ER2"]
    assert fields["ERR"][1].startswith("ORC^1^2^204&")
    assert fields["ORC"][1] == "UC"
    assert record(site, "ER1").application_ack == "not sent: MSH-16 is ER and the outcome is AA"
    stays_true(lambda: len(ris.received) == 1, 0.5)


def test_su_acknowledges_successes_only(site, ris):
    with Peer(site.hl7.port) as peer:
        ok = ack_fields(peer.send(orm("SU1", accept="SU", application="SU")))
        failed = ack_fields(
            peer.send(orm("SU2", control="DC", order="NOT-THERE", accept="SU", application="SU"))
        )
        peer.send_raw(frame(hl7(msh("ORM^O01", "SU3", "2.1", accept="SU", application="SU"))))
        after = ack_fields(peer.send(orm("SU4")))
    # SU2 was stored (a commit success), so SU still gets CA; SU3 was never accepted (CR): no answer.
    assert (ok["MSA"][1:3], failed["MSA"][1:3]) == (["CA", "SU1"], ["CA", "SU2"])
    assert after["MSA"][2] == "SU4"
    [application] = ris.wait_for(1)
    assert ack_fields(application)["MSA"][1:3] == ["AA", "SU1"]
    assert record(site, "SU2").application_ack == "not sent: MSH-16 is SU and the outcome is AE"
    assert record(site, "SU3").status == "rejected"


def test_a_message_never_accepted_gets_a_commit_reject(site, ris):
    with Peer(site.hl7.port) as peer:
        fields = ack_fields(
            peer.send(hl7(msh("ORM^O01", "CR1", "2.1", accept="AL", application="AL")))
        )
    assert fields["MSA"][1:3] == ["CR", "CR1"]
    assert fields["MSA"][3].startswith("HL7 version '2.1' in MSH-12 is not accepted")
    assert record(site, "CR1").status == "rejected"
    assert (
        record(site, "CR1").application_ack
        == "not sent: the commit acknowledgment reported the rejection"
    )
    stays_true(lambda: not ris.received, 0.3)


def test_database_unavailable_is_a_commit_error(site, ris):
    """Nothing can be stored (the database refuses writes): CE where MSH-15 wants errors."""
    refusing = {"writes": True}

    @event.listens_for(site.db.engine, "connect")
    def _read_only(dbapi_connection, _record) -> None:
        if refusing["writes"]:
            cursor = dbapi_connection.cursor()
            cursor.execute(
                "PRAGMA query_only = ON"
                if site.db.is_sqlite
                else "SET default_transaction_read_only = on"
            )
            cursor.close()
            dbapi_connection.commit()  # a SET rolled back with its transaction would not hold

    site.db.engine.dispose()  # every new connection refuses writes
    with Peer(site.hl7.port) as peer:
        fields = ack_fields(peer.send(orm("DOWN1", accept="ER", application="AL")))
        peer.send_raw(frame(orm("DOWN2", accept="SU", application="AL")))
        after = ack_fields(peer.send(orm("DOWN3")))
    assert fields["MSA"][1:3] == ["CE", "DOWN1"]
    assert "database unavailable; resend later" in fields["MSA"][3]
    # SU wants no commit ACK for an error: the next answer is DOWN3's (original mode: AR).
    assert after["MSA"][1:3] == ["AR", "DOWN3"]

    refusing["writes"] = False
    site.db.engine.dispose()
    with Peer(site.hl7.port) as peer:
        # The resend is stored now; ER wants no commit ACK for a success: UP1's is the next.
        peer.send_raw(frame(orm("DOWN1", accept="ER", application="AL")))
        assert ack_fields(peer.send(orm("UP1")))["MSA"][1:3] == ["AA", "UP1"]
    [application] = ris.wait_for(1)
    assert ack_fields(application)["MSA"][1:3] == ["AA", "DOWN1"]


def test_adt_application_ack_is_an_ack(site, ris):
    with Peer(site.hl7.port) as peer:
        # MSH-15 ER: a commit ACK only for errors, so the next answer is the next message's.
        peer.send_raw(frame(adt("ADT1", accept="ER", application="AL")))
        assert ack_fields(peer.send(orm("AFTERADT")))["MSA"][2] == "AFTERADT"
    [application] = ris.wait_for(1)
    fields = ack_fields(application)
    assert fields["MSH"][9] == "ACK^A08^ACK"
    assert fields["MSA"][1:3] == ["AA", "ADT1"]


def test_no_destination_for_the_sender_is_said_on_the_record(
    database_url, broker_factory, acks_folder, caplog
):
    (acks_folder / "ris.yaml").write_text(PROFILE.replace("acknowledgment_destination: RIS\n", ""))
    broker = broker_factory(mappings__dir=str(acks_folder))
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(orm("NODEST1", accept="AL", application="AL")))["MSA"][1] == (
            "CA"
        )
    note = record(broker, "NODEST1").application_ack
    assert note.startswith("not sent: no destination for application acknowledgments to RIS")
    assert "profile ris-acknowledgments names no acknowledgment_destination" in note
    assert "application acknowledgment (MSH-16 AL)" in caplog.text
    # What an operator reads: messages show.
    shown = run_cli(
        "messages", "show", str(record(broker, "NODEST1").id), "--json", env=cli_env(database_url)
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["application_ack"] == note


def test_a_profile_naming_an_unknown_destination_stops_start_up(database_url, acks_folder):
    env = cli_env(
        database_url,
        MWLBROKER_MAPPINGS_DIR=str(acks_folder),
        MWLBROKER_HL7_PORT="0",
        MWLBROKER_DICOM_PORT="0",
        MWLBROKER_WEB_PORT="0",
    )
    served = run_cli("serve", env=env)
    assert served.returncode == 2, served.stdout + served.stderr
    assert (
        "profile ris-acknowledgments" in served.stderr
        and "acknowledgment_destination 'RIS' is not an [[outbound.destinations]] name "
        "(configured: none)"
        in served.stderr
    ), served.stderr


@pytest.mark.parametrize(
    ("accept", "application", "field"), [("XX", "AL", "15"), ("AL", "YES", "16")]
)
def test_unsupported_msh15_msh16_values_are_rejected_clearly(site, accept, application, field):
    with Peer(site.hl7.port) as peer:
        fields = ack_fields(peer.send(orm("BAD" + field, accept=accept, application=application)))
    assert fields["MSH"][9] == "ACK^O01^ACK"
    assert fields["MSA"][1] == "AR"
    assert f"MSH-{field}" in fields["MSA"][3] and "table 0155" in fields["MSA"][3]
    assert fields["ERR"][1] == f"MSH^1^{field}^103&Table value not found&HL70357"
    assert record(site, "BAD" + field).status == "rejected"


def test_in_a_batch_each_message_is_answered_as_alone(site, ris):
    """BHS ... BTS: a commit ACK for the enhanced-mode message, none where MSH-15 asks for none,
    the order response for the original-mode one; the application ACKs reach the RIS."""
    messages = [
        orm("B1", accept="AL", application="AL"),
        orm("B2", accept="NE", application="AL"),
        orm("B3"),
    ]
    wire = b"BHS|^~\\&|RIS|RADIOLOGY|||20261206101500||||BATCH7\r" + b"".join(messages)
    wire += b"BTS|3\r"
    with Peer(site.hl7.port) as peer:
        reply = peer.send(wire)

    lines = reply.decode("latin-1").split("\r")
    msa = [line.split("|")[1:3] for line in lines if line.startswith("MSA|")]
    assert msa == [["CA", "B1"], ["AA", "B3"]]
    assert [line.split("|")[8] for line in lines if line.startswith("MSH|")][1] == (
        "ORR^O02^ORR_O02"
    )
    assert next(line for line in lines if line.startswith("BTS|")).split("|")[1] == "2"
    received = {ack_fields(m)["MSA"][2] for m in ris.wait_for(2)}
    assert received == {"B1", "B2"}


def test_files_imported_by_an_operator_queue_no_application_ack(
    database_url, broker_factory, acks_folder, ris, tmp_path
):
    broker = broker_factory(
        mappings__dir=str(acks_folder), outbound__destinations=[destination(ris)]
    )
    backlog = tmp_path / "backlog.hl7"
    backlog.write_bytes(orm("IMP1", accept="AL", application="AL"))
    env = cli_env(database_url, MWLBROKER_MAPPINGS_DIR=str(acks_folder))

    done = run_cli("import", str(backlog), env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert record(broker, "IMP1").status == "processed"
    assert record(broker, "IMP1").application_ack is None
    assert queue(broker) == []


def test_without_enhanced_mode_in_its_profile_a_sender_is_answered_in_original_mode(
    broker_factory, acks_folder, ris
):
    """No ``enhanced_mode: true``: a sender that sets MSH-15/16 out of habit gets AA, as before."""
    (acks_folder / "ris.yaml").write_text(PROFILE.replace("enhanced_mode: true\n", ""))
    broker = broker_factory(
        mappings__dir=str(acks_folder), outbound__destinations=[destination(ris)]
    )
    with Peer(broker.hl7.port) as peer:
        ordered = ack_fields(peer.send(orm("ORIG1", accept="AL", application="NE")))
        odd = ack_fields(peer.send(orm("ORIG2", accept="XX", application="")))
    assert ordered["MSH"][9] == "ORR^O02^ORR_O02"
    assert ordered["MSA"][1:3] == ["AA", "ORIG1"]
    assert odd["MSA"][1:3] == ["AA", "ORIG2"]
    assert record(broker, "ORIG1").application_ack is None
    stays_true(lambda: not ris.received, 0.3)


# -- layouts per version, as hl7apy's schemas define them ------------------------------------------


def _sent(version: str, kind: str) -> bytes:
    if kind == "ORR^O02":
        return orm("L1", version=version)
    if kind == "ORI^O24":
        return omi("L1").replace(b"|2.5.1", f"|{version}".encode(), 1)
    return omg("L1").replace(b"|2.5.1", f"|{version}".encode(), 1)


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        ("2.3.1", "ORR^O02"),
        ("2.5.1", "ORR^O02"),
        ("2.5.1", "ORI^O24"),
        ("2.5.1", "ORG^O20"),
        ("2.8", "ORI^O24"),
        ("2.8", "ORG^O20"),
    ],
)
@pytest.mark.parametrize("code", list(AckCode))
def test_order_response_layout_is_valid(version, kind, code):
    message = read_message(_sent(version, kind))
    reply = build_order_response(
        message.header(),
        kind,
        code,
        message,
        order_status="SC",
        text=None if code == AckCode.ACCEPT else "why | it failed",
        error_code=204,
        location="ORC-2",
    )
    parsed = strict(reply)
    assert parsed.name == kind.replace("^", "_")
    assert parsed.msa.msa_1.value == code.value and parsed.msa.msa_2.value == "L1"
    assert parsed.msh.msh_12.value == version
    lines = reply.decode().split("\r")
    orc = next(line for line in lines if line.startswith("ORC|")).split("|")
    assert orc[1] == ("OK" if code == AckCode.ACCEPT else "UA")
    if code != AckCode.ACCEPT:
        err = next(line for line in lines if line.startswith("ERR|")).split("|")
        if version == "2.3.1":
            assert err[1].startswith("ORC^1^2^204&")
        else:
            assert (err[1], err[2], err[3].split("^")[0], err[4]) == ("", "ORC^1^2", "204", "E")


@pytest.mark.parametrize("version", ["2.3.1", "2.5.1", "2.8"])
@pytest.mark.parametrize("code", list(CommitCode))
def test_commit_ack_layout_is_valid(version, code):
    header = read_message(orm("L2", version=version)).header()
    ack = build_ack(
        header,
        code,
        text=None if code == CommitCode.ACCEPT else "not now",
        error_code=None if code == CommitCode.ACCEPT else 203,
        location=None if code == CommitCode.ACCEPT else "MSH-12",
    )
    parsed = strict(ack)
    assert parsed.msa.msa_1.value == code.value and parsed.msa.msa_2.value == "L2"
    assert ("\rERR|" in ack.decode()) == (code != CommitCode.ACCEPT)


def test_a_bad_acknowledgment_value_is_a_mapping_error(tmp_path):
    from mwlbroker.mapping.engine import MappingLoadError, load_mappings

    (tmp_path / "ris.yaml").write_text(
        PROFILE.replace("OMI^O23: {acknowledgment: application}", "OMI^O23: {acknowledgment: yes}")
        + "  ADT: {acknowledgment: application}\n"
    )
    with pytest.raises(MappingLoadError) as raised:
        load_mappings(tmp_path)
    text = str(raised.value)
    assert "ris.yaml:11: acknowledgment: 'yes' is not one of ack | application" in text
    assert "(ack: an ACK; application: ORI^O24)" in text
    assert "ris.yaml:13: unknown key 'acknowledgment' in messages: ADT" in text
