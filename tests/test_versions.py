"""HL7 v2.3 to v2.8.2 over MLLP, on SQLite and PostgreSQL: each version's order, found by date.

For every accepted version an imaging order is written in that version's shape, the way
senders of the time write it: the start and priority in ORC-7 / OBR-27 (TQ) up to v2.4, in
TQ1 from v2.5 on (ORC-7 left empty, as v2.5+ senders do, and withdrawn in v2.7); ORM^O01 up
to v2.6, OMI^O23 and OMG^O19 after; MSH-9 without a message structure in v2.3, with one from
v2.3.1 on. The modality's C-FIND by scheduled date must then find the item with the sender's
start, end and priority. An ADT^A08 of the same version must be applied to the same item,
and a version the broker does not know is refused (AR 203) with the list it accepts.
Orders in the shapes of a few senders in the field (ORC-7 still used in v2.5, an offset in the
TQ start, OBR-27 alone, TQ1 and ORC-7 both filled) are read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from mwlbroker.hl7v2.fieldnames import field_names
from mwlbroker.store.tables import MessageRow
from tests.support.hl7_messages import ack_fields
from tests.support.hl7_segments import msh, segment, wire
from tests.support.mllp_peers import Peer
from tests.support.worklist_by_date import worklist_on

ACCEPTED = "2.3 to 2.8.2"  # every version from 2.3 to 2.8.2, in 80 characters of MSA-3


@dataclass(frozen=True)
class Shape:
    """One version's imaging order: where its timing is, and what the worklist must show."""

    version: str
    message: str  # ORM, OMI or OMG
    timing: str  # "TQ" (ORC-7 and OBR-27) or "TQ1"
    start: str  # as the sender writes it (TS, or DTM with seconds, fraction, offset)
    end: str
    priority: str  # TQ.6 or TQ1-9 as sent
    date: str  # what C-FIND must return
    time: str
    end_time: str
    dicom_priority: str


SHAPES = [
    # Agfa / older RIS: v2.3 ORM, MSH-9 of two components, TQ start only, OBR-27 repeats ORC-7.
    Shape("2.3", "ORM", "TQ", "20261214083000", "", "S", "20261214", "083000", "", "STAT"),
    # GE Centricity: v2.3.1 ORM, ORC-7 with quantity 1 and an end.
    Shape(
        "2.3.1", "ORM", "TQ", "202612140930", "202612141000", "R",
        "20261214", "093000", "100000", "ROUTINE",
    ),
    # v2.4: the TS inside TQ carries its degree of precision as a subcomponent.
    Shape(
        "2.4", "ORM", "TQ", "20261214103000&S", "20261214110000&S", "A",
        "20261214", "103000", "110000", "HIGH",
    ),
    # Epic-style v2.5 ORM: ORC-7 and OBR-27 empty, timing in TQ1, TQ1-7 a TS with precision.
    Shape(
        "2.5", "ORM", "TQ1", "20261215080000^S", "20261215083000^S", "S^Stat^HL70485",
        "20261215", "080000", "083000", "STAT",
    ),
    # IHE SWF OMI v2.5.1 with IPC.
    Shape(
        "2.5.1", "OMI", "TQ1", "20261215101500", "20261215104500", "A^ASAP^HL70485",
        "20261215", "101500", "104500", "HIGH",
    ),
    # HAPI test-data style v2.6 ORM: seconds and a time zone offset in TQ1-7 (a DTM now).
    Shape(
        "2.6", "ORM", "TQ1", "20261216141530+0100", "20261216144500+0100", "R^Routine^HL70485",
        "20261216", "141530", "144500", "ROUTINE",
    ),
    # v2.7 general order: fractions of a second; ORC-7 / OBR-27 withdrawn.
    Shape(
        "2.7", "OMG", "TQ1", "20261217091500.1234", "", "P^Preop^HL70485",
        "20261217", "091500.1234", "", "LOW",
    ),
    Shape(
        "2.7.1", "OMI", "TQ1", "20261217130000-0500", "20261217133000-0500", "TS30",
        "20261217", "130000", "133000", "MEDIUM",
    ),
    Shape(
        "2.8", "OMI", "TQ1", "20261218074500", "20261218081500", "C^Callback^HL70485",
        "20261218", "074500", "081500", "ROUTINE",
    ),
    Shape("2.8.1", "OMG", "TQ1", "20261218110000", "", "R", "20261218", "110000", "", "ROUTINE"),
    Shape(
        "2.8.2", "OMI", "TQ1", "20261219160000+0000", "20261219163000+0000", "S^STAT^HL70485",
        "20261219", "160000", "163000", "STAT",
    ),
]  # fmt: skip


