"""Hostile HL7 over a real MLLP socket (hypothesis), on SQLite and PostgreSQL.

Whatever a sender puts on the wire (random bytes, HL7-looking segments, a broken MSH, huge
fields, unknown character sets, stray escape sequences, mutated real orders) each frame gets an
ACK whose MSA-1 is AA, AE or AR, or the connection is closed cleanly; the broker stays up, no
message makes it log an unhandled error, and a good order sent after the hostile ones is still
answered AA and applied (the message processed and the order in the database).
"""

from __future__ import annotations

import itertools
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from mwlbroker.mllp.framing import END_BLOCK, START_BLOCK, frame
from mwlbroker.store.tables import MessageRow, OrderRow
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.properties import examples
from tests.support.samples import sample_files

SAMPLE_MESSAGES = [
    path.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r") for path in sample_files()
]
ACK_CODES = {"AA", "AE", "AR"}
MAX_MESSAGE_BYTES = 64 * 1024  # small, so that "over the limit" costs little to send

# -- what a hostile sender sends ---------------------------------------------------------------

escapes = st.sampled_from(
    ["\\F\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\X41\\", "\\XZZ\\", "\\Z99\\", "\\", "\\H\\",
     "\\.br\\", "\\C2842\\", "\\M2D41\\", '""', "^", "~", "&", "|", "\r", "\n", "\x00"]
)  # fmt: skip
field_text = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(escapes, st.text(max_size=5)), max_size=8).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from("xÜ^~\\&|é中"), st.integers(1, 70_000)),
)
codecs = st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16", "utf-16-be", "ascii"])
charsets = st.sampled_from(
    ["", "ASCII", "8859/1", "8859/15", "UNICODE UTF-8", "UNICODE", "ISO IR87", "GB 18030",
     "ISO IR192", "nonsense", "8859/1~UNICODE UTF-8"]
)  # fmt: skip
message_types = st.sampled_from(
    ["ORM^O01", "OMI^O23^OMI_O23", "ADT^A01", "ADT^A04", "ADT^A08", "ADT^A31", "ADT^A40",
     "ADT^A47", "ADT^A02", "ADT^A12", "ADT^A24", "ADT^A35", "SIU^S12", "SIU^S14", "ACK",
     "ORU^R01", "", "ORM", "^O01", "ORM^O01^ORM_O01^X"]
)  # fmt: skip
versions = st.sampled_from(["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "", "x", "2.3.1^USA"])
segment_ids = st.sampled_from(
    ["PID", "PV1", "ORC", "OBR", "ZDS", "MRG", "EVN", "IPC", "TQ1", "SCH", "AIS", "NTE", "ZZZ",
     "MSH", "MSA", "", "P", "PIDX", "pid"]
)  # fmt: skip


def encoded(text: str, codec: str) -> bytes:
    return text.encode(codec, errors="replace")


@st.composite
def hl7_like(draw: st.DrawFn) -> bytes:
    """An MSH with drawn delimiters, type, version and charset, then random segments."""
    separators = draw(st.sampled_from(["|^~\\&", "|^~\\&#", "|", "", "^^^^^", "|^~\\", "||||"]))
    control = draw(st.text(min_size=0, max_size=25))
    msh = (
        f"MSH{separators}|{draw(st.text(max_size=8))}|HOSP|MWLBROKER|RAD|"
        f"{draw(st.sampled_from(['20261127101500', '', 'not a date', '2026']))}||"
        f"{draw(message_types)}|{control}|P|{draw(versions)}||||||{draw(charsets)}"
    )
    segments = [msh]
    for _ in range(draw(st.integers(0, 6))):
        fields = draw(st.lists(field_text, max_size=12))
        segments.append("|".join([draw(segment_ids), *fields]))
    joiner = draw(st.sampled_from(["\r", "\n", "\r\n", "\r\r"]))
    return encoded(joiner.join(segments) + joiner, draw(codecs))


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    """A real sample message with some fields replaced, removed or repeated."""
    lines = draw(st.sampled_from(SAMPLE_MESSAGES)).decode("latin-1").split("\r")
    lines = [line for line in lines if line]
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(lines) - 1))
        fields = lines[index].split("|")
        position = draw(st.integers(0, len(fields)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "drop-segment", "repeat"]))
        if action == "replace" and position < len(fields):
            fields[position] = draw(field_text)
        elif action == "insert":
            fields.insert(position, draw(field_text))
        elif action == "delete" and position < len(fields):
            del fields[position]
        elif action == "drop-segment" and len(lines) > 1:
            del lines[index]
            continue
        elif action == "repeat":
            lines.insert(index, lines[index])
            continue
        lines[index] = "|".join(fields)
    return encoded("\r".join(lines) + "\r", draw(codecs))


