"""Several orders in one message, over MLLP, on SQLite and PostgreSQL, to a worklist query.

EHRs (Epic, Cerner) and RIS (GE, Agfa) send one ORM^O01 / OMI^O23 with an ORC group per placer
order. Each group is its own order with its own steps; the message is applied whole or not at
all, and an AE names the group that failed, with ERR pointing at its ORC.
"""

from __future__ import annotations

import json
import re

from pydicom.dataset import Dataset
from pynetdicom.sop_class import ModalityWorklistInformationFind
from sqlalchemy import select

from mwlbroker.domain.accounts import Role
from mwlbroker.store.tables import MessageRow, OrderRow, StepRow
from tests.support.dicom_peers import Modality, findscu
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES
from tests.support.web_client import login

SAMPLE = SAMPLES / "13_orm_o01_two_orders_v231.hl7"


def wire(text: str) -> bytes:
    """A message as a sender puts it on the wire: segments end in CR."""
    return text.replace("\n", "\r").encode("latin-1")


def worklist(broker, **sps: str) -> list[Dataset]:
    """What a modality's C-FIND returns, with the order-level keys asked for too."""
    query = Dataset()
    for keyword in (
        "PatientID",
        "PatientName",
        "AccessionNumber",
        "RequestedProcedureID",
        "RequestedProcedurePriority",
        "RequestedProcedureDescription",
        "StudyInstanceUID",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
    ):
        setattr(query, keyword, "")
    step = Dataset()
    for keyword in (
        "Modality",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledStationAETitle",
        "ScheduledStationName",
        "ScheduledProcedureStepStatus",
    ):
        setattr(step, keyword, sps.get(keyword, ""))
    query.ScheduledProcedureStepSequence = [step]
    modality = Modality(broker.dicom.port)
    try:
        found = []
        for status, identifier in modality.assoc.send_c_find(
            query, ModalityWorklistInformationFind
        ):
            assert status is not None
            if status.Status in (0xFF00, 0xFF01):
                found.append(identifier)
            else:
                assert status.Status == 0x0000, status
        return sorted(found, key=lambda item: item.AccessionNumber)
    finally:
        modality.close()


def accessions(broker) -> list[str]:
    return [str(item.AccessionNumber) for item in worklist(broker)]


def stored(broker, control_id: str) -> MessageRow:
    with broker.db.reading() as session:
        [row] = session.scalars(select(MessageRow).where(MessageRow.control_id == control_id))
        session.expunge(row)
        return row


def orders(broker) -> dict[str, tuple[str, int | None, list[str]]]:
    """Placer -> (last order control, message that created it, its steps' statuses)."""
    with broker.db.reading() as session:
        found = {}
        for order in session.scalars(select(OrderRow).order_by(OrderRow.id)):
            steps = session.scalars(select(StepRow).where(StepRow.order_id == order.id))
            found[order.placer_order_number or ""] = (
                order.order_control,
                order.created_message_id,
                sorted(step.status for step in steps),
            )
        return found


# -- messages in the shape senders give them ------------------------------------------------------


def cerner_orm(control_id: str, *groups: tuple[str, str, str, str, str]) -> bytes:
    """A Cerner Millennium-shaped ORM^O01 v2.3.1: one ORC/OBR group per (control, status,
    placer, accession, start), CT, the filler number the placer's with an F."""
    segments = [
        f"MSH|^~\\&|HNAM|GENERAL|MWLBROKER|RADIOLOGY|20261204081500||ORM^O01|{control_id}|P|2.3.1",
        "PID|1||40012345^^^GENERAL^MRN~999887777^^^SSA^SS||JACKSON^ROBERT^T||19550617|M"
        "|||401 W Oak^^Kansas City^MO^64105^USA^H",
        "PV1|1|I|4W^412^B^GENERAL||||1029^HOUSE^GREGORY^^^MD|||MED||||||||IN|8812345^^^GENERAL^FIN",
    ]
    for number, (control, status, placer, accession, start) in enumerate(groups, 1):
        segments += [
            f"ORC|{control}|{placer}|F{placer}||{status}||^^^{start}^^R||20261204081500"
            f"|JSMITH^SMITH^JANE||1029^HOUSE^GREGORY^^^MD|4W^412^B"
            + ("|||||Ordered in error" if control == "CA" else ""),
            f"OBR|{number}|{placer}|F{placer}|CTABD^CT Abdomen w/ Contrast^CERNER"
            f"|||||||||Abdominal pain RLQ|||1029^HOUSE^GREGORY^^^MD||{accession}||||||CT"
            f"|||^^^{start}^^R",
            f"NTE|1||Creatinine {number}.1 mg/dL",
        ]
    return hl7(*segments)


