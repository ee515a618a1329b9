"""The order and patient lifecycle, message by message over MLLP, on SQLite and PostgreSQL.

Each case sends real HL7 through the listener and checks what a PACS administrator would look
at: the worklist items with their status and dataset, the order history and the audit trail.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from pydicom import Dataset

from mwlbroker.mapping.worklist_item import item_from_json
from mwlbroker.store import worklist
from mwlbroker.store.tables import AuditRow, OrderEventRow, PatientRow, StepRow
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES, sample_files

HEADER = "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||{type}|{id}|P|{version}"


def order_message(
    control_id: str,
    control: str = "NW",
    status: str = "SC",
    *,
    order: str = "ORD1",
    patient: str = "PAT1",
    name: str = "DOE^JANE",
    steps: tuple[str, ...] = ("1",),
    start: str = "20261201083000",
    referring: str = "1234^WELBY^MARCUS",
    study_uid: str | None = None,
    modality: str = "CT",
) -> bytes:
    """An ORM^O01 (v2.3.1) with one OBR (and ZDS) per step suffix."""
    segments = [
        HEADER.format(type="ORM^O01", id=control_id, version="2.3.1"),
        f"PID|1||{patient}^^^HOSPITAL^MR||{name}||19800101|F",
        f"PV1|1|O|RAD^^^HOSPITAL|||||{referring}",  # PV1-8 Referring Doctor
        f"ORC|{control}|{order}|F{order}||{status}||^^^{start}^^R",
    ]
    for suffix in steps:
        obr = ["OBR", suffix, order, f"F{order}", "CT01^CT HEAD^L"] + [""] * 13
        obr += [f"A{order}{suffix}", f"RP{order}{suffix}", f"S{order}{suffix}"] + [""] * 3
        obr += [modality]
        segments.append("|".join(obr))
        uid = study_uid or f"1.2.826.0.1.3680043.10.543.{zlib.crc32(order.encode())}.{suffix}"
        segments.append(f"ZDS|{uid}^100^Application^DICOM")
    return hl7(*segments)


def adt(control_id: str, trigger: str, *segments: str, version: str = "2.5.1") -> bytes:
    structure = {"A40": "ADT_A39", "A47": "ADT_A30"}.get(trigger, "ADT_A01")
    return hl7(
        HEADER.format(type=f"ADT^{trigger}^{structure}", id=control_id, version=version),
        f"EVN|{trigger}|20261127101500",
        *segments,
    )


def send(broker, *messages: bytes) -> list[list[str]]:
    """Send each message; return each ACK's MSA fields."""
    with Peer(broker.hl7.port) as peer:
        return [ack_fields(peer.send(message))["MSA"] for message in messages]


def steps(broker, **where) -> list[StepRow]:
    with broker.db.reading() as session:
        rows = worklist.search_steps(session, limit=1000)
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def item(step: StepRow) -> Dataset:
    return item_from_json(step.dataset)


def history(broker, order_id: int) -> list[OrderEventRow]:
    with broker.db.reading() as session:
        return list(worklist.events_for_order(session, order_id))


def patient(broker, patient_id: str, issuer: str = "HOSPITAL") -> PatientRow | None:
    with broker.db.reading() as session:
        return worklist.find_patient(session, patient_id, issuer)


def audits(broker, entity_id: int) -> list[AuditRow]:
    with broker.db.reading() as session:
        return list(worklist.audit_for(session, "patient", entity_id))


# -- orders ---------------------------------------------------------------------------------------


def test_sample_story_new_change_cancel(broker):
    story = ["01_adt_a04_v231", "02_orm_o01_nw_v231", "03_orm_o01_xo_v231", "04_orm_o01_ca_v231"]
    wires = [(SAMPLES / f"{name}.hl7").read_bytes().replace(b"\n", b"\r") for name in story]

    assert send(broker, wires[0], wires[1])[1][1] == "AA"
    [step] = steps(broker)
    assert (step.status, step.accession_number, step.modality) == (
        "SCHEDULED",
        "ACC20261127001",
        "CT",
    )
    assert step.start_datetime == "20261127143000"
    dataset = item(step)
    assert dataset.PatientName == "DOE^JOHN^Q^MR"
    assert dataset.StudyInstanceUID == "1.2.826.0.1.3680043.10.543.20261127.1"
    assert dataset.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "SPS20261127001"

    assert send(broker, wires[2])[0][1] == "AA"  # XO moves the start to 16:00
    [step] = steps(broker)
    assert step.status == "SCHEDULED" and step.start_datetime == "20261127160000"
    assert item(step).ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "160000"

    assert send(broker, wires[3])[0][1] == "AA"  # CA: off the worklist, kept in history
    [step] = steps(broker)
    assert step.status == "CANCELED"
    assert item(step).ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "CANCELED"
    events = [(e.event, e.status_after) for e in history(broker, step.order_id)]
    assert events[:2] == [("created", "SCHEDULED"), ("step added", "SCHEDULED")]
    assert ("step changed", "SCHEDULED") in events and ("status", "CANCELED") in events
    assert all(e.message_id for e in history(broker, step.order_id))


