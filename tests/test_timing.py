"""Order timing over MLLP, on SQLite and PostgreSQL, as a modality's C-FIND by date sees it.

The bundled ihe-swf profile reads the start, end and priority of an order from TQ1 (v2.5 on)
first, then ORC-7, then OBR-27 (the TQ data type, kept for backward compatibility in v2.5 and
v2.6, withdrawn in v2.7): TQ1-7 / TQ.4 start, TQ1-8 / TQ.5 end, TQ1-9 / TQ.6 priority. A
repeated TQ1 is read at its first occurrence; TQ2 is accepted and does not change the items.
An OMI without IPC gives one item per OBR (``repeat: [IPC, OBR]``), and a site profile can say
the same for its own messages. In SIU the service's own start (AIS-4) comes before TQ1-7.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from mwlbroker.mapping.engine import load_mappings
from mwlbroker.mapping.loader import MappingLoadError
from mwlbroker.store.tables import MessageRow
from tests.support.hl7_messages import ack_fields
from tests.support.hl7_segments import msh, segment, wire
from tests.support.mllp_peers import Peer
from tests.support.samples import SAMPLES
from tests.support.worklist_by_date import accessions_on, worklist_on

PID = segment("PID", {1: "1", 3: "PTIME1^^^HOSPITAL^MR", 5: "TIMING^TESSA", 7: "19800101", 8: "F"})


def orc(order: str, tq: str = "") -> str:
    """ORC-1 NW with ORC-5 SC; ``tq`` is ORC-7 Quantity/Timing (TQ)."""
    return segment("ORC", {1: "NW", 2: f"{order}^RIS", 3: f"F{order}^RIS", 5: "SC", 7: tq})


def tq1(start: str = "", end: str = "", priority: str = "", number: int = 1) -> str:
    """TQ1-7 Start Date/Time, TQ1-8 End Date/Time, TQ1-9 Priority."""
    return segment("TQ1", {1: str(number), 7: start, 8: end, 9: priority})


def obr(order: str, accession: str, tq: str = "", modality: str = "CT", number: int = 1) -> str:
    """OBR with OBR-18/19/20 accession / requested procedure ID / SPS ID, OBR-24, OBR-27."""
    return segment(
        "OBR",
        {1: str(number), 2: f"{order}^RIS", 3: f"F{order}^RIS", 4: "CT0101^CT CHEST^L",
         18: accession, 19: f"RP{accession}", 20: f"SP{accession}", 24: modality, 27: tq},
    )  # fmt: skip


def orm(control_id: str, *segments: str, version: str = "2.5") -> bytes:
    return wire(msh(control_id, "ORM^O01^ORM_O01", version), PID, *segments)


def send(broker, *messages: bytes) -> None:
    """Send each message and require AA for it."""
    with Peer(broker.hl7.port) as peer:
        for message in messages:
            ack = ack_fields(peer.send(message))
            assert ack["MSA"][1] == "AA", ack


def only_item(broker, date: str):
    [item] = worklist_on(broker.dicom.port, date)
    return item, item.ScheduledProcedureStepSequence[0]


def test_tq1_comes_before_orc_7_which_comes_before_obr_27(broker):
    send(
        broker,
        # All three filled, each with another day and priority: TQ1 decides.
        orm(
            "T1",
            orc("PLA", "^^^20261221080000^^R"),
            tq1("20261221070000", priority="S^Stat^HL70485"),
            obr("PLA", "ACCA", "^^^20261223080000^^P"),
        ),
        # No TQ1 (a v2.4 sender): ORC-7 decides over OBR-27.
        orm(
            "T2",
            orc("PLB", "^^^20261222090000^^A"),
            obr("PLB", "ACCB", "^^^20261223090000^^P"),
            version="2.4",
        ),
        # OBR-27 alone (each OBR its own timing, ORC-7 empty).
        orm("T3", orc("PLC"), obr("PLC", "ACCC", "^^^20261223100000^^P"), version="2.3.1"),
    )
    port = broker.dicom.port
    assert accessions_on(port, "20261221") == ["ACCA"]
    assert accessions_on(port, "20261222") == ["ACCB"]
    assert accessions_on(port, "20261223") == ["ACCC"]
    by_accession = {
        str(item.AccessionNumber): item for item in worklist_on(port, "20261221-20261223")
    }
    starts = {
        accession: item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime
        for accession, item in by_accession.items()
    }
    assert starts == {"ACCA": "070000", "ACCB": "090000", "ACCC": "100000"}
    priorities = {a: item.RequestedProcedurePriority for a, item in by_accession.items()}
    # TQ1-9 S over ORC-7.6 R; ORC-7.6 A over OBR-27.6 P; OBR-27.6 P (preoperative) alone.
    assert priorities == {"ACCA": "STAT", "ACCB": "HIGH", "ACCC": "LOW"}


def test_tq1_8_gives_the_end_even_on_the_next_day(broker):
    send(broker, orm("E1", orc("PLE"), tq1("20261224233000", "20261225003000"), obr("PLE", "ACCE")))
    _, step = only_item(broker, "20261224")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20261224",
        "233000",
    )
    assert (step.ScheduledProcedureStepEndDate, step.ScheduledProcedureStepEndTime) == (
        "20261225",
        "003000",
    )
    # PS3.4 K.6.1.2.2: the start date is the matching key; the end does not make it match.
    assert worklist_on(broker.dicom.port, "20261225") == []


def test_a_start_with_a_time_zone_offset_keeps_the_senders_clock(broker):
    send(
        broker,
        orm("Z1", orc("PLZ"), tq1("20261226233000-0500"), obr("PLZ", "ACCZ1")),
        orm("Z2", orc("PLY"), tq1("20261226081530.25+0100", "202612260900+0100"), obr("PLY", "ACCZ2")),
    )  # fmt: skip
    items = {str(i.AccessionNumber): i for i in worklist_on(broker.dicom.port, "20261226")}
    assert sorted(items) == ["ACCZ1", "ACCZ2"]
    late = items["ACCZ1"].ScheduledProcedureStepSequence[0]
    # 23:30 in New York is 04:30 UTC the next day; the worklist keeps the hospital's clock.
    assert late.ScheduledProcedureStepStartTime == "233000"
    assert worklist_on(broker.dicom.port, "20261227") == []
    early = items["ACCZ2"].ScheduledProcedureStepSequence[0]
    assert early.ScheduledProcedureStepStartTime == "081530.25"  # seconds and fraction kept
    assert early.ScheduledProcedureStepEndTime == "090000"


def test_a_start_that_is_no_date_is_answered_ae_naming_tq1_7(broker):
    bad = orm("B1", orc("PLB1"), tq1("20261232081500"), obr("PLB1", "ACCB1"))
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(bad))
        assert ack["MSA"][1:3] == ["AE", "B1"]
        assert ack["ERR"][2] == "TQ1^1^7"  # ERR-2 Error Location (v2.5)
        assert (
            "ScheduledProcedureStepStartDate: '20261232081500' is not a valid date"
            in (ack["ERR"][8])
        )
        assert "(from TQ1-7 / ORC-7.4 / OBR-27.4, rule at " in ack["ERR"][8]
        # Nothing of it was applied, and the next message is taken.
        good = orm("B2", orc("PLB2"), tq1("20261231081500"), obr("PLB2", "ACCB2"))
        assert ack_fields(peer.send(good))["MSA"][1] == "AA"
    with broker.db.reading() as session:
        statuses = dict(session.execute(select(MessageRow.control_id, MessageRow.status)).all())
    assert statuses == {"B1": "failed", "B2": "processed"}
    assert accessions_on(broker.dicom.port, "20261201-20261231") == ["ACCB2"]


def test_a_repeated_tq1_is_read_at_its_first_occurrence(broker):
    send(
        broker,
        orm(
            "R1",
            orc("PLR"),
            tq1("20261228080000", priority="S", number=1),
            tq1("20261229090000", priority="R", number=2),
            obr("PLR", "ACCR"),
        ),
        # Two ORC groups of one order, each with its own TQ1: each OBR reads its own.
        orm(
            "R2",
            orc("PLS"),
            tq1("20261228100000", priority="A"),
            obr("PLS", "ACCS1"),
            orc("PLS"),
            tq1("20261230110000", priority="R"),
            obr("PLS", "ACCS2", number=2),
        ),
    )
    port = broker.dicom.port
    assert accessions_on(port, "20261228") == ["ACCR", "ACCS1"]
    assert accessions_on(port, "20261229") == []
    assert accessions_on(port, "20261230") == ["ACCS2"]
    priorities = {
        str(i.AccessionNumber): i.RequestedProcedurePriority
        for i in worklist_on(port, "20261228-20261230")
    }
    assert priorities == {"ACCR": "STAT", "ACCS1": "HIGH", "ACCS2": "ROUTINE"}


def test_tq2_is_accepted_and_leaves_the_items_as_they_are(broker):
    uid = "1.2.826.0.1.3680043.10.543.77.{}"
    send(
        broker,
        orm(
            "Q1",
            orc("PLQ"),
            tq1("20261231081500", priority="R"),
            # TQ2 Timing/Quantity Relationship: after another order (ES: end -> start).
            segment("TQ2", {1: "1", 2: "S", 4: "PLP^RIS", 10: "ES"}),
            segment("TQ2", {1: "2", 2: "S", 4: "PLO^RIS", 10: "ES"}),
            obr("PLQ", "ACCQ1"),
            segment("ZDS", {1: uid.format(1) + "^100^Application^DICOM"}),
            obr("PLQ", "ACCQ2", number=2),
            segment("ZDS", {1: uid.format(2) + "^100^Application^DICOM"}),
            version="2.6",
        ),
    )
    items = {str(i.AccessionNumber): i for i in worklist_on(broker.dicom.port, "20261231")}
    assert sorted(items) == ["ACCQ1", "ACCQ2"]
    assert items["ACCQ1"].StudyInstanceUID == uid.format(1)  # each OBR with its own ZDS
    assert items["ACCQ2"].StudyInstanceUID == uid.format(2)
    for item in items.values():
        assert item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "081500"


def test_omi_without_ipc_gives_one_item_per_obr(broker):
    sample = (SAMPLES / "17_omi_o23_no_ipc_v251.hl7").read_bytes().replace(b"\n", b"\r")
    send(broker, sample)
    items = {
        str(i.AccessionNumber): i for i in worklist_on(broker.dicom.port, "20261210", modality="MR")
    }
    assert sorted(items) == ["ACC20261210003", "ACC20261210004"]  # OBR-18 of each OBR
    brain, spine = items["ACC20261210003"], items["ACC20261210004"]
    assert (brain.RequestedProcedureID, spine.RequestedProcedureID) == (
        "RP20261210003",  # OBR-19
        "RP20261210004",
    )
    assert brain.StudyInstanceUID == "1.2.826.0.1.3680043.10.543.20261210.3"  # its ZDS-1
    assert spine.StudyInstanceUID == "1.2.826.0.1.3680043.10.543.20261210.4"
    assert [
        (s.ScheduledProcedureStepID, s.Modality, s.ScheduledProcedureStepStartTime)
        for s in (brain.ScheduledProcedureStepSequence[0], spine.ScheduledProcedureStepSequence[0])
    ] == [("SPS20261210003", "MR", "080000"), ("SPS20261210004", "MR", "080000")]
    assert brain.RequestedProcedurePriority == "ROUTINE"  # TQ1-9


def test_an_omi_with_ipc_is_still_read_per_ipc(broker):
    sample = (SAMPLES / "10_omi_o23_nw_v251.hl7").read_bytes().replace(b"\n", b"\r")
    send(broker, sample)
    [item] = worklist_on(broker.dicom.port, "20261130")
    assert item.AccessionNumber == "ACC20261130003"  # IPC-1, not OBR-18 (empty here)
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "MRSCANNER2"


SITE_PROFILE = """\
    profile: site-omg-ipc
    description: A RIS whose OMG^O19 carries IPC segments when it knows them
    extends: ihe-swf
    priority: 10
    match:
      sending_application: "ORDERS*"
      sending_facility: "*"
    messages:
      OMG^O19:
        repeat: [IPC, OBR]             # one item per IPC; no IPC: one per OBR
        procedure:
          AccessionNumber: {first: [IPC-1, OBR-18]}
          RequestedProcedureID: {first: [IPC-2, OBR-19]}
        step:
          ScheduledProcedureStepID: {first: [IPC-4, OBR-20]}
          Modality: {first: [IPC-5, OBR-24], transform: upper}
