"""Forwarding to a PACS: storescu sends to the broker, a pynetdicom Storage SCP plays the PACS.

On SQLite and PostgreSQL: the instances of a matched study reach the PACS with the patient and
order attributes of the broker's record (the RIS is the source of truth), the values replaced
kept in the Original Attributes Sequence; an unmatched study goes as received; a PACS that is
down, or refuses, gets the instances once it takes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydicom.uid import generate_uid

from mwlbroker.app import Broker
from mwlbroker.store import forward
from mwlbroker.store.tables import InstanceRow
from tests.support.dicom_peers import ct_image
from tests.support.hl7_messages import ack_fields
from tests.support.mllp_peers import Peer
from tests.support.pacs import PACS, forwarding
from tests.support.polling import wait_until
from tests.support.prerequisites import require_tools
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES
from tests.support.workflow import order, store_images


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    require_tools("storescu")


@pytest.fixture
def pacs() -> Iterator[PACS]:
    server = PACS().start()
    yield server
    server.stop()


def tasks(broker: Broker) -> list:
    with broker.db.reading() as session:
        return sorted(forward.latest(session, limit=1000), key=lambda t: t.id)


def test_instances_reach_the_pacs_with_the_brokers_patient_and_order(
    broker_factory, pacs, tmp_path
):
    folder = tmp_path / "spool"
    broker = broker_factory(storage__dir=str(folder), **forwarding(pacs))
    step = order(broker)
    image = ct_image(
        study_uid=step.study_instance_uid,
        patient_name="DOE^J",  # typed at the console
        patient_id="PID1",
        accession="",  # not filled in at the modality
    )

    store_images(broker, tmp_path, [image])

    [received] = pacs.wait_for(1)
    assert pacs.calling_aes == ["MWLBROKER"]
    assert received.SOPInstanceUID == image.SOPInstanceUID
    assert received.StudyInstanceUID == step.study_instance_uid  # UIDs are never changed
    assert (received.PatientName, received.PatientID, received.IssuerOfPatientID) == (
        "DOE^JOHN",
        "PID1",
        "HOSPITAL",
    )
    assert received.AccessionNumber == "APLC1"
    assert received.PixelData == image.PixelData
    [history] = received.OriginalAttributesSequence  # PS3.3 C.12.1.1.9.2
    [originals] = history.ModifiedAttributesSequence
    assert originals.PatientName == "DOE^J"
    assert originals.AccessionNumber in ("", None)
    assert "IssuerOfPatientID" in originals  # it was absent
    assert "PatientBirthDate" not in originals  # it was right
    assert history.ModifyingSystem == "MWLBROKER"
    assert history.SourceOfPreviousValues == "CT1"
    assert history.ReasonForTheAttributeModification == "COERCE"
    [task] = wait_until(lambda: (t := tasks(broker)) and t[0].status == "sent" and t)
    assert task.attempts == 1 and "PatientName" in task.answer
    # Forwarded and not kept (storage.keep_files = false): the spooled file is gone.
    with broker.db.reading() as session:
        [instance] = list(session.query(InstanceRow))
    assert instance.path is None
    assert folder.is_dir(), "nothing was spooled under storage.dir: the check below proves nothing"
    assert not [p for p in folder.rglob("*.dcm")]


def test_names_outside_the_image_character_set_are_sent_in_utf8(broker_factory, pacs, tmp_path):
    broker = broker_factory(**forwarding(pacs), storage__dir=str(tmp_path / "spool"))
    latin1 = (SAMPLES / "08_orm_o01_latin1_v231.hl7").read_bytes().replace(b"\n", b"\r")
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(latin1))["MSA"][1] == "AA"
    image = ct_image(
        study_uid="1.2.826.0.1.3680043.10.543.20261128.1",
        patient_name="MULLER^JORG",
        patient_id="PID234567",
    )
    del image.SpecificCharacterSet  # the modality writes ASCII only

    store_images(broker, tmp_path, [image])

    [received] = pacs.wait_for(1)
    assert received.SpecificCharacterSet == "ISO_IR 192"
    assert received.PatientName == "MÜLLER^JÖRG"
    assert received.ReferringPhysicianName == "Böhm^Anna^^Dr."


def test_an_unmatched_study_is_forwarded_as_received(broker_factory, pacs, tmp_path):
    broker = broker_factory(**forwarding(pacs), storage__dir=str(tmp_path / "spool"))
    image = ct_image(study_uid=generate_uid(), patient_name="WALK^IN", patient_id="TMP1")

    store_images(broker, tmp_path, [image])

    [received] = pacs.wait_for(1)
    assert (received.PatientName, received.PatientID) == ("WALK^IN", "TMP1")
    assert "OriginalAttributesSequence" not in received


def test_pacs_down_then_up_gets_every_instance_once(broker_factory, tmp_path):
    pacs = PACS()  # not started: connections are refused
    try:
        broker = broker_factory(**forwarding(pacs), storage__dir=str(tmp_path / "spool"))
        step = order(broker)
        sent = [ct_image(study_uid=step.study_instance_uid, number=n) for n in (1, 2, 3)]
        store_images(broker, tmp_path, sent)
        waiting = wait_until(lambda: (t := tasks(broker)) and t[0].last_error and t)
        assert [t.status for t in waiting] == ["pending"] * 3
        assert "no association" in waiting[0].last_error
        assert all(t.attempts == 0 for t in waiting)

        pacs.start()  # the PACS is back

        received = pacs.wait_for(3)
        wait_until(lambda: all(t.status == "sent" for t in tasks(broker)))
    finally:
        pacs.stop()
    assert sorted(r.SOPInstanceUID for r in received) == sorted(i.SOPInstanceUID for i in sent)
    assert all(r.PatientName == "DOE^JOHN" for r in received)


def test_a_refused_instance_is_sent_again(broker_factory, tmp_path):
    answers = iter([0xA700])  # out of resources once, then fine

    pacs = PACS(lambda _dataset: next(answers, 0x0000)).start()
    try:
        broker = broker_factory(**forwarding(pacs), storage__dir=str(tmp_path / "spool"))
        image = ct_image(study_uid=generate_uid())
        store_images(broker, tmp_path, [image])
        pacs.wait_for(1)
        [task] = wait_until(lambda: (t := tasks(broker)) and t[0].status == "sent" and t)
    finally:
        pacs.stop()
    assert task.attempts == 2


def test_an_instance_refused_too_often_is_held_until_retried(
    broker_factory, tmp_path, database_url
):
    refusing = {"on": True}
    pacs = PACS(lambda _dataset: 0xA700 if refusing["on"] else 0x0000).start()
    try:
        broker = broker_factory(
            **forwarding(pacs, forward__max_attempts=2), storage__dir=str(tmp_path / "spool")
        )
        store_images(broker, tmp_path, [ct_image(study_uid=generate_uid())])
        [task] = wait_until(lambda: (t := tasks(broker)) and t[0].status == "failed" and t)
        assert task.attempts == 2 and "refused (A700)" in task.last_error
        env = cli_env(database_url)
        listed = run_cli("forward", "list", "--status", "failed", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [row["id"] for row in json.loads(listed.stdout)] == [task.id]

        refusing["on"] = False
        retried = run_cli("forward", "retry", str(task.id), env=env)
        assert retried.returncode == 0, retried.stderr

        pacs.wait_for(1)
        wait_until(lambda: tasks(broker)[0].status == "sent")
    finally:
        pacs.stop()