def ge_omi(control_id: str) -> bytes:
    """A GE / Agfa RIS-shaped OMI^O23 v2.5.1: two ORC/TQ1/OBR/IPC groups, the second with two
    IPC (two steps of one requested procedure on two stations)."""
    return hl7(
        f"MSH|^~\\&|RIS_IC|IMAGING|MWLBROKER|RADIOLOGY|20261205073000||OMI^O23^OMI_O23|{control_id}"
        "|P|2.5.1|||AL|NE||UNICODE UTF-8",
        "PID|1||77001^^^IMAGING^MR||LINDQVIST^ASTRID||19880402|F",
        "PV1|1|O|MRI^^^IMAGING|||||5501^FERREIRA^ANA^^^Dr.",
        "ORC|NW|OMI-7001^RIS_IC|RIS-7001^RIS_IC||SC||||20261205073000|||5501^FERREIRA^ANA^^^Dr.",
        "TQ1|1||||||20261206080000||R^Routine^HL70485",
        "OBR|1|OMI-7001^RIS_IC|RIS-7001^RIS_IC|MR1001^MR brain^L|||||||||||||||||||MR",
        "IPC|ACC-7001|RP-7001|1.2.826.0.1.3680043.10.543.7001|SPS-7001|MR|BRAIN_STD^Brain^L"
        "|MR_NORTH|MRROOM1^MR room 1^L|MRNORTH1",
        "ORC|NW|OMI-7002^RIS_IC|RIS-7002^RIS_IC||SC||||20261205073000|||5501^FERREIRA^ANA^^^Dr.",
        "TQ1|1||||||20261206093000||A^ASAP^HL70485",
        "OBR|2|OMI-7002^RIS_IC|RIS-7002^RIS_IC|CT2001^CT thorax^L|||||||||||||||||||CT",
        "IPC|ACC-7002|RP-7002|1.2.826.0.1.3680043.10.543.7002|SPS-7002A|CT|THX^Thorax^L"
        "|CT_SOUTH|CTROOM2^CT room 2^L|CTSOUTH2",
        "IPC|ACC-7002|RP-7002|1.2.826.0.1.3680043.10.543.7002|SPS-7002B|CT|THX_LOW^Low dose^L"
        "|CT_EAST|CTROOM3^CT room 3^L|CTEAST3",
        charset="utf-8",
    )


# -- the tests ------------------------------------------------------------------------------------


def test_two_orders_of_one_orm_are_both_found_with_their_own_attributes(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(wire(SAMPLE.read_text())))
    assert ack["MSA"][1:3] == ["AA", "RIS0000013"], ack

    head, chest = worklist(broker)
    assert (head.AccessionNumber, chest.AccessionNumber) == ("ACC20261202011", "ACC20261202012")
    assert head.PatientID == chest.PatientID == "PID135792"
    # Each item has its own order's ORC-2 / ORC-3, ORC-7 start and priority, OBR-24 modality.
    assert head.PlacerOrderNumberImagingServiceRequest == "550120331"
    assert chest.PlacerOrderNumberImagingServiceRequest == "550120332"
    assert chest.FillerOrderNumberImagingServiceRequest == "FIL20261202012"
    assert (head.RequestedProcedurePriority, chest.RequestedProcedurePriority) == (
        "STAT",
        "ROUTINE",
    )
    head_step, chest_step = (item.ScheduledProcedureStepSequence[0] for item in (head, chest))
    assert (head_step.Modality, head_step.ScheduledProcedureStepStartTime) == ("CT", "110000")
    assert (chest_step.Modality, chest_step.ScheduledProcedureStepStartTime) == ("CR", "111500")
    assert head_step.ScheduledProcedureStepID == "SPS20261202011"  # OBR-20
    # The chest X-ray has no OBR-19 / OBR-20: from its own accession, not the CT's.
    assert chest_step.ScheduledProcedureStepID == chest.RequestedProcedureID == "ACC20261202012"
    assert head.StudyInstanceUID != chest.StudyInstanceUID

    message = stored(broker, "RIS0000013")
    assert message.status == "processed"
    assert orders(broker) == {
        "550120331": ("NW", message.id, ["SCHEDULED"]),
        "550120332": ("NW", message.id, ["SCHEDULED"]),
    }