"""


def write_profile(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    (folder / "site.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def test_a_site_profile_can_fall_back_from_ipc_to_obr(broker_factory, tmp_path):
    broker = broker_factory(mappings__dir=str(write_profile(tmp_path, SITE_PROFILE)))

    def omg(control_id: str, *order: str) -> bytes:
        header = msh(control_id, "OMG^O19^OMG_O19", "2.5.1", sender="ORDERS")
        return wire(header, PID, *order)

    send(
        broker,
        omg(
            "G1",
            orc("PLG"),
            tq1("20261215090000"),
            obr("PLG", "", modality=""),
            segment("IPC", {1: "ACCG1", 2: "RPG1", 3: "2.25.1001", 4: "SPG1", 5: "MR"}),
            segment("IPC", {1: "ACCG2", 2: "RPG2", 3: "2.25.1002", 4: "SPG2", 5: "MR"}),
        ),
        omg("G2", orc("PLH"), tq1("20261216090000"), obr("PLH", "ACCH", modality="us")),
    )
    with_ipc = worklist_on(broker.dicom.port, "20261215")
    assert sorted(
        (str(i.AccessionNumber), i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID)
        for i in with_ipc
    ) == [("ACCG1", "SPG1"), ("ACCG2", "SPG2")]
    [without] = worklist_on(broker.dicom.port, "20261216")
    step = without.ScheduledProcedureStepSequence[0]
    assert (without.AccessionNumber, step.ScheduledProcedureStepID, step.Modality) == (
        "ACCH",
        "SPACCH",
        "US",
    )


@pytest.mark.parametrize(
    ("repeat", "message"),
    [
        ("[IPC, ob]", "repeat: 'ob' is not a segment ID such as OBR"),
        ("[IPC, IPC]", "repeat: IPC is named twice"),
        ("[]", "repeat: must be a segment ID or a list of them such as OBR"),
    ],
)
def test_a_bad_repeat_list_is_reported_with_its_line(tmp_path, repeat, message):
    text = SITE_PROFILE.replace("repeat: [IPC, OBR]", f"repeat: {repeat}")
    folder = write_profile(tmp_path, text)
    with pytest.raises(MappingLoadError) as raised:
        load_mappings(folder)
    lines = textwrap.dedent(text).splitlines()
    line = next(n for n, row in enumerate(lines, 1) if row.strip().startswith("repeat:"))
    errors = [str(error) for error in raised.value.errors]
    assert any(e.startswith(f"{folder / 'site.yaml'}:{line}: {message}") for e in errors), errors


def test_siu_takes_the_services_own_start_before_tq1(broker):
    sample = (SAMPLES / "20_siu_s12_tq1_v26.hl7").read_text()
    own_start = (
        sample.replace("RIS0000020", "RIS0000021")
        .replace("PA20261206031", "PA20261206032")
        .replace("APT778456", "APT778457")
        .replace("^C4||||30|", "^C4|20261212110000|||30|")  # AIS-4 Start Date/Time
    )
    send(broker, *(text.replace("\n", "\r").encode() for text in (sample, own_start)))
    items = {str(i.AccessionNumber): i for i in worklist_on(broker.dicom.port, "20261212")}
    times = {
        accession: (
            item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime,
            item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepEndTime,
        )
        for accession, item in items.items()
    }
    # No AIS-4: TQ1-7 09:10, end + AIS-7 30 min; AIS-4 11:00 wins over TQ1-7.
    assert times == {"APT778456-1": ("091000", "094000"), "APT778457-1": ("110000", "113000")}