def message_type(code: str, trigger: str, version: str, structure: str) -> str:
    """MSH-9 as the version writes it: no message structure (MSH-9.3) before v2.3.1."""
    return f"{code}^{trigger}" if version == "2.3" else f"{code}^{trigger}^{structure}"


def order_message(shape: Shape, key: str) -> bytes:
    """A new imaging order (ORC-1 NW) in ``shape``; ``key`` makes its identifiers unique."""
    v = shape.version
    tq = f"1^^^{shape.start}^{shape.end}^{shape.priority}" if shape.timing == "TQ" else ""
    patient = segment(
        "PID",
        {1: "1", 3: f"P{key}^^^HOSPITAL^MR", 5: "ORIGINAL^NAME^^^^^L", 7: "19700101", 8: "F"},
    )
    visit = segment("PV1", {1: "1", 2: "O", 3: "RAD^WAIT^^HOSPITAL", 19: f"V{key}^^^HOSPITAL^VN"})
    common = segment(
        "ORC",
        {1: "NW", 2: f"PL{key}^RIS", 3: f"FL{key}^RIS", 5: "SC", 7: tq, 9: "20261206080000",
         12: "1234^JONES^MARY^^^DR"},
    )  # fmt: skip
    segments = [patient, visit, common]
    if shape.timing == "TQ1":
        segments.append(segment("TQ1", {1: "1", 7: shape.start, 8: shape.end, 9: shape.priority}))
    obr_fields = {
        1: "1", 2: f"PL{key}^RIS", 3: f"FL{key}^RIS", 4: "CT0101^CT CHEST^L",
        16: "1234^JONES^MARY^^^DR", 27: tq, 44: "71260^CT THORAX W/CONTRAST^C4",
    }  # fmt: skip
    if shape.message == "OMI":
        segments.append(segment("OBR", obr_fields))
        study = f"2.25.{int(key.encode().hex(), 16)}"
        ipc = {1: f"A{key}", 2: f"R{key}", 3: study, 4: f"S{key}", 5: "CT"}
        segments.append(segment("IPC", ipc))
    else:
        obr_fields |= {18: f"A{key}", 19: f"R{key}", 20: f"S{key}", 24: "CT"}
        segments.append(segment("OBR", obr_fields))
    code, trigger = {"ORM": ("ORM", "O01"), "OMI": ("OMI", "O23"), "OMG": ("OMG", "O19")}[
        shape.message
    ]
    header = msh(f"O{key}", message_type(code, trigger, v, f"{code}_{trigger}"), v)
    return wire(header, *segments)