def test_omi_with_two_orc_tq1_obr_ipc_groups(broker, tmp_path):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(ge_omi("GE0001")))
    assert ack["MSA"][1] == "AA", ack

    # DCMTK's findscu, as a scanner asks: one station's worklist at a time (IPC-9).
    keys = [
        "AccessionNumber",
        "PlacerOrderNumberImagingServiceRequest",
        "RequestedProcedurePriority",
        "StudyInstanceUID",
        "(0040,0100)[0].ScheduledStationAETitle={aet}",
        "(0040,0100)[0].ScheduledProcedureStepID",
        "(0040,0100)[0].ScheduledStationName",
        "(0040,0100)[0].ScheduledProcedureStepStartTime",
    ]
    seen = {}
    for aet in ("MRNORTH1", "CTSOUTH2", "CTEAST3"):
        found = findscu(broker.dicom.port, *(k.format(aet=aet) for k in keys), tmp_path=tmp_path)
        assert found.status == "Success", found.output
        [item] = found.responses
        step = item.ScheduledProcedureStepSequence[0]
        seen[aet] = (
            item.AccessionNumber,
            item.PlacerOrderNumberImagingServiceRequest,
            item.RequestedProcedurePriority,
            step.ScheduledProcedureStepID,
            step.ScheduledStationName,
            step.ScheduledProcedureStepStartTime,
            item.StudyInstanceUID,
        )
    assert seen == {
        "MRNORTH1": (
            "ACC-7001",
            "OMI-7001",
            "ROUTINE",
            "SPS-7001",
            "MR_NORTH",
            "080000",
            "1.2.826.0.1.3680043.10.543.7001",
        ),
        "CTSOUTH2": (
            "ACC-7002",
            "OMI-7002",
            "HIGH",
            "SPS-7002A",
            "CT_SOUTH",
            "093000",
            "1.2.826.0.1.3680043.10.543.7002",
        ),
        "CTEAST3": (
            "ACC-7002",
            "OMI-7002",
            "HIGH",
            "SPS-7002B",
            "CT_EAST",
            "093000",
            "1.2.826.0.1.3680043.10.543.7002",
        ),
    }
    message = stored(broker, "GE0001")
    assert orders(broker) == {
        "OMI-7001": ("NW", message.id, ["SCHEDULED"]),
        "OMI-7002": ("NW", message.id, ["SCHEDULED", "SCHEDULED"]),
    }


