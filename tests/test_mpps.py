"""MPPS end to end: the RIS orders over MLLP, a modality (pynetdicom) reports over DICOM.

Each test runs the whole broker on loopback, on SQLite and PostgreSQL. The modality queries the
worklist, then sends N-CREATE and N-SET built from the item it got, as a scanner does; the
checks are what a PACS administrator looks at: the scheduled step's status, whether it is still
on the worklist, the order history, the stored performed step, and the DIMSE status with its
error comment when a request is refused.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from mwlbroker.store import progress, worklist
from mwlbroker.store.tables import OrderEventRow, StepRow
from tests.support.dicom_peers import Modality, ended, in_progress
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli


@pytest.fixture
def modality(broker) -> Iterator[Modality]:
    scanner = Modality(broker.dicom.port)
    yield scanner
    scanner.close()


# -- what the broker holds --------------------------------------------------------------------------


def order(broker, control_id: str = "C1", **fields) -> StepRow:
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(orm(control_id, **fields)))["MSA"][1] == "AA"
    with broker.db.reading() as session:
        return worklist.search_steps(session, accession_number=f"APL{control_id}")[0]


def step_now(broker, step_id: int) -> StepRow:
    with broker.db.reading() as session:
        row = session.get(StepRow, step_id)
        assert row is not None
        return row


def history(broker, order_id: int) -> list[OrderEventRow]:
    with broker.db.reading() as session:
        return list(worklist.events_for_order(session, order_id))


def performed(broker, uid: str) -> progress.PerformedStepRow:
    with broker.db.reading() as session:
        row = progress.find_performed_step(session, uid)
        assert row is not None
        return row


# -- the exam goes through --------------------------------------------------------------------------


def test_in_progress_starts_the_step_and_takes_it_off_the_worklist(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()

    status, _ = modality.create(in_progress(item), uid)

    assert status.Status == 0x0000
    now = step_now(broker, step.id)
    assert now.status == "STARTED"
    assert now.dataset["00400100"]["Value"][0]["00400020"]["Value"] == ["STARTED"]
    # Another modality asking now no longer sees it (dicom.worklist_statuses = SCHEDULED).
    other = Modality(broker.dicom.port, "CT2")
    try:
        assert other.worklist(accession=step.accession_number) == []
    finally:
        other.close()
    row = performed(broker, uid)
    assert (row.status, row.scheduled, row.calling_ae, row.station_ae) == (
        "IN PROGRESS",
        True,
        "CT1",
        "CT1",
    )
    assert row.study_instance_uid == step.study_instance_uid
    assert row.start_datetime == "20261127143500"
    assert row.dataset["00400253"]["Value"] == ["PPS1"]  # the whole attribute list is kept
    last = history(broker, step.order_id)[-1]
    assert (last.event, last.status_before, last.status_after) == ("mpps", "SCHEDULED", "STARTED")
    assert uid in last.detail and last.step_id == step.id


def test_completed_completes_the_step(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000

    status = modality.set(uid, ended("COMPLETED", series=2))

    assert status.Status == 0x0000
    assert step_now(broker, step.id).status == "COMPLETED"
    row = performed(broker, uid)
    assert row.status == "COMPLETED" and row.end_datetime == "20261127144500"
    assert len(row.dataset["00400340"]["Value"]) == 2  # the N-SET applied to what is stored
    assert row.dataset["00400253"]["Value"] == ["PPS1"]
    events = [(e.event, e.status_before, e.status_after) for e in history(broker, step.order_id)]
    assert events[-2:] == [("mpps", "SCHEDULED", "STARTED"), ("mpps", "STARTED", "COMPLETED")]


def test_discontinued_discontinues_the_step(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000

    status = modality.set(uid, ended("DISCONTINUED", series=0))

    assert status.Status == 0x0000
    assert step_now(broker, step.id).status == "DISCONTINUED"
    assert performed(broker, uid).status == "DISCONTINUED"


def test_a_second_n_set_on_a_final_step_is_refused(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000
    assert modality.set(uid, ended("COMPLETED")).Status == 0x0000

    status = modality.set(uid, ended("DISCONTINUED", series=0))

    # PS3.4 F.7.2.2.2: processing failure, "may no longer be updated", Error ID A710
    assert status.Status == 0x0110
    assert status.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    assert status.ErrorID == 0xA710
    assert step_now(broker, step.id).status == "COMPLETED"
    assert performed(broker, uid).status == "COMPLETED"
    # The association is still usable.
    assert modality.set(generate_uid(), ended()).Status == 0x0112


def test_a_duplicate_n_create_is_refused(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000

    status, _ = modality.create(in_progress(item), uid)

    assert status.Status == 0x0111
    assert "exists" in status.ErrorComment
    assert len([e for e in history(broker, step.order_id) if e.event == "mpps"]) == 1


def test_an_mpps_matching_no_step_is_kept_as_unscheduled(broker, modality, database_url):
    step = order(broker)  # an order for someone else stays untouched
    uid = generate_uid()

    status, _ = modality.create(in_progress(None), uid)

    assert status.Status == 0x0000
    row = performed(broker, uid)
    assert row.scheduled is False and row.patient_id == "EMERGENCY1"
    with broker.db.reading() as session:
        assert [
            r.sop_instance_uid for r in progress.list_performed_steps(session, scheduled=False)
        ] == [uid]
    assert step_now(broker, step.id).status == "SCHEDULED"
    # It can still be completed: the modality does not know it is unscheduled here.
    assert modality.set(uid, ended("COMPLETED")).Status == 0x0000
    assert performed(broker, uid).status == "COMPLETED"
    listed = run_cli("mpps", "list", "--unscheduled", "--json", env=cli_env(database_url))
    assert listed.returncode == 0, listed.stderr
    assert [
        (r["sop_instance_uid"], r["patient_id"], r["status"]) for r in json.loads(listed.stdout)
    ] == [(uid, "EMERGENCY1", "COMPLETED")]


def test_a_new_study_uid_is_linked_by_accession_number_and_patient_id(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    other_patient = in_progress(item, study_uid=generate_uid())
    other_patient.PatientID = "SOMEONE-ELSE"
    right_patient = in_progress(item, study_uid=generate_uid())

    assert modality.create(other_patient, generate_uid())[0].Status == 0x0000
    assert step_now(broker, step.id).status == "SCHEDULED"  # the accession alone is not enough
    assert modality.create(right_patient, generate_uid())[0].Status == 0x0000
    assert step_now(broker, step.id).status == "STARTED"


def test_the_scp_assigns_a_uid_when_the_modality_gives_none(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    status, _ = modality.create(in_progress(item), None)
    assert status.Status == 0x0000
    with broker.db.reading() as session:
        [row] = progress.list_performed_steps(session)
    assert row.sop_instance_uid.startswith("1.2.826.0.1.3680043.8.498.")  # pydicom's root
    assert step_now(broker, step.id).status == "STARTED"


# -- Annex F rules ----------------------------------------------------------------------------------


def _without(keyword: str):
    def change(ds: Dataset) -> None:
        delattr(ds, keyword)

    return change


def _empty(keyword: str):
    def change(ds: Dataset) -> None:
        setattr(ds, keyword, "")

    return change


def _set(keyword: str, value: str):
    def change(ds: Dataset) -> None:
        # Unvalidated, as a faulty modality would send it.
        tag = tag_for_keyword(keyword)
        ds.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))

    return change


def _no_study_uid(ds: Dataset) -> None:
    del ds.ScheduledStepAttributesSequence[0].StudyInstanceUID


@pytest.mark.parametrize(
    ("change", "status", "comment"),
    [
        (_without("PerformedProcedureStepID"), 0x0120, "(0040,0253) PPS ID is missing"),
        (_empty("Modality"), 0x0121, "(0008,0060) Modality has no value"),
        (_without("ScheduledStepAttributesSequence"), 0x0120, "(0040,0270)"),
        (_no_study_uid, 0x0120, "(0020,000D) Study Instance UID is missing"),
        (_empty("PerformedStationAETitle"), 0x0121, "(0040,0241)"),
        (_set("PerformedProcedureStepStatus", "COMPLETED"), 0x0106, "must be IN PROGRESS"),
        (_set("PerformedProcedureStepStartDate", "2026-11-27"), 0x0106, "(0040,0244)"),
    ],
    ids=[
        "no-pps-id",
        "empty-modality",
        "no-scheduled-step-attributes",
        "no-study-uid",
        "empty-station-ae",
        "created-completed",
        "bad-start-date",
    ],
)
def test_n_create_refuses_what_annex_f_forbids(broker, modality, change, status, comment):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    request = in_progress(item)
    change(request)

    answer, _ = modality.create(request, generate_uid())

    assert answer.Status == status
    assert comment in answer.ErrorComment
    assert step_now(broker, step.id).status == "SCHEDULED"
    with broker.db.reading() as session:
        assert progress.list_performed_steps(session) == []


def test_n_create_with_a_malformed_uid_is_an_invalid_object_instance(broker, modality):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns as the modality sends it
        answer, _ = modality.create(in_progress(None), "1.2.03.4")
    assert answer.Status == 0x0117


@pytest.mark.parametrize(
    ("modification", "status", "comment", "tag"),
    [
        ({"PatientID": "OTHER"}, 0x0106, "(0010,0020) Patient ID may not be changed", 0x00100020),
        ({"PerformedProcedureStepStatus": "DONE"}, 0x0106, "'DONE'", 0x00400252),
        (
            {"PerformedProcedureStepStatus": "COMPLETED"},
            0x0121,
            "(0040,0250) PPS End Date has no value",
            0x00400250,
        ),
    ],
    ids=["patient-id-changed", "unknown-status", "completed-without-end"],
)
def test_n_set_refuses_what_annex_f_forbids(broker, modality, modification, status, comment, tag):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000
    request = Dataset()
    for keyword, value in modification.items():
        setattr(request, keyword, value)

    answer = modality.set(uid, request)

    assert answer.Status == status
    assert comment in answer.ErrorComment
    named = answer.AttributeIdentifierList  # (0000,1005), one tag or several
    assert Tag(tag) in (named if isinstance(named, list) else [named])
    assert step_now(broker, step.id).status == "STARTED"
    assert performed(broker, uid).status == "IN PROGRESS"


def test_n_set_completed_needs_a_performed_series(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000

    answer = modality.set(uid, ended("COMPLETED", series=0))

    assert answer.Status == 0x0121
    assert "Performed Series Sequence" in answer.ErrorComment
    assert step_now(broker, step.id).status == "STARTED"
    # DISCONTINUED needs none: the exam may have stopped before the first image.
    assert modality.set(uid, ended("DISCONTINUED", series=0)).Status == 0x0000


def test_n_set_may_repeat_fixed_attributes_unchanged(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    uid = generate_uid()
    assert modality.create(in_progress(item), uid)[0].Status == 0x0000
    update = ended("COMPLETED")
    update.PatientID = item.PatientID  # some modalities send every attribute again
    update.Modality = "CT"

    assert modality.set(uid, update).Status == 0x0000
    assert step_now(broker, step.id).status == "COMPLETED"


def test_mpps_for_a_cancelled_order_is_kept_but_does_not_revive_it(broker, modality):
    step = order(broker)
    [item] = modality.worklist(accession=step.accession_number)
    with Peer(broker.hl7.port) as peer:
        cancel = orm("C2", control="CA", order_status="CA", order="PLC1")
        assert ack_fields(peer.send(cancel))["MSA"][1] == "AA"
    uid = generate_uid()

    assert modality.create(in_progress(item), uid)[0].Status == 0x0000

    assert step_now(broker, step.id).status == "CANCELED"
    assert performed(broker, uid).scheduled is True
    last = history(broker, step.order_id)[-1]
    assert last.event == "mpps" and "already CANCELED" in last.detail
