"""OMG^O19 (IHE SWF.b general order) over MLLP, on SQLite and PostgreSQL, to a worklist query.

OMG carries no IPC: the bundled ihe-swf profile reads it as ORM is read (OBR-18/19/20/24), with
the start and priority in TQ1 as v2.5+ senders put them. The intake routes it through the
registry to the "orders" applier, so the order lifecycle (NW, XO, CA...) is the one ORM has.
"""

from __future__ import annotations

from sqlalchemy import select

from mwlbroker.store.tables import MessageRow
from tests.support.dicom_peers import Modality
from tests.support.hl7_messages import ack_fields
from tests.support.mllp_peers import Peer
from tests.support.samples import SAMPLES

SAMPLE = SAMPLES / "12_omg_o19_nw_v251.hl7"


def wire(text: str | None = None) -> bytes:
    """The sample (or ``text``) as a sender puts it on the wire: segments end in CR."""
    raw = SAMPLE.read_bytes() if text is None else text.encode()
    return raw.replace(b"\n", b"\r")


def test_omg_order_is_acked_and_found_by_a_modality_worklist_query(broker):
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(wire()))
    assert ack["MSA"][1:3] == ["AA", "RIS0000012"]
    assert ack["MSH"][9] == "ACK^O19^ACK"
    with broker.db.reading() as session:
        [row] = session.scalars(select(MessageRow))
        assert (row.message_type, row.trigger_event, row.status) == ("OMG", "O19", "processed")

    modality = Modality(broker.dicom.port, ae_title="US1")
    try:
        [item] = modality.worklist(modality="US")
    finally:
        modality.close()
    assert item.AccessionNumber == "ACC20261201004"  # OBR-18
    assert item.RequestedProcedureID == "RP20261201004"  # OBR-19
    assert str(item.PatientName) == "NAKAMURA^YUKI"
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepID == "SPS20261201004"  # OBR-20
    assert step.Modality == "US"  # OBR-24


def test_omg_cancel_follows_the_order_lifecycle(broker):
    cancel = (
        SAMPLE.read_text()
        .replace("RIS0000012", "RIS0000013")
        .replace("ORC|NW|", "ORC|CA|")
        .replace("||SC||", "||CA||", 1)
    )
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(wire()))["MSA"][1] == "AA"
        assert ack_fields(peer.send(wire(cancel)))["MSA"][1] == "AA"
    modality = Modality(broker.dicom.port, ae_title="US1")
    try:
        assert modality.worklist(modality="US") == []  # a canceled step is not offered
    finally:
        modality.close()


def test_omg_with_a_trigger_the_registry_lacks_is_refused_as_an_unsupported_event(broker):
    other = SAMPLE.read_text().replace("OMG^O19^OMG_O19", "OMG^O21^OMG_O21")
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(wire(other)))
    assert ack["MSA"][1] == "AR"
    assert ack["ERR"][3].startswith("201")  # HL7 table 0357: unsupported event code