@pytest.mark.parametrize(
    ("control", "status", "expected"),
    [
        ("CA", "CA", "CANCELED"),
        ("OC", "CA", "CANCELED"),
        ("DC", "CA", "DISCONTINUED"),
        ("SC", "IP", "STARTED"),
        ("SC", "CM", "COMPLETED"),
        ("HD", "HD", "HELD"),
    ],
)
def test_order_control_sets_the_step_status(broker, control, status, expected):
    acks = send(broker, order_message("M1"), order_message("M2", control, status))
    assert [a[1] for a in acks] == ["AA", "AA"], acks
    [step] = steps(broker)
    assert step.status == expected


def test_hold_and_release(broker):
    acks = send(
        broker,
        order_message("M1"),
        order_message("M2", "HD", "HD"),
        order_message("M3", "RL", "SC"),
    )
    assert [a[1] for a in acks] == ["AA"] * 3
    [step] = steps(broker)
    assert step.status == "SCHEDULED"
    assert [e.status_after for e in history(broker, step.order_id) if e.event == "status"] == [
        "HELD",
        "SCHEDULED",
    ]


def test_several_obr_make_several_items_and_an_update_replaces_the_set(broker):
    assert send(broker, order_message("M1", steps=("1", "2")))[0][1] == "AA"
    assert sorted(s.sps_id for s in steps(broker)) == ["SORD11", "SORD12"]

    # The update lists step 2 (changed) and a new step 3; step 1 is gone.
    acks = send(broker, order_message("M2", "XO", "SC", steps=("2", "3"), start="20261202090000"))
    assert acks[0][1] == "AA", acks
    by_sps = {s.sps_id: s for s in steps(broker)}
    assert by_sps["SORD11"].status == "REMOVED"
    assert (by_sps["SORD12"].status, by_sps["SORD12"].start_datetime) == (
        "SCHEDULED",
        "20261202090000",
    )
    assert by_sps["SORD13"].status == "SCHEDULED"


def test_empty_field_keeps_and_hl7_null_clears(broker):
    assert send(broker, order_message("M1"))[0][1] == "AA"
    assert item(steps(broker)[0]).ReferringPhysicianName == "WELBY^MARCUS"

    assert send(broker, order_message("M2", "XO", referring=""))[0][1] == "AA"
    assert item(steps(broker)[0]).ReferringPhysicianName == "WELBY^MARCUS"  # empty: kept

    assert send(broker, order_message("M3", "XO", referring='""'))[0][1] == "AA"
    assert "ReferringPhysicianName" not in item(steps(broker)[0])  # HL7 null: cleared


def test_order_for_a_new_patient_creates_the_patient(broker):
    assert send(broker, order_message("M1", patient="NEW1", name="NEU^ANNA"))[0][1] == "AA"
    created = patient(broker, "NEW1")
    assert created is not None and created.patient_name == "NEU^ANNA"


@pytest.mark.parametrize(
    ("first", "second", "code", "says"),
    [
        (None, order_message("M2", "XO"), "204", "unknown order"),
        (None, order_message("M2", "CA", "CA"), "204", "unknown order"),
        (order_message("M1"), order_message("M2"), "205", "already exists"),
        (
            order_message("M1"),
            order_message("M2", "XO", patient="OTHER"),
            "205",
            "belongs to patient",
        ),
    ],
)
def test_surprising_order_events_are_stored_and_answered_ae(broker, first, second, code, says):
    if first is not None:
        assert send(broker, first)[0][1] == "AA"
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(second))
    assert ack["MSA"][1] == "AE"
    assert says in ack["MSA"][3]
    assert f"^{code}&" in ack["ERR"][1]
    with broker.db.reading() as session:
        from mwlbroker.store import messages

        [row] = messages.latest(session, control_id="M2")
    assert row.status == "failed" and says in row.error