def test_a_new_order_and_a_cancel_in_one_message(broker, database_url):
    with Peer(broker.hl7.port) as peer:
        first = cerner_orm("CER001", ("NW", "SC", "5001", "ACC5001", "20261204100000"))
        assert ack_fields(peer.send(first))["MSA"][1] == "AA"
        assert accessions(broker) == ["ACC5001"]
        # The next message orders a new exam and cancels the first one.
        both = cerner_orm(
            "CER002",
            ("NW", "SC", "5002", "ACC5002", "20261204110000"),
            ("CA", "CA", "5001", "ACC5001", "20261204100000"),
        )
        ack = ack_fields(peer.send(both))
    assert ack["MSA"][1] == "AA", ack
    assert accessions(broker) == ["ACC5002"]  # a canceled step is not offered
    created = stored(broker, "CER001").id, stored(broker, "CER002").id
    assert orders(broker) == {
        "5001": ("CA", created[0], ["CANCELED"]),
        "5002": ("NW", created[1], ["SCHEDULED"]),
    }

    # What the message did, as `messages show` and the message page tell it: two orders.
    env = cli_env(database_url)
    shown = run_cli("messages", "show", str(created[1]), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert [
        (o["placer_order_number"], o["order_control"], o["created"])
        for o in json.loads(shown.stdout)["orders"]
    ] == [("5001", "CA", False), ("5002", "NW", True)]
    text = run_cli("messages", "show", str(created[1]), env=env).stdout
    [line] = [line for line in text.splitlines() if line.startswith("orders ")]
    assert "(5001, last changed, CA)" in line and "(5002, created)" in line
    broker.accounts.add_user("alice", "correct horse battery", Role.VIEWER)
    client = broker.build_web_app().test_client()
    login(client, "alice", "correct horse battery")
    page = client.get(f"/messages/{created[1]}").get_data(as_text=True)
    assert re.search(r'<a href="/orders/\d+">order \d+</a> \(5002, created\)', page), page


def test_a_failing_second_order_applies_nothing_until_reprocessed(broker, database_url):
    with Peer(broker.hl7.port) as peer:
        # Order 2 changes (XO) an order the broker has never seen.
        both = cerner_orm(
            "CER010",
            ("NW", "SC", "6001", "ACC6001", "20261204100000"),
            ("XO", "SC", "6002", "ACC6002", "20261204150000"),
        )
        ack = ack_fields(peer.send(both))
        assert ack["MSA"][1] == "AE", ack
        assert ack["MSA"][3].startswith("order 2 (ORC[2], placer 6002): ORC-1 XO for unknown")
        # v2.3.1 ERR-1: segment ^ occurrence ^ field ^ code (table 0357: 204 unknown key)
        segment, occurrence, field, code = ack["ERR"][1].split("^")
        assert (segment, occurrence, field) == ("ORC", "2", "2")
        assert code.startswith("204&")
        assert accessions(broker) == []  # order 1 was not applied either
        failed = stored(broker, "CER010")
        assert failed.status == "failed"
        assert failed.error is not None and "order 2 (ORC[2], placer 6002)" in failed.error
        assert orders(broker) == {}

        # The missing order arrives; then the failed message is reprocessed, and applies whole.
        missing = cerner_orm("CER011", ("NW", "SC", "6002", "ACC6002", "20261204140000"))
        assert ack_fields(peer.send(missing))["MSA"][1] == "AA"
    done = run_cli("messages", "reprocess", str(failed.id), env=cli_env(database_url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"message {failed.id}: processed (AA)" in done.stdout

    first, second = worklist(broker)
    assert (first.AccessionNumber, second.AccessionNumber) == ("ACC6001", "ACC6002")
    moved = second.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime
    assert moved == "150000"  # the XO of order 2 took effect
    assert stored(broker, "CER010").status == "processed"
    assert orders(broker) == {
        "6001": ("NW", failed.id, ["SCHEDULED"]),
        "6002": ("XO", stored(broker, "CER011").id, ["SCHEDULED"]),
    }


def test_a_resent_message_of_two_orders_is_applied_once(broker):
    message = wire(SAMPLE.read_text())
    with Peer(broker.hl7.port) as peer:
        first = ack_fields(peer.send(message))
        again = ack_fields(peer.send(message))
    assert first["MSA"][1:3] == again["MSA"][1:3] == ["AA", "RIS0000013"]
    assert accessions(broker) == ["ACC20261202011", "ACC20261202012"]
    row = stored(broker, "RIS0000013")
    assert row.duplicate_count == 1
    assert [steps for _, _, steps in orders(broker).values()] == [["SCHEDULED"], ["SCHEDULED"]]


def omg(control_id: str, second_control: str = "NW", second_status: str = "SC") -> bytes:
    """An OMG^O19 v2.5.1 in the IHE SWF.b general-order shape: two ORC/TQ1/OBR groups."""
    return hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261203090000||OMG^O19^OMG_O19|{control_id}"
        "|P|2.5.1",
        "PID|1||PID3001^^^HOSPITAL^MR||OKAFOR^CHIDI||19800101|M",
        "ORC|NW|PLG1^RIS|FLG1^RIS||SC||||20261203090000",
        "TQ1|1||||||20261205080000||R^Routine^HL70485",
        "OBR|1|PLG1^RIS|FLG1^RIS|US01^US abdomen^L||||||||||||||ACCG1|RPG1|SPSG1||||US",
        f"ORC|{second_control}|PLG2^RIS|FLG2^RIS||{second_status}||||20261203090000",
        "TQ1|1||||||20261205090000||S^Stat^HL70485",
        "OBR|2|PLG2^RIS|FLG2^RIS|US02^US neck^L||||||||||||||ACCG2|RPG2|SPSG2||||US",
    )


def test_omg_with_two_orders_and_an_error_in_the_second_in_v251_err(broker):
    with Peer(broker.hl7.port) as peer:
        bad = ack_fields(peer.send(omg("OMG01", "XX", "YY")))
        assert bad["MSA"][1] == "AE", bad
        # v2.5.1: ERR-2 is the location (the second ORC, ORC-1), ERR-8 the text.
        assert bad["ERR"][2] == "ORC^2^1"
        assert bad["ERR"][8].startswith(
            "order 2 (ORC[2], placer PLG2): no status for ORC-1 'XX' with ORC-5 'YY'"
        )
        assert accessions(broker) == []
        good = ack_fields(peer.send(omg("OMG02")))
    assert good["MSA"][1] == "AA", good
    first, second = worklist(broker)
    assert (first.AccessionNumber, first.RequestedProcedurePriority) == ("ACCG1", "ROUTINE")
    assert (second.AccessionNumber, second.RequestedProcedurePriority) == ("ACCG2", "STAT")
    assert second.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "090000"


def test_mappings_test_shows_every_order(tmp_path):
    env = cli_env(f"sqlite:///{tmp_path / 'never.db'}")
    shown = run_cli("mappings", "test", str(SAMPLE), "--json", env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    data = json.loads(shown.stdout)
    assert [
        (o["order"], o["orc"], o["placer_order_number"], len(o["items"])) for o in data["orders"]
    ] == [(1, 1, "550120331", 1), (2, 2, "550120332", 1)]
    text = run_cli("mappings", "test", str(SAMPLE), env=env).stdout
    assert "== order 2 (ORC[2], placer 550120332)" in text
    assert not (tmp_path / "never.db").exists()
