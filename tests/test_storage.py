"""Image receipt end to end: DCMTK storescu sends to the broker's AE, on SQLite and PostgreSQL.

The RIS orders over MLLP; the images come over C-STORE (DCMTK's storescu, or pynetdicom where a
test needs a malformed request); the checks are the index (study, series, instance, counts),
the match to the order, the files kept, and how the completion rule moves the step and what the
RIS hears.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from mwlbroker.app import Broker
from mwlbroker.store import images, worklist
from mwlbroker.store.tables import InstanceRow, OrderEventRow, StepRow, StudyRow
from tests.support.dicom_peers import Modality, ct_image, ended, in_progress, storescu, write_images
from tests.support.hl7_messages import ack_fields, orm, segment_fields
from tests.support.mllp_peers import RIS, Peer
from tests.support.polling import wait_until
from tests.support.prerequisites import require_tools
from tests.support.processes import cli_env, run_cli


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    require_tools("storescu")


def order(broker: Broker, control_id: str = "C1", **fields: str) -> StepRow:
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(orm(control_id, **fields)))["MSA"][1] == "AA"
    with broker.db.reading() as session:
        return worklist.search_steps(session, accession_number=f"APL{control_id}")[0]


def study(broker: Broker, uid: str) -> StudyRow:
    with broker.db.reading() as session:
        row = images.find_study(session, uid)
        assert row is not None, f"study {uid} not indexed"
        return row


def instances(broker: Broker) -> list[InstanceRow]:
    with broker.db.reading() as session:
        return list(session.query(InstanceRow).order_by(InstanceRow.id))


def step_now(broker: Broker, step_id: int) -> StepRow:
    with broker.db.reading() as session:
        row = session.get(StepRow, step_id)
        assert row is not None
        return row


def history(broker: Broker, order_id: int) -> list[OrderEventRow]:
    with broker.db.reading() as session:
        return list(worklist.events_for_order(session, order_id))


def send(broker: Broker, tmp_path: Path, images_: list) -> None:
    sent = storescu(broker.dicom.port, *write_images(tmp_path / generate_uid(), images_))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr


# -- the index ---------------------------------------------------------------------------------------


def test_images_are_indexed_and_matched_to_their_order_by_study_uid(broker, tmp_path):
    step = order(broker)
    series = [generate_uid(), generate_uid()]
    sent = [
        ct_image(study_uid=step.study_instance_uid, series_uid=series[0], number=1),
        ct_image(study_uid=step.study_instance_uid, series_uid=series[0], number=2),
        ct_image(study_uid=step.study_instance_uid, series_uid=series[1], number=1),
    ]

    send(broker, tmp_path, sent)

    row = study(broker, step.study_instance_uid)
    assert (row.order_id, row.matched_by) == (step.order_id, "study uid")
    assert (row.series_count, row.instance_count, row.modalities) == (2, 3, "CT")
    assert (row.patient_id, row.calling_ae) == ("PID1", "CT1")
    kept = instances(broker)
    assert sorted(i.sop_instance_uid for i in kept) == sorted(i.SOPInstanceUID for i in sent)
    assert all(i.path is None for i in kept)  # storage.keep_files = false: index only
    assert all(i.transfer_syntax_uid == "1.2.840.10008.1.2.1" for i in kept)
    line = [e for e in history(broker, step.order_id) if e.event == "images"]
    assert len(line) == 1 and "matched by Study Instance UID" in line[0].detail
    # complete_on = "mpps" (the default): images alone do not move the step.
    assert step_now(broker, step.id).status == "SCHEDULED"


def test_a_new_study_uid_is_matched_by_accession_number_with_the_patient_id(broker, tmp_path):
    step = order(broker)
    wrong_patient = ct_image(
        study_uid=generate_uid(), accession=step.accession_number, patient_id="OTHER"
    )
    right_patient = ct_image(study_uid=generate_uid(), accession=step.accession_number)

    send(broker, tmp_path, [wrong_patient, right_patient])

    assert study(broker, wrong_patient.StudyInstanceUID).order_id is None
    matched = study(broker, right_patient.StudyInstanceUID)
    assert (matched.order_id, matched.matched_by) == (step.order_id, "accession")


def test_a_study_matching_no_order_is_kept_as_unmatched(broker, tmp_path, database_url):
    order(broker)
    stray = [ct_image(study_uid=generate_uid(), patient_id="WALKIN", number=n) for n in (1, 2)]

    send(broker, tmp_path, stray)

    with broker.db.reading() as session:
        unmatched = list(images.list_studies(session, matched=False))
    assert sorted((s.study_instance_uid, s.instance_count, s.patient_id) for s in unmatched) == [
        (uid, 1, "WALKIN") for uid in sorted(i.StudyInstanceUID for i in stray)
    ]
    listed = run_cli("studies", "list", "--unmatched", "--json", env=cli_env(database_url))
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["study_instance_uid"] for r in json.loads(listed.stdout)) == sorted(
        i.StudyInstanceUID for i in stray
    )


def test_files_are_kept_when_configured_and_a_resend_counts_once(broker_factory, tmp_path):
    folder = tmp_path / "instances"
    broker = broker_factory(storage__keep_files=True, storage__dir=str(folder))
    step = order(broker)
    image = ct_image(study_uid=step.study_instance_uid)

    send(broker, tmp_path, [image])
    send(broker, tmp_path, [image])  # the modality sends it again

    [row] = instances(broker)
    assert row.received_count == 2 and row.size > 0
    assert (
        row.path == f"{image.StudyInstanceUID}/{image.SeriesInstanceUID}/{image.SOPInstanceUID}.dcm"
    )
    kept = dcmread(folder / row.path)
    assert kept.SOPInstanceUID == image.SOPInstanceUID
    assert kept.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert kept.PixelData == image.PixelData
    assert study(broker, image.StudyInstanceUID).instance_count == 1
    assert not [p for p in folder.rglob(".incoming-*")]


def test_malformed_c_store_requests_are_refused_with_a_reason(broker):
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", broker.dicom.port, ae_title="MWLBROKER")
    assert assoc.is_established
    try:
        no_series = ct_image(study_uid=generate_uid())
        del no_series.SeriesInstanceUID
        status = assoc.send_c_store(no_series)
        assert status.Status == 0xC000
        assert "(0020,000E)" in status.ErrorComment

        empty_study = ct_image(study_uid="")
        status = assoc.send_c_store(empty_study)
        assert status.Status == 0xC000
        assert "(0020,000D)" in status.ErrorComment

        fine = ct_image(study_uid=generate_uid())
        assert assoc.send_c_store(fine).Status == 0x0000  # the association is still usable
    finally:
        assoc.release()
    assert [i.sop_instance_uid for i in instances(broker)] == [fine.SOPInstanceUID]


# -- the completion rule -----------------------------------------------------------------------------


def ris_destination(ris: RIS) -> list[dict]:
    return [{"name": "RIS", "host": "127.0.0.1", "port": ris.port}]


def orc5s(ris: RIS, count: int) -> list[str]:
    return [segment_fields(m, "ORC")[5] for m in ris.wait_for(count)]


def test_complete_on_images_completes_at_the_first_image_when_quiet_is_zero(
    broker_factory, tmp_path
):
    with RIS() as ris:
        broker = broker_factory(
            progress__complete_on="images",
            progress__images_quiet_seconds=0,
            outbound__destinations=ris_destination(ris),
        )
        step = order(broker)
        send(broker, tmp_path, [ct_image(study_uid=step.study_instance_uid)])
        assert step_now(broker, step.id).status == "COMPLETED"
        [message] = ris.wait_for(1)
    assert segment_fields(message, "ORC")[5] == "CM"
    assert segment_fields(message, "OBR")[7]  # the exam's time comes from the images


def test_complete_on_images_waits_for_the_study_to_go_quiet(broker_factory, tmp_path):
    with RIS() as ris:
        broker = broker_factory(
            progress__complete_on="images",
            progress__images_quiet_seconds=0.5,
            outbound__destinations=ris_destination(ris),
        )
        step = order(broker)
        send(broker, tmp_path, [ct_image(study_uid=step.study_instance_uid)])
        # The first image starts the exam: off the worklist, the RIS hears "in progress".
        assert step_now(broker, step.id).status == "STARTED"
        wait_until(lambda: step_now(broker, step.id).status == "COMPLETED")
        assert orc5s(ris, 2) == ["IP", "CM"]
    assert study(broker, step.study_instance_uid).images_received_at is not None


def test_complete_on_both_waits_for_every_listed_image(broker_factory, tmp_path):
    with RIS() as ris:
        broker = broker_factory(
            progress__complete_on="both",
            progress__images_quiet_seconds=3600,  # only the MPPS list can settle it here
            outbound__destinations=ris_destination(ris),
        )
        step = order(broker)
        series = generate_uid()
        acquired = [
            ct_image(study_uid=step.study_instance_uid, series_uid=series, number=n) for n in (1, 2)
        ]
        modality = Modality(broker.dicom.port)
        try:
            [item] = modality.worklist(accession=step.accession_number)
            uid = generate_uid()
            assert modality.create(in_progress(item), uid)[0].Status == 0x0000
            send(broker, tmp_path, acquired[:1])
            assert modality.set(uid, ended(images=acquired)).Status == 0x0000
        finally:
            modality.close()
        assert step_now(broker, step.id).status == "STARTED"  # one of two images is in
        waiting = history(broker, step.order_id)[-1]
        assert "until its images are received" in waiting.detail

        send(broker, tmp_path, acquired[1:])

        assert step_now(broker, step.id).status == "COMPLETED"
        assert orc5s(ris, 2) == ["IP", "CM"]
        [message] = ris.received[1:]
    assert segment_fields(message, "OBR")[8] == "20261127144500"  # the MPPS end time


def test_complete_on_both_completes_at_the_mpps_when_the_images_came_first(
    broker_factory, tmp_path
):
    broker = broker_factory(progress__complete_on="both", progress__images_quiet_seconds=3600)
    step = order(broker)
    acquired = [ct_image(study_uid=step.study_instance_uid)]
    modality = Modality(broker.dicom.port)
    try:
        [item] = modality.worklist(accession=step.accession_number)
        uid = generate_uid()
        assert modality.create(in_progress(item), uid)[0].Status == 0x0000
        send(broker, tmp_path, acquired)
        assert step_now(broker, step.id).status == "STARTED"
        assert modality.set(uid, ended(images=acquired)).Status == 0x0000
    finally:
        modality.close()
    assert step_now(broker, step.id).status == "COMPLETED"
