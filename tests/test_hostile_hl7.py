"""Cases the property tests found, kept as plain examples: each once closed the connection
without an ACK and lost the message."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mwlbroker.store.tables import MessageRow
from tests.support.hl7_messages import ack_fields, hl7, orm
from tests.support.mllp_peers import Peer


def stored(broker, control_id: str) -> list[MessageRow]:
    with broker.db.reading() as session:
        return list(session.scalars(select(MessageRow).where(MessageRow.control_id == control_id)))


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        # \.sp<n>\ with a count that is not a number: python-hl7 raises ValueError
        ("DOE\\.spx\\^JOHN", "AA"),
        ("DOE\\.brZ\\^JOHN", "AA"),
    ],
)
def test_malformed_escape_sequence_in_a_field_is_answered_and_stored(broker, field, expected):
    control = "ESC1"
    message = hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ORM^O01|{control}|P|2.3.1",
        f"PID|1||PESC^^^HOSPITAL^MR||{field}||19700101|M",
        "ORC|NW|PLESC|FPLESC||SC||^^^20261127143000^^R",
        "OBR|1|PLESC|FPLESC|CTCHEST^CT chest^L||||||||||||||APLESC|RPLESC|SPLESC||||CT",
    )
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(message))
        assert ack["MSA"][1:3] == [expected, control]
        assert ack_fields(peer.send(orm("AFTER1")))["MSA"][1] == "AA"
    [row] = stored(broker, control)
    assert row.status == "processed"


def test_malformed_escape_sequence_in_the_header_is_stored_and_refused(broker):
    # MSH-12 is read by the header itself: a message that cannot be read is kept and refused.
    message = hl7(
        "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ORM^O01|ESC2|P|2.3.1\\.spx\\",
        "PID|1||PESC2^^^HOSPITAL^MR||DOE^JOHN",
    )
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(message))
        assert ack["MSA"][1] in {"AE", "AR"}
    assert len(stored(broker, "ESC2")) == 1


def test_an_unforeseen_reader_fault_is_stored_and_refused_not_dropped(broker, monkeypatch):
    # Stands for any exception the reader has not been taught about yet.
    def broken(raw: bytes, truncated: bool):
        raise RuntimeError("reader fault")

    monkeypatch.setattr(broker.ingest, "_read", broken)
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(orm("FAULT1")))
        assert ack["MSA"][1:3] == ["AR", "FAULT1"]
        assert "cannot be read" in ack["MSA"][3]
    [row] = stored(broker, "FAULT1")
    assert row.status == "rejected" and "reader fault" in row.error


def test_empty_escape_sequence_is_read_as_nothing(broker):
    message = orm("ESC3").replace(b"DOE^JOHN", b"DO\\\\E^JOHN")
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(message))["MSA"][1:3] == ["AA", "ESC3"]