def update_message(shape: Shape, key: str) -> bytes:
    """ADT^A08 of the same patient in the version's shape: new name, same identifier."""
    v = shape.version
    header = msh(f"U{key}", message_type("ADT", "A08", v, "ADT_A01"), v)
    # EVN-1 Event Type Code is withdrawn in v2.7: the trigger is in MSH-9 alone.
    event = segment("EVN", {1: "" if v >= "2.7" else "A08", 2: "20261206090000"})
    patient = segment(
        "PID",
        {1: "1", 3: f"P{key}^^^HOSPITAL^MR", 5: "UPDATED^NAME^^^^^L", 7: "19700101", 8: "F"},
    )
    visit = segment("PV1", {1: "1", 2: "O", 3: "RAD^WAIT^^HOSPITAL", 19: f"V{key}^^^HOSPITAL^VN"})
    return wire(header, event, patient, visit)


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.version for shape in SHAPES])
def test_an_order_of_each_version_is_found_by_date_and_updated_by_adt(broker, shape):
    key = shape.version.replace(".", "")
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(order_message(shape, key)))
        assert ack["MSA"][1:3] == ["AA", f"O{key}"], ack
        assert ack["MSH"][12] == shape.version

        [item] = worklist_on(broker.dicom.port, shape.date)
        assert item.AccessionNumber == f"A{key}"
        assert item.RequestedProcedureID == f"R{key}"
        assert item.RequestedProcedurePriority == shape.dicom_priority
        assert str(item.PatientName) == "ORIGINAL^NAME"
        step = item.ScheduledProcedureStepSequence[0]
        assert step.ScheduledProcedureStepID == f"S{key}"
        assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
            shape.date,
            shape.time,
        )
        if shape.end_time:
            assert step.ScheduledProcedureStepEndDate == shape.date
            assert step.ScheduledProcedureStepEndTime == shape.end_time
        else:
            assert not step.ScheduledProcedureStepEndTime
        # Not found on another day: the date is the one the sender scheduled.
        assert worklist_on(broker.dicom.port, "20261213") == []

        ack = ack_fields(peer.send(update_message(shape, key)))
        assert ack["MSA"][1:3] == ["AA", f"U{key}"], ack
    [item] = worklist_on(broker.dicom.port, shape.date)
    assert str(item.PatientName) == "UPDATED^NAME"
    with broker.db.reading() as session:
        rows = session.scalars(select(MessageRow).order_by(MessageRow.id)).all()
        assert [(row.version, row.status) for row in rows] == [(shape.version, "processed")] * 2


def error_code_and_text(ack: dict[str, list[str]]) -> tuple[str, str]:
    """The table 0357 code and the text of an AE/AR, wherever the ACK's layout puts them.

    Up to v2.4 the code is the fourth component of ERR-1 (segment^sequence^field^code&text);
    from v2.5 on it is ERR-3, and the text is in ERR-8 (and MSA-3 until v2.7 withdrew it).
    """
    err = ack["ERR"]
    if len(err) > 3 and err[3]:
        return err[3].split("^")[0], (err[8] if len(err) > 8 else "")
    location = err[1].split("^")
    return location[3].split("&")[0], ack["MSA"][3]


@pytest.mark.parametrize("version", ["2.9", "3.0", "2", "2.2", "2.5.2"])
def test_an_unknown_version_is_refused_with_the_list_of_accepted_ones(broker, version):
    shape = SHAPES[4]  # an OMI that is fine in every other respect
    raw = order_message(shape, "X").replace(b"|P|2.5.1", f"|P|{version}".encode())
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(raw))
    assert ack["MSA"][1:3] == ["AR", "OX"]
    assert ack["MSH"][12] == version  # answered in the sender's version
    code, text = error_code_and_text(ack)
    assert code == "203"  # HL7 table 0357: unsupported version id
    assert f"HL7 version '{version}' in MSH-12 is not accepted" in text
    assert f"(accepted: {ACCEPTED})" in text
    with broker.db.reading() as session:
        [row] = session.scalars(select(MessageRow))
        assert (row.status, row.version) == ("rejected", version)
    assert worklist_on(broker.dicom.port, shape.date) == []
    # The service keeps running: the same order in an accepted version is taken.
    with Peer(broker.hl7.port) as peer:
        assert ack_fields(peer.send(order_message(shape, "Y")))["MSA"][1] == "AA"
    assert [str(i.AccessionNumber) for i in worklist_on(broker.dicom.port, shape.date)] == ["AY"]


def test_a_site_can_narrow_the_accepted_versions(broker_factory):
    broker = broker_factory(hl7__accepted_versions=["2.3.1", "2.5.1"])
    with Peer(broker.hl7.port) as peer:
        refused = ack_fields(peer.send(order_message(SHAPES[5], "26")))  # a v2.6 order
        taken = ack_fields(peer.send(order_message(SHAPES[4], "251")))
    assert refused["MSA"][1] == "AR"
    assert error_code_and_text(refused) == (
        "203",
        "HL7 version '2.6' in MSH-12 is not accepted (accepted: 2.3.1, 2.5.1)",
    )
    assert taken["MSA"][1] == "AA"