hostile_payload = st.one_of(
    st.binary(max_size=2000),
    hl7_like(),
    mutated_sample(),
    st.builds(
        lambda head, n: head + b"x" * n, st.sampled_from(SAMPLE_MESSAGES), st.integers(0, 200_000)
    ),
).map(lambda data: data.replace(START_BLOCK, b"").replace(END_BLOCK, b""))  # one frame each
raw_stream = st.lists(
    st.one_of(st.binary(max_size=300), hostile_payload.map(frame)), max_size=4
).map(b"".join)  # several frames, junk, partial frames: whatever it is


# -- the checks --------------------------------------------------------------------------------


class Unhandled(logging.Handler):
    """Keeps every record logged with an exception: an unhandled error is a bug to report."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.getMessage()}: {record.exc_info[1]!r}")


@pytest.fixture
def unhandled():
    handler = Unhandled()
    logger = logging.getLogger("mwlbroker")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def hostile_broker(broker_factory):
    return broker_factory(hl7__max_message_bytes=MAX_MESSAGE_BYTES, hl7__idle_timeout=15)


_good = itertools.count(1)


def read_acks(peer: Peer, count: int) -> tuple[list[bytes], bool]:
    """Up to ``count`` ACKs, and whether the broker closed the connection instead."""
    acks = []
    try:
        for _ in range(count):
            acks.append(peer.read_ack())
    except ConnectionError:
        return acks, True
    return acks, False


def assert_valid_ack(ack: bytes) -> None:
    segments = ack_fields(ack)
    assert "MSH" in segments and "MSA" in segments, ack
    assert segments["MSA"][1] in ACK_CODES, ack


def assert_good_order_applied(broker) -> None:
    """A well-formed order after the hostile input: AA, stored as processed, order written."""
    control = f"GOOD{next(_good):06d}"
    with Peer(broker.hl7.port, timeout=30) as peer:
        ack = ack_fields(peer.send(orm(control, patient=f"P{control}")))
    assert ack["MSA"][1:3] == ["AA", control]
    with broker.db.reading() as session:
        status = session.scalar(select(MessageRow.status).where(MessageRow.control_id == control))
        order = session.scalar(
            select(OrderRow.id).where(OrderRow.placer_order_number == f"PL{control}")
        )
    assert status == "processed"
    assert order is not None


@examples(25, against_broker=True)
@given(payloads=st.lists(hostile_payload, min_size=1, max_size=3))
def test_property_every_hostile_frame_gets_an_ack_or_a_clean_close(
    hostile_broker, unhandled, payloads
):
    with Peer(hostile_broker.hl7.port, timeout=30) as peer:
        peer.send_raw(b"".join(frame(payload) for payload in payloads))
        acks, closed = read_acks(peer, len(payloads))
    for ack in acks:
        assert_valid_ack(ack)
    assert closed or len(acks) == len(payloads)
    assert unhandled.records == []
    assert_good_order_applied(hostile_broker)


@examples(25, against_broker=True)
@given(stream=raw_stream)
def test_property_any_byte_stream_then_a_good_order_on_the_same_connection(
    hostile_broker, unhandled, stream
):
    control = f"GOOD{next(_good):06d}"
    good = orm(control, patient=f"P{control}")
    with Peer(hostile_broker.hl7.port, timeout=30) as peer:
        # Whatever came before, a start block begins a new frame: the good order is read.
        peer.send_raw(stream + frame(good))
        while True:
            try:
                ack = peer.read_ack()
            except ConnectionError:
                ack = b""
            if not ack:
                break  # closed: the good order is sent again on a new connection below
            assert_valid_ack(ack)
            if ack_fields(ack)["MSA"][2] == control:
                assert ack_fields(ack)["MSA"][1] == "AA"
                break
    assert unhandled.records == []
    assert_good_order_applied(hostile_broker)
