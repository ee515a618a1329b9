"""A site at work through the real broker: the RIS orders, a modality performs and stores images.

Each helper drives the broker over its real ports (MLLP, DICOM) and reads back what it stored,
so that a test reads as the story it checks.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from mwlbroker.app import Broker
from mwlbroker.store import outbound, worklist
from mwlbroker.store.tables import OutboundRow, StepRow
from tests.support.dicom_peers import Modality, ended, in_progress, storescu, write_images
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import RIS, Peer

FAST_RETRIES = {"outbound__retry_seconds": 0.05, "outbound__retry_max_seconds": 0.2}


def destination(ris: RIS, name: str = "RIS", **extra: str) -> dict:
    """An outbound.destinations entry for this RIS."""
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": ris.port,
        "receiving_application": "RIS",
        "receiving_facility": "HOSPITAL",
        **extra,
    }


def order(broker: Broker, control_id: str = "C1", **fields: str) -> StepRow:
    """Send an ORM^O01 NW; return its worklist item."""
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(orm(control_id, **fields)))["MSA"][1] == "AA"
    with broker.db.reading() as session:
        return worklist.search_steps(session, accession_number=f"APL{control_id}")[0]


def perform(broker: Broker, step: StepRow, *ends: str) -> str:
    """The modality starts the exam of ``step`` by MPPS, then ends it as ``ends`` says."""
    modality = Modality(broker.dicom.port)
    try:
        [item] = modality.worklist(accession=step.accession_number)
        uid = generate_uid()
        assert modality.create(in_progress(item), uid)[0].Status == 0x0000
        for status in ends:
            answer = modality.set(uid, ended(status, series=1 if status == "COMPLETED" else 0))
            assert answer.Status == 0x0000
    finally:
        modality.close()
    return uid


def queue(broker: Broker) -> list[OutboundRow]:
    """The outbound queue, oldest first."""
    with broker.db.reading() as session:
        return sorted(outbound.latest(session, limit=1000), key=lambda row: row.id)


def store_images(broker: Broker, tmp_path: Path, images: list[Dataset]) -> None:
    """The modality sends ``images`` with DCMTK's storescu; each must be stored."""
    sent = storescu(broker.dicom.port, *write_images(tmp_path / generate_uid(), images))
    assert sent.returncode == 0, sent.stdout + sent.stderr


def send_accepted(broker: Broker, *messages: bytes) -> None:
    """The RIS sends ``messages`` on one connection; each must be answered AA."""
    with Peer(broker.hl7.port) as peer:
        for message in messages:
            ack = ack_fields(peer.send(message))
            assert ack["MSA"][1] == "AA", ack


def worklist_item(broker: Broker, accession: str) -> tuple[str, str]:
    """(PatientID, PatientName) of the worklist item a modality gets for this accession."""
    modality = Modality(broker.dicom.port)
    try:
        [item] = modality.worklist(accession=accession)
    finally:
        modality.close()
    return str(item.PatientID), str(item.PatientName)


def patient_pk(broker: Broker, patient_id: str) -> int:
    """The database id of the HOSPITAL patient ``patient_id``."""
    with broker.db.reading() as session:
        found = worklist.find_patient(session, patient_id, "HOSPITAL")
        assert found is not None
        return found.id