# Orders as some senders write them in the field (their interface specifications' shapes):
# (version, ORC-7, OBR-27, TQ1, PID-2, PID-5) -> start date, time and priority.
FIELD_SHAPES = {
    # A German RIS (Medavis style) still on ORC-7 in v2.5: quantity 1, interval "once".
    "medavis-v25-orc7": ("2.5", "1^once^^20261214082200^20261214084500^R", "", "", "", ""),
    # A Dutch order portal (ZorgDomein style), v2.4: offset in the TQ start, FN family name.
    "zorgdomein-v24-offset": (
        "2.4", "^^^20261214180000+0200^^S", "", "", "", "van Dijk&van&Dijk^Anna^^^^^L",
    ),
    # A v2.3 hospital system (Meditech style): OBR-27 alone, an external ID in PID-2 as well.
    "meditech-v23-obr27": ("2.3", "", "^^^20261214090000^^A", "", "H00001234567", ""),
    # Epic style v2.5.1: TQ1 and ORC-7 both filled with the same start, TQ1-9 a CWE.
    "epic-v251-both": (
        "2.5.1", "^^^20261214101500^^R", "", "20261214101500^^S^Stat^HL70485", "", "",
    ),
}  # fmt: skip
FIELD_EXPECTED = {
    "medavis-v25-orc7": ("082200", "084500", "ROUTINE", "ORIGINAL^NAME"),
    "zorgdomein-v24-offset": ("180000", "", "STAT", "van Dijk^Anna"),
    "meditech-v23-obr27": ("090000", "", "HIGH", "ORIGINAL^NAME"),
    "epic-v251-both": ("101500", "", "STAT", "ORIGINAL^NAME"),
}


@pytest.mark.parametrize("name", list(FIELD_SHAPES))
def test_orders_as_senders_in_the_field_write_them(broker, name):
    version, orc_7, obr_27, timing, pid_2, pid_5 = FIELD_SHAPES[name]
    key = "".join(c for c in name if c.isalnum())[:12].upper()
    order = segment(
        "ORC", {1: "NW", 2: f"PL{key}", 3: f"FL{key}", 5: "SC", 7: orc_7, 9: "20261206080000"}
    )
    segments = [
        msh(f"F{key}", "ORM^O01" if version == "2.3" else "ORM^O01^ORM_O01", version),
        segment(
            "PID",
            {1: "1", 2: pid_2, 3: f"P{key}^^^HOSPITAL^MR", 5: pid_5 or "ORIGINAL^NAME", 8: "F"},
        ),
        order,
    ]
    if timing:
        start, _, priority = timing.partition("^^")
        segments.append(segment("TQ1", {1: "1", 7: start, 9: priority}))
    obr = {1: "1", 2: f"PL{key}", 4: "XR0501^CHEST PA/LAT^L", 24: "DX", 27: obr_27}
    obr |= {18: f"A{key}", 19: f"R{key}", 20: f"S{key}"}
    segments.append(segment("OBR", obr))
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(wire(*segments)))
    assert ack["MSA"][1:3] == ["AA", f"F{key}"], ack
    [item] = worklist_on(broker.dicom.port, "20261214")
    step = item.ScheduledProcedureStepSequence[0]
    start_time, end_time, priority, patient_name = FIELD_EXPECTED[name]
    assert step.ScheduledProcedureStepStartTime == start_time
    assert (step.get("ScheduledProcedureStepEndTime") or "") == end_time
    assert item.RequestedProcedurePriority == priority
    assert item.PatientID == f"P{key}"  # PID-3, whatever PID-2 holds
    assert str(item.PatientName) == patient_name


def test_stored_messages_name_their_fields_in_the_senders_version():
    """The message pages name each field; a v2.7.1 or v2.8.x message by its own tables."""
    assert field_names("PID", "2.8.2")[40] == "Patient Telecommunication Information"
    assert field_names("PID", "2.7.1")[40] == "Patient Telecommunication Information"  # by 2.7
    assert 40 not in field_names("PID", "2.5.1")  # PID-40 came in v2.7
    assert field_names("TQ1", "2.6")[7] == field_names("TQ1", "2.9")[7] == "Start Date Time"