def test_a_final_order_cannot_change_but_the_same_status_again_is_harmless(broker):
    acks = send(
        broker,
        order_message("M1"),
        order_message("M2", "CA", "CA"),
        order_message("M3", "CA", "CA"),  # resent cancel with a new control ID
        order_message("M4", "XO"),
    )
    assert [a[1] for a in acks] == ["AA", "AA", "AA", "AE"]
    assert "CANCELED" in acks[3][3]
    assert steps(broker)[0].status == "CANCELED"


def test_study_uid_of_another_patient_is_refused(broker):
    uid = "1.2.826.0.1.3680043.10.543.777"
    acks = send(
        broker,
        order_message("M1", order="O1", patient="P1", study_uid=uid),
        order_message("M2", order="O2", patient="P2", study_uid=uid),
    )
    assert [a[1] for a in acks] == ["AA", "AE"]
    assert uid in acks[1][3] or "Study Instance UID" in acks[1][3]
    assert [s.patient_id for s in steps(broker)] == ["P1"]


def test_omi_order_from_ipc_with_utf8_names(broker):
    wire = (SAMPLES / "10_omi_o23_nw_v251.hl7").read_bytes().replace(b"\n", b"\r")
    assert send(broker, wire)[0][1] == "AA"
    [step] = steps(broker)
    dataset = item(step)
    assert step.modality == "MR" and step.station_ae == "MRSCANNER2"
    assert str(dataset.PatientName).startswith("García López^José Ángel")
    assert dataset.SpecificCharacterSet == "ISO_IR 192"


# -- patients -------------------------------------------------------------------------------------


def test_a08_updates_demographics_of_open_items_with_an_audit_record(broker):
    acks = send(
        broker,
        order_message("M1", name="DOE^JANE"),
        adt("M2", "A08", "PID|1||PAT1^^^HOSPITAL^MR||SMITH^JANE^^^^^L||19800101|F"),
    )
    assert [a[1] for a in acks] == ["AA", "AA"]
    [step] = steps(broker)
    assert step.patient_name == "SMITH^JANE" and item(step).PatientName == "SMITH^JANE"
    updated = patient(broker, "PAT1")
    [record] = [a for a in audits(broker, updated.id) if a.action == "update"]
    assert record.before["PatientName"] == "DOE^JANE"
    assert record.after["PatientName"] == "SMITH^JANE"
    assert "message" in record.actor and record.message_id


@pytest.mark.parametrize("trigger", ["A01", "A04", "A05", "A08", "A31"])
def test_every_update_event_changes_demographics(broker, trigger):
    acks = send(
        broker,
        order_message("M1", name="DOE^JANE"),
        adt("M2", trigger, "PID|1||PAT1^^^HOSPITAL^MR||DOE^JANE^MARIE||19800102|F"),
    )
    assert [a[1] for a in acks] == ["AA", "AA"], acks
    [step] = steps(broker)
    assert item(step).PatientName == "DOE^JANE^MARIE"
    assert item(step).PatientBirthDate == "19800102"


def test_adt_for_an_unseen_patient_registers_them(broker):
    message = adt("M1", "A04", "PID|1||FRESH^^^HOSPITAL^MR||NEW^PERSON||20000101|M")
    assert send(broker, message)[0][1] == "AA"
    registered = patient(broker, "FRESH")
    assert registered is not None and registered.patient_name == "NEW^PERSON"


def test_a40_moves_orders_to_the_surviving_patient(broker):
    acks = send(
        broker,
        order_message("M1", order="O1", patient="SURV", name="DOE^JANE"),
        order_message("M2", order="O2", patient="DUP", name="DOE^JAINE"),
        adt("M3", "A40", "PID|1||SURV^^^HOSPITAL^MR||DOE^JANE", "MRG|DUP^^^HOSPITAL^MR"),
    )
    assert [a[1] for a in acks] == ["AA", "AA", "AA"], acks
    assert {s.patient_id for s in steps(broker)} == {"SURV"}
    assert {str(item(s).PatientName) for s in steps(broker)} == {"DOE^JANE"}
    survivor, prior = patient(broker, "SURV"), patient(broker, "DUP")
    assert prior.merged_into_id == survivor.id
    [merge] = [a for a in audits(broker, survivor.id) if a.action == "merge"]
    assert merge.before["prior"]["patient_id"] == "DUP" and merge.before["orders"]

    # An order still sent under the old ID is refused, naming the survivor (merged_patient:
    # refuse, the default; use_survivor would put it on SURV, see test_adt_events.py).
    [refused] = send(broker, order_message("M4", order="O3", patient="DUP"))
    assert refused[1] == "AE" and "merged into SURV" in refused[3], refused
    assert {s.patient_id for s in steps(broker)} == {"SURV"} and len(steps(broker)) == 2


