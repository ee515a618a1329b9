"""Hostile values through every way in: HL7 fields, C-FIND keys and web inputs.

SQL metacharacters, LIKE's own wildcards (% and _), GLOB's brackets and markup are data, never
syntax: they are stored as sent, match only themselves, and show as text. Each test runs on
SQLite and PostgreSQL against a real broker, with a real DICOM client.
"""

from __future__ import annotations

import json

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from mwlbroker.domain.accounts import Role
from mwlbroker.store import messages, worklist
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.web_client import login

HOSTILE = [
    ("HX1", "O'BRIEN^SEAN", "P'1"),
    ("HX2", "ROBERT'); DROP TABLE message;--^X", "P;2"),
    ("HX3", "100%^PURE", "P%3"),
    ("HX4", "UNDER_SCORE^A", "P_4"),
    ("HX5", "[BRACKET]^B", "P[5]"),
    ("HX6", "<script>alert(1)</script>^C", "P<6>"),
]


def _order(control_id: str, name: str, patient: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ORM^O01|{control_id}|P|2.3.1",
        f"PID|1||{patient}^^^HOSPITAL^MR||{name}||19700101|M",
        f"ORC|NW|PL{control_id}|F{control_id}||SC||^^^20261127143000^^R",
        f"OBR|1|PL{control_id}|F{control_id}|CT^CT||||||||||||||A{control_id}|R{control_id}|"
        f"S{control_id}||||CT",
    )


def _find(port: int, **keys: str) -> list[str]:
    """Accession numbers of the items a C-FIND with these keys returns."""
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert assoc.is_established
    query = Dataset()
    query.PatientName = keys.get("name", "")
    query.PatientID = keys.get("patient_id", "")
    query.AccessionNumber = ""
    step = Dataset()
    step.Modality = ""
    query.ScheduledProcedureStepSequence = [step]
    found = []
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None and status.Status in (0xFF00, 0x0000), status
            if status.Status == 0xFF00:
                found.append(str(identifier.AccessionNumber))
    finally:
        assoc.release()
    return sorted(found)


@pytest.fixture
def loaded(broker):
    with Peer(broker.hl7.port) as peer:
        for control_id, name, patient in HOSTILE:
            assert ack_fields(peer.send(_order(control_id, name, patient)))["MSA"][1] == "AA"
        # A neighbour each wildcard character would catch if it were taken as syntax.
        assert ack_fields(peer.send(_order("HX7", "100X^PURE", "PX3")))["MSA"][1] == "AA"
        assert ack_fields(peer.send(_order("HX8", "UNDERXSCORE^A", "PX4")))["MSA"][1] == "AA"
    return broker


def test_hostile_hl7_values_are_stored_as_sent(loaded):
    with loaded.db.reading() as session:
        assert len(messages.latest(session, limit=100)) == 8  # no table was dropped
        for control_id, name, patient in HOSTILE:
            [step] = worklist.search_steps(session, accession_number=f"A{control_id}")
            assert (step.patient_name, step.patient_id) == (name, patient)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"name": "O'BRIEN^SEAN"}, ["AHX1"]),
        ({"name": "ROBERT'); DROP TABLE message;--^X"}, ["AHX2"]),
        ({"name": "100%^PURE"}, ["AHX3"]),  # % is a character, not LIKE's wildcard
        ({"name": "100%*"}, ["AHX3"]),
        ({"name": "UNDER_SCORE*"}, ["AHX4"]),  # _ is a character, not LIKE's wildcard
        ({"name": "[BRACKET]*"}, ["AHX5"]),  # brackets are characters, not GLOB's class
        ({"name": "[B*"}, ["AHX5"]),
        ({"patient_id": "P'1"}, ["AHX1"]),
        ({"patient_id": "P%3"}, ["AHX3"]),
        ({"patient_id": "P_4"}, ["AHX4"]),
        ({"patient_id": "%"}, []),
        ({"name": "' OR '1'='1"}, []),
        ({"name": "*' OR 1=1 --"}, []),
        ({"name": "100?^PURE"}, ["AHX3", "AHX7"]),  # DICOM's own ? still works
    ],
)
def test_cfind_keys_match_only_literally(loaded, keys, expected):
    assert _find(loaded.dicom.port, **keys) == expected


def test_web_inputs_are_data_and_values_show_as_text(loaded):
    loaded.accounts.add_user("alice", "correct horse battery", Role.ADMIN)
    client = loaded.build_web_app().test_client()
    login(client, "alice", "correct horse battery")
    for probe in ("' OR 1=1 --", "%", "_", "'; DROP TABLE message;--"):
        page = client.get("/worklist", query_string={"q": probe})
        assert page.status_code == 200
        api = client.get("/api/worklist", query_string={"q": probe}).get_json()
        # Only items that really hold the text come back: never "everything".
        for item in api["items"]:
            assert probe.lower() in json.dumps(item, ensure_ascii=False).lower(), (probe, item)
        if probe in ("%", "_"):
            assert 0 < len(api["items"]) < 8, f"{probe!r} matched {len(api['items'])} items"
    page = client.get("/worklist").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    with loaded.db.reading() as session:
        assert len(messages.latest(session, limit=100)) == 8
