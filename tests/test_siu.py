"""Scheduling by SIU over MLLP, on SQLite and PostgreSQL: appointments become worklist items.

The bundled siu-example profile maps SIU^S12..S15 from the sender SCHEDULER: S12 creates the
order and one worklist item per AIS, S13 (reschedule) and S14 (modification) change it, S15
cancels it. An SIU from any other sender is answered AR, as a type the broker does not take.
"""

from __future__ import annotations

import shutil

import pytest
from pydicom import Dataset

from mwlbroker.mapping.worklist_item import item_from_json
from mwlbroker.store import messages, worklist
from mwlbroker.store.tables import OrderEventRow, StepRow
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.samples import ROOT, SAMPLES

HEADER = (
    "MSH|^~\\&|{app}|HOSPITAL|MWLBROKER|RADIOLOGY|20261201090000||SIU^{trigger}^SIU_S12|{id}|P|"
    "2.5.1"
)
PATIENT = "PID|1||PID7001^^^HOSPITAL^MR||BERG^INGRID||19720515|F"
VISIT = "PV1|1|O|RAD^CTWAIT^^HOSPITAL|||||6032^PATEL^ANIKA^^^DR"


def service(
    number: int = 1,
    code: str = "74177^CT ABDOMEN AND PELVIS W/CONTRAST^C4",
    start: str = "20261204103000",
    minutes: int = 20,
) -> str:
    """An AIS: AIS-3 service, AIS-4 start, AIS-7/8 duration."""
    return f"AIS|{number}|A|{code}|{start}|||{minutes}|min^minute^ISO+"


def siu(
    control_id: str,
    trigger: str = "S12",
    status: str = "Booked",
    *services: str,
    appointment: str = "APT5001",
    resource: str = "CT01",
    app: str = "SCHEDULER",
) -> bytes:
    """An SIU^Sxx (v2.5.1): SCH (SCH-2 appointment, SCH-25 status), PID, PV1, RGS, AIS, AIG."""
    sch = ["SCH", f"PA{appointment}^HIS", f"{appointment}^SCHEDULER"] + [""] * 23
    sch[11] = "^^M20^20261204103000^^R"
    sch[25] = f"{status}^{status}^HL70278" if status else ""
    return hl7(
        HEADER.format(app=app, trigger=trigger, id=control_id),
        "|".join(sch),
        PATIENT,
        VISIT,
        "RGS|1|A",
        *(services or (service(),)),
        f"AIG|1|A|{resource}^Scanner^L",
        "AIL|1|A|RAD^CTROOM1^^HOSPITAL",
    )


def send(broker, *wires: bytes) -> list[list[str]]:
    """Send each message; return each ACK's MSA fields."""
    with Peer(broker.hl7.port) as peer:
        return [ack_fields(peer.send(wire))["MSA"] for wire in wires]


def steps(broker) -> list[StepRow]:
    with broker.db.reading() as session:
        return sorted(worklist.search_steps(session, limit=1000), key=lambda row: row.id)


def item(step: StepRow) -> Dataset:
    return item_from_json(step.dataset)


def sps(step: StepRow) -> Dataset:
    return item(step).ScheduledProcedureStepSequence[0]


def history(broker, order_id: int) -> list[OrderEventRow]:
    with broker.db.reading() as session:
        return list(worklist.events_for_order(session, order_id))


def test_sample_s12_creates_the_worklist_item(broker):
    wire = (SAMPLES / "11_siu_s12_v251.hl7").read_bytes().replace(b"\n", b"\r")
    [msa] = send(broker, wire)
    assert msa[1:3] == ["AA", "RIS0000011"], msa
    [step] = steps(broker)
    assert (step.status, step.patient_id, step.accession_number, step.sps_id) == (
        "SCHEDULED",
        "PID567890",
        "APT778123-1",
        "APT778123-1",
    )
    assert (step.modality, step.station_ae, step.start_datetime) == (
        "CT",
        "CT_MAIN",
        "20261204103000",
    )
    dataset = item(step)
    assert dataset.PatientName == "LINDQVIST^ERIK^J^MR"
    assert dataset.FillerOrderNumberImagingServiceRequest == "APT778123"
    assert dataset.RequestedProcedureCodeSequence[0].CodeValue == "74177"
    assert (sps(step).ScheduledProcedureStepEndTime, sps(step).ScheduledStationName) == (
        "105000",
        "CT1",
    )


