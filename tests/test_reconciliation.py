"""Patient identity reconciliation end to end, on SQLite and PostgreSQL.

The RIS sends orders and ADT over MLLP to a running broker; modalities report MPPS (pynetdicom)
and send images (DCMTK storescu); staff act through ``mwlbroker patients | mpps | studies``
(a separate process on the same database) or the service the web API will call; a modality's
C-FIND (pynetdicom) shows what the worklist says after each step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from mwlbroker.app import Broker
from mwlbroker.services.reconciliation import ReconciliationRefused, UndoRefused
from mwlbroker.store import images, progress, worklist
from mwlbroker.store.tables import AuditRow, PatientMergeRow, StepRow
from tests.support.dicom_peers import Modality, ct_image, in_progress, storescu, write_images
from tests.support.hl7_messages import a40, ack_fields, hl7, segment_fields, utf8_orm
from tests.support.mllp_peers import Peer
from tests.support.prerequisites import require_tools
from tests.support.processes import cli_env, run_cli
from tests.support.workflow import patient_pk, send_accepted, worklist_item

# -- the RIS ---------------------------------------------------------------------------------------


def cli(database_url: str, *args: str, **env: str):
    return run_cli(*args, env=cli_env(database_url, **env))


def cli_json(database_url: str, *args: str):
    done = cli(database_url, *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


# -- what the broker and the modality see ----------------------------------------------------------


def on_worklist(broker: Broker, accession: str) -> int:
    modality = Modality(broker.dicom.port)
    try:
        return len(modality.worklist(accession=accession))
    finally:
        modality.close()


def step_of(broker: Broker, accession: str) -> StepRow:
    with broker.db.reading() as session:
        [step] = worklist.search_steps(session, accession_number=accession)
        return step


def audits(broker: Broker, action: str) -> list[AuditRow]:
    with broker.db.reading() as session:
        rows = session.query(AuditRow).filter(AuditRow.action == action).order_by(AuditRow.id)
        return list(rows)


# -- (a) collisions --------------------------------------------------------------------------------


def test_one_id_with_two_peoples_demographics_is_a_collision_with_its_evidence(
    broker, database_url
):
    send_accepted(
        broker,
        utf8_orm("M1", patient="SHARED", name="DOE^JOHN", birth="19700101", sex="M"),
        utf8_orm("M2", patient="SHARED", name="SMITH^MARY", birth="19850505", sex="F"),
        # A spelling fix is not a collision.
        utf8_orm("M3", patient="FIXED", name="DOE^JON"),
        utf8_orm("M4", patient="FIXED", name="DOE^JOHN"),
    )

    [collision] = cli_json(database_url, "patients", "collisions")

    assert collision["patient"]["patient_id"] == "SHARED"
    assert [c.split(":")[0] for c in collision["conflicts"]] == ["birth date", "sex", "name"]
    evidence = [(e["name"], e["birth_date"], e["sex"], e["orders"]) for e in collision["evidence"]]
    assert evidence == [
        ("DOE^JOHN", "19700101", "M", ["PLM1"]),
        ("SMITH^MARY", "19850505", "F", ["PLM2"]),
    ]
    assert all(e["at"] for e in collision["evidence"])
    assert "ORM^O01" in collision["evidence"][1]["source"]
    assert "MSH-10 M2" in collision["evidence"][1]["source"]
    text = cli(database_url, "patients", "collisions")
    assert text.returncode == 0 and "SHARED^^^HOSPITAL" in text.stdout


# -- (b) duplicates, merge and undo ----------------------------------------------------------------


def test_duplicates_merge_and_undo_as_the_modality_sees_them(broker, database_url):
    send_accepted(
        broker,
        utf8_orm("M1", patient="A1", name="MÜLLER^JÜRGEN", order="O1"),
        utf8_orm("M2", patient="B2", name="MULLER^JURGEN", order="O2"),
        utf8_orm("M3", patient="C3", name="MEIER^HANS", order="O3"),  # same birthday, someone else
    )
    assert worklist_item(broker, "AO2") == ("B2", "MULLER^JURGEN")

    [pair] = cli_json(database_url, "patients", "duplicates")
    assert {pair["first"]["patient_id"], pair["second"]["patient_id"]} == {"A1", "B2"}
    assert pair["score"] == 100 and "same birth date 19700101" in pair["reasons"]

    merged = cli(database_url, "patients", "merge", "B2", "A1", "--actor", "alice")
    assert merged.returncode == 0, merged.stderr
    assert "B2^^^HOSPITAL merged into A1^^^HOSPITAL: 1 order(s), 1 step(s)" in merged.stdout

    # At once, the modality sees the survivor for the moved order; the others are unchanged.
    assert worklist_item(broker, "AO2") == ("A1", "MÜLLER^JÜRGEN")
    assert worklist_item(broker, "AO1") == ("A1", "MÜLLER^JÜRGEN")
    assert worklist_item(broker, "AO3") == ("C3", "MEIER^HANS")
    assert cli_json(database_url, "patients", "duplicates", "--stored") == []
    [record] = audits(broker, "merge")
    assert record.actor == "alice" and record.before["prior"]["patient_id"] == "B2"
    assert record.before["orders"][0]["patient_pk"] == patient_pk(broker, "B2")
    # A later order under the old ID is refused, naming the survivor; sent under it, it lands.
    with Peer(broker.hl7.port) as peer:
        refused = ack_fields(peer.send(utf8_orm("M4", patient="B2", order="O4")))["MSA"]
    assert refused[1] == "AE" and "merged into A1" in refused[3], refused
    send_accepted(broker, utf8_orm("M5", patient="A1", name="MÜLLER^JÜRGEN", order="O4"))
    assert worklist_item(broker, "AO4")[0] == "A1"

    [merge] = cli_json(database_url, "patients", "merges")
    undone = cli(database_url, "patients", "unmerge", str(merge["id"]), "--actor", "bob")
    assert undone.returncode == 0, undone.stderr
    assert "1 order(s), 1 step(s) back with B2^^^HOSPITAL" in undone.stdout
    assert "order(s) created for A1" in undone.stdout  # O4 stays: said, not guessed

    assert worklist_item(broker, "AO2") == ("B2", "MULLER^JURGEN")
    assert worklist_item(broker, "AO1") == ("A1", "MÜLLER^JÜRGEN")
    [record] = audits(broker, "unmerge")
    assert record.actor == "bob" and record.before["prior"]["merged_into_id"] is not None
    with broker.db.reading() as session:
        row = session.get(PatientMergeRow, merge["id"])
        assert row is not None and row.undone_by == "bob"

    again = cli(database_url, "patients", "unmerge", str(merge["id"]))
    assert again.returncode == 1 and "already undone" in again.stderr


def test_merge_can_tell_the_ris_by_adt_a40(broker_factory, ris):
    destination = {"name": "RIS", "host": "127.0.0.1", "port": ris.port}
    broker = broker_factory(outbound__destinations=[destination])
    send_accepted(
        broker,
        utf8_orm("M1", patient="KEEP", name="DOE^JANE", sex="F"),
        utf8_orm("M2", patient="DROP", name="JANE^DOE", sex="F"),
    )
    service = broker.reconciliation
    outcome = service.merge(
        patient_pk(broker, "DROP"), patient_pk(broker, "KEEP"), actor="carol", notify_ris=True
    )

    [message] = ris.wait_for(1)
    assert segment_fields(message, "MSH")[9] == "ADT^A40"
    assert segment_fields(message, "PID")[3] == "KEEP^^^HOSPITAL"
    assert segment_fields(message, "PID")[5] == "DOE^JANE"
    assert segment_fields(message, "MRG")[1] == "DROP^^^HOSPITAL"
    assert len(outcome.notified) == 1


def test_a_merge_cannot_tell_a_ris_that_is_not_configured(broker):
    send_accepted(broker, utf8_orm("M1", patient="KEEP"), utf8_orm("M2", patient="DROP"))
    with pytest.raises(ReconciliationRefused, match="no outbound destination"):
        broker.reconciliation.merge(
            patient_pk(broker, "DROP"), patient_pk(broker, "KEEP"), actor="x", notify_ris=True
        )
    assert worklist_item(broker, "APLM2")[0] == "DROP"  # nothing was merged


def test_undo_refuses_while_a_later_merge_stands_and_hl7_merges_undo_too(broker, database_url):
    send_accepted(
        broker,
        utf8_orm("M1", patient="P1", order="O1"),
        utf8_orm("M2", patient="P2", order="O2"),
        utf8_orm("M3", patient="P3", order="O3"),
    )
    service = broker.reconciliation
    first = service.merge(patient_pk(broker, "P2"), patient_pk(broker, "P1"), actor="alice")
    send_accepted(broker, a40("M4", survivor="P3", prior="P1"))  # the RIS merges the survivor on
    assert worklist_item(broker, "AO2")[0] == "P3"

    with pytest.raises(UndoRefused, match="undo merge") as refused:
        service.undo_merge(first.merge_id, actor="bob")
    assert len(refused.value.problems) == 1
    assert worklist_item(broker, "AO2")[0] == "P3"  # refused: nothing moved

    [hl7_merge, _] = service.merges()
    assert hl7_merge.origin == "hl7" and hl7_merge.prior.patient_id == "P1"
    refused_cli = cli(database_url, "patients", "unmerge", str(first.merge_id))
    assert refused_cli.returncode == 1 and f"undo merge {hl7_merge.id} first" in refused_cli.stderr

    service.undo_merge(hl7_merge.id, actor="bob")
    assert worklist_item(broker, "AO1")[0] == "P1"
    assert worklist_item(broker, "AO2")[0] == "P1"
    service.undo_merge(first.merge_id, actor="bob")
    assert [worklist_item(broker, f"AO{n}")[0] for n in (1, 2, 3)] == ["P1", "P2", "P3"]


def test_a_dismissed_pair_is_remembered_and_not_listed_again(broker, database_url):
    send_accepted(
        broker,
        utf8_orm("M1", patient="T1", name="KOWALSKI^JAN"),
        utf8_orm("M2", patient="T2", name="KOWALSKY^JAN"),
    )
    assert len(cli_json(database_url, "patients", "duplicates")) == 1

    done = cli(database_url, "patients", "dismiss", "T1", "T2^^^HOSPITAL", "--note", "twins")
    assert done.returncode == 0, done.stderr
    assert cli_json(database_url, "patients", "duplicates", "--stored") == []
    assert cli_json(database_url, "patients", "duplicates") == []  # a new sweep leaves them be
    [record] = audits(broker, "dismiss duplicate")
    assert record.after == {"dismissed": True, "note": "twins"}
    unknown = cli(database_url, "patients", "dismiss", "T1", "NOBODY")
    assert unknown.returncode == 1 and "no patient NOBODY" in unknown.stderr


# -- (c) exams without an order --------------------------------------------------------------------


def test_an_unscheduled_mpps_linked_by_hand_starts_its_step(broker, database_url):
    send_accepted(broker, utf8_orm("M1", patient="PID1"))
    assert on_worklist(broker, "APLM1") == 1
    modality = Modality(broker.dicom.port)
    uid = generate_uid()
    try:
        assert modality.create(in_progress(None), uid)[0].Status == 0x0000
    finally:
        modality.close()
    [waiting] = cli_json(database_url, "mpps", "list", "--unscheduled")

    linked = cli(database_url, "mpps", "link", str(waiting["id"]), "--accession", "APLM1")

    assert linked.returncode == 0, linked.stderr
    assert "SCHEDULED -> STARTED" in linked.stdout
    assert step_of(broker, "APLM1").status == "STARTED"
    assert on_worklist(broker, "APLM1") == 0  # started: off the worklist, as if it had matched
    assert cli_json(database_url, "mpps", "list", "--unscheduled") == []
    [record] = audits(broker, "link mpps")
    assert record.before == {"scheduled": False, "step_ids": []}
    again = cli(database_url, "mpps", "link", str(waiting["id"]), "--accession", "APLM1")
    assert again.returncode == 1 and "already linked" in again.stderr


def test_an_mpps_that_came_before_its_order_is_matched_when_the_order_arrives(broker):
    study_uid = generate_uid()
    by_uid, by_accession = generate_uid(), generate_uid()
    first = in_progress(None, study_uid=study_uid)
    first.PatientID = "PID1"
    second = in_progress(None, study_uid=generate_uid())
    second.PatientID = "PID1"
    second.ScheduledStepAttributesSequence[0].AccessionNumber = "ALATE2"
    modality = Modality(broker.dicom.port)
    try:
        assert modality.create(first, by_uid)[0].Status == 0x0000
        assert modality.create(second, by_accession)[0].Status == 0x0000
    finally:
        modality.close()
    with broker.db.reading() as session:
        assert len(progress.list_performed_steps(session, scheduled=False)) == 2

    send_accepted(
        broker,
        utf8_orm("M1", patient="PID1", accession="ALATE1", study_uid=study_uid),
        utf8_orm("M2", patient="PID1", accession="ALATE2"),
    )

    assert step_of(broker, "ALATE1").status == "STARTED"
    assert step_of(broker, "ALATE2").status == "STARTED"
    with broker.db.reading() as session:
        assert progress.list_performed_steps(session, scheduled=False) == []
    assert len(audits(broker, "link mpps")) == 2


def test_unmatched_studies_are_matched_by_a_later_order_or_linked_by_hand(
    broker_factory, database_url, tmp_path: Path
):
    require_tools("storescu")
    broker = broker_factory(progress__complete_on="images", progress__images_quiet_seconds=0)
    early, stray = generate_uid(), generate_uid()
    images_ = [
        ct_image(study_uid=early, patient_id="PID1"),
        ct_image(study_uid=stray, patient_id="EMERGENCY9", accession="XX"),
    ]
    sent = storescu(broker.dicom.port, *write_images(tmp_path / "images", images_))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert len(cli_json(database_url, "studies", "list", "--unmatched")) == 2

    send_accepted(
        broker,
        utf8_orm("M1", patient="PID1", accession="AEARLY", study_uid=early),
        utf8_orm("M2", patient="PID2", accession="ASTRAY"),
    )
    assert step_of(broker, "AEARLY").status == "COMPLETED"  # matched by the order, as on arrival
    [waiting] = cli_json(database_url, "studies", "list", "--unmatched")
    assert waiting["study_instance_uid"] == stray

    step = step_of(broker, "ASTRAY")
    same_config = {
        "MWLBROKER_PROGRESS_COMPLETE_ON": "images",
        "MWLBROKER_PROGRESS_IMAGES_QUIET_SECONDS": "0",
    }
    linked = cli(
        database_url, "studies", "link", str(waiting["id"]), str(step.id), "--json", **same_config
    )
    assert linked.returncode == 0, linked.stderr
    assert json.loads(linked.stdout)["changes"] == [[step.id, "SCHEDULED", "COMPLETED"]]
    assert cli_json(database_url, "studies", "list", "--unmatched") == []
    with broker.db.reading() as session:
        study = images.find_study(session, stray)
        assert study is not None and study.matched_by == "manual" and study.step_id == step.id
    automatic, by_hand = audits(broker, "link study")
    assert automatic.actor.startswith("hl7 RIS/HOSPITAL message")
    assert by_hand.actor.startswith("cli") and by_hand.after["step_id"] == step.id
    assert by_hand.before["order_id"] is None


def a47(control_id: str, new: str, prior: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ADT^A47|{control_id}|P|2.3.1",
        "EVN|A47|20261127101500",
        f"PID|1||{new}^^^HOSPITAL^MR||DOE^JOHN||19700101|M",
        f"MRG|{prior}^^^HOSPITAL^MR",
    )


def test_undo_refuses_when_the_merged_away_record_changed(broker):
    send_accepted(
        broker, utf8_orm("M1", patient="P1", order="O1"), utf8_orm("M2", patient="P2", order="O2")
    )
    service = broker.reconciliation
    merged = service.merge(patient_pk(broker, "P2"), patient_pk(broker, "P1"), actor="alice")
    send_accepted(broker, a47("M3", new="P2NEW", prior="P2"))  # the RIS renames the merged-away ID

    with pytest.raises(UndoRefused, match=r"ID changed since \(P2 -> P2NEW\)"):
        service.undo_merge(merged.merge_id, actor="bob")
    assert worklist_item(broker, "AO2")[0] == "P1"


def test_undo_takes_back_steps_added_to_a_moved_order_meanwhile(broker):
    send_accepted(
        broker, utf8_orm("M1", patient="P1", order="O1"), utf8_orm("M2", patient="P2", order="O2")
    )
    service = broker.reconciliation
    merged = service.merge(patient_pk(broker, "P2"), patient_pk(broker, "P1"), actor="alice")
    # The RIS adds a second procedure to the moved order, under the surviving ID.
    send_accepted(
        broker,
        hl7(
            "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ORM^O01|M3|P|2.3.1",
            "PID|1||P1^^^HOSPITAL^MR||DOE^JOHN||19700101|M",
            "ORC|XO|O2|FO2||SC||^^^20261127143000^^R",
            "OBR|1|O2|FO2|CTCHEST^CT chest^L||||||||||||||AO2|RO2|SO2||||CT",
            "OBR|2|O2|FO2|CTABD^CT abdomen^L||||||||||||||AO2B|RO2B|SO2B||||CT",
        ),
    )
    assert worklist_item(broker, "AO2B")[0] == "P1"

    undone = service.undo_merge(merged.merge_id, actor="bob")

    assert worklist_item(broker, "AO2")[0] == "P2"
    assert worklist_item(broker, "AO2B")[0] == "P2"
    assert any("added to the moved orders" in note for note in undone.notes)


def test_merges_into_the_same_survivor_undo_independently(broker):
    send_accepted(
        broker,
        utf8_orm("M1", patient="P1", order="O1"),
        utf8_orm("M2", patient="P2", order="O2"),
        utf8_orm("M3", patient="P3", order="O3"),
    )
    service = broker.reconciliation
    survivor = patient_pk(broker, "P1")
    first = service.merge(patient_pk(broker, "P2"), survivor, actor="alice")
    service.merge(patient_pk(broker, "P3"), survivor, actor="alice")
    assert [worklist_item(broker, f"AO{n}")[0] for n in (1, 2, 3)] == ["P1", "P1", "P1"]

    service.undo_merge(first.merge_id, actor="bob")

    assert [worklist_item(broker, f"AO{n}")[0] for n in (1, 2, 3)] == ["P1", "P2", "P1"]