def test_a40_into_an_unknown_patient_is_answered_ae(broker):
    acks = send(
        broker,
        order_message("M1", patient="DUP"),
        adt("M2", "A40", "PID|1||NOBODY^^^HOSPITAL^MR||X^Y", "MRG|DUP^^^HOSPITAL^MR"),
    )
    assert acks[1][1] == "AE" and "unknown" in acks[1][3]
    assert {s.patient_id for s in steps(broker)} == {"DUP"}


def test_a47_changes_the_identifier_everywhere(broker):
    acks = send(
        broker,
        order_message("M1", patient="OLDID"),
        adt("M2", "A47", "PID|1||NEWID^^^HOSPITAL^MR||DOE^JANE", "MRG|OLDID^^^HOSPITAL^MR"),
    )
    assert [a[1] for a in acks] == ["AA", "AA"], acks
    [step] = steps(broker)
    assert step.patient_id == "NEWID" and item(step).PatientID == "NEWID"
    assert patient(broker, "OLDID") is None
    changed = patient(broker, "NEWID")
    assert [
        a.before["patient_id"] for a in audits(broker, changed.id) if a.action == "change id"
    ] == ["OLDID"]


# -- repair ---------------------------------------------------------------------------------------


def test_a_mapping_failure_succeeds_on_reprocess_after_the_fix(
    database_url, broker_factory, tmp_path
):
    folder = tmp_path / "mappings"
    folder.mkdir()
    base = (SAMPLES.parent / "mappings" / "ihe-swf.yaml").read_text()
    (folder / "ihe-swf.yaml").write_text(base)
    broker = broker_factory(mappings__dir=str(folder))

    acks = send(broker, order_message("M1"), order_message("M2", "SC", "ZZ"))
    assert acks[1][1] == "AE" and "ZZ" in acks[1][3], acks

    # The integration engineer teaches the status table the new pair, then reprocesses.
    fixed = base.replace("status:\n", "status:\n  SC/ZZ: STARTED\n", 1)
    assert fixed != base
    (folder / "ihe-swf.yaml").write_text(fixed)
    env = cli_env(database_url, MWLBROKER_MAPPINGS_DIR=str(folder))
    assert run_cli("mappings", "check", env=env).returncode == 0
    with broker.db.reading() as session:
        from mwlbroker.store import messages

        [failed] = messages.latest(session, control_id="M2")
    done = run_cli("messages", "reprocess", str(failed.id), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert steps(broker)[0].status == "STARTED"


def test_mappings_test_prints_the_item_of_every_sample_touching_nothing(tmp_path: Path):
    env = cli_env(f"sqlite:///{tmp_path / 'never.db'}")
    for path in sample_files():
        shown = run_cli("mappings", "test", str(path), env=env)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        profile = "siu-example" if "_siu_" in path.name else "ihe-swf"  # sender SCHEDULER
        assert f"profile {profile} (" in shown.stdout
    assert not (tmp_path / "never.db").exists()


def test_mappings_check_names_file_and_line_of_a_broken_mapping(tmp_path: Path):
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "broken.yaml").write_text(
        "profile: broken\n"
        "messages:\n"
        "  ORM^O01:\n"
        "    repeat: OBR\n"
        "    patient:\n"
        "      PatientID: PID-3.1\n"
        "      PatientNmae: PID-5\n"
    )
    env = cli_env(f"sqlite:///{tmp_path / 'never.db'}")
    checked = run_cli("mappings", "check", "--dir", str(folder), env=env)
    assert checked.returncode == 1
    assert f"{folder / 'broken.yaml'}:7:" in checked.stdout
    assert "PatientNmae" in checked.stdout

    # serve refuses to start on it, naming the same place.
    served = run_cli(
        "serve",
        env={**env, "MWLBROKER_MAPPINGS_DIR": str(folder), "MWLBROKER_HL7_PORT": "0"},
        cwd=tmp_path,
    )
    assert served.returncode == 2
    assert "broken.yaml:7:" in served.stderr