def test_s12_s13_s14_s15_schedule_move_modify_cancel(broker):
    assert send(broker, siu("M1", "S12"))[0][1] == "AA"
    [step] = steps(broker)
    assert (step.status, step.start_datetime, step.station_ae) == (
        "SCHEDULED",
        "20261204103000",
        "CT_MAIN",
    )
    uid = item(step).StudyInstanceUID

    # S13: the appointment moves to the next morning and lasts longer.
    moved = service(start="20261205081500", minutes=45)
    assert send(broker, siu("M2", "S13", "Booked", moved))[0][1] == "AA"
    [step] = steps(broker)
    assert (step.status, step.start_datetime) == ("SCHEDULED", "20261205081500")
    assert (sps(step).ScheduledProcedureStepStartDate, sps(step).ScheduledProcedureStepEndTime) == (
        "20261205",
        "090000",
    )
    assert item(step).StudyInstanceUID == uid  # the same study: nothing else changed

    # S14: same time, another scanner (MR) and another service.
    changed = service(code="70551^MR BRAIN W/O CONTRAST^C4", start="20261205081500", minutes=45)
    assert send(broker, siu("M3", "S14", "Booked", changed, resource="MR01"))[0][1] == "AA"
    [step] = steps(broker)
    assert (step.status, step.modality, step.station_ae) == ("SCHEDULED", "MR", "MR_NEURO")
    assert item(step).RequestedProcedureDescription == "MR BRAIN W/O CONTRAST"
    assert step.accession_number == "APT5001-1"  # same item: from the appointment ID

    # S15: cancelled; off the worklist, kept in history.
    assert send(broker, siu("M4", "S15", "Cancelled", changed, resource="MR01"))[0][1] == "AA"
    [step] = steps(broker)
    assert step.status == "CANCELED"
    assert sps(step).ScheduledProcedureStepStatus == "CANCELED"
    events = [(e.event, e.status_after) for e in history(broker, step.order_id)]
    assert events[:2] == [("created", "SCHEDULED"), ("step added", "SCHEDULED")]
    assert events.count(("step changed", "SCHEDULED")) == 2 and ("status", "CANCELED") in events


def test_s14_with_filler_status_started_starts_the_step(broker):
    acks = send(broker, siu("M1", "S12"), siu("M2", "S14", "Started"))
    assert [a[1] for a in acks] == ["AA", "AA"], acks
    assert steps(broker)[0].status == "STARTED"


def test_an_appointment_with_two_services_and_a_modification_dropping_one(broker):
    two = (service(1), service(2, "71260^CT THORAX W/CONTRAST^C4", "20261204105000", 15))
    assert send(broker, siu("M1", "S12", "Booked", *two))[0][1] == "AA"
    assert [(s.sps_id, s.start_datetime) for s in steps(broker)] == [
        ("APT5001-1", "20261204103000"),
        ("APT5001-2", "20261204105000"),
    ]
    assert send(broker, siu("M2", "S14", "Booked", service(1)))[0][1] == "AA"
    assert [(s.sps_id, s.status) for s in steps(broker)] == [
        ("APT5001-1", "SCHEDULED"),
        ("APT5001-2", "REMOVED"),
    ]


def test_reschedule_of_an_unknown_appointment_is_answered_ae(broker):
    [msa] = send(broker, siu("M1", "S13", appointment="APT9999"))
    assert msa[1] == "AE" and "unknown order" in msa[3]
    assert steps(broker) == []


def test_siu_from_a_sender_without_an_siu_profile_is_answered_ar(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(siu("M1", "S12", app="RIS")))
    assert ack["MSA"][1] == "AR", ack
    assert "no mapping profile maps SIU\\S\\S12" in ack["MSA"][3]  # MSA-3: first 80 characters
    assert "mapped only for other senders: siu-example for SCHEDULER" in ack["ERR"][8]
    # 200: no profile for this sender maps any SIU trigger, as if the broker took no SIU at all
    assert ack["ERR"][3].startswith("200^"), ack["ERR"]  # unsupported message type
    assert steps(broker) == []
    with broker.db.reading() as session:
        [row] = messages.latest(session, control_id="M1")
    assert row.status == "rejected"  # kept, reprocessable once a profile maps it


def test_siu_is_answered_ar_when_no_profile_maps_it(broker_factory, tmp_path):
    folder = tmp_path / "mappings"
    folder.mkdir()
    shutil.copy(ROOT / "mappings" / "ihe-swf.yaml", folder / "ihe-swf.yaml")
    broker = broker_factory(mappings__dir=str(folder))
    [msa] = send(broker, siu("M1", "S12"))
    assert msa[1] == "AR" and "not handled" in msa[3], msa


@pytest.mark.parametrize("trigger", ["S13", "S14", "S15"])
def test_each_change_trigger_after_s12_is_accepted(broker, trigger):
    acks = send(
        broker, siu("M1", "S12"), siu("M2", trigger, "Cancelled" if trigger == "S15" else "Booked")
    )
    assert [a[1] for a in acks] == ["AA", "AA"], acks
    expected = {"S13": "SCHEDULED", "S14": "SCHEDULED", "S15": "CANCELED"}[trigger]
    assert steps(broker)[0].status == expected
