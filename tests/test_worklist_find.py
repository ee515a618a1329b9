"""The Modality Worklist SCP end to end: DCMTK findscu and pynetdicom against the live listener.

Every test starts the real DICOM listener on a free loopback port against a migrated SQLite or
PostgreSQL database, stores worklist items the way the order service does (rows plus the item
built by ``refresh_step``), and asks over DICOM. DCMTK's ``findscu -W`` writes each response to
a file, read back with pydicom; pynetdicom is the client where a test needs C-CANCEL or several
requests on one association.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from mwlbroker.app import build_outbound, build_progress, build_worklist_query
from mwlbroker.dicom.server import DicomServer, start_dicom_server
from mwlbroker.options import dicom_options
from mwlbroker.services.worklist import refresh_step
from mwlbroker.store import migrate
from mwlbroker.store.db import Database
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow, add
from mwlbroker.store.worklist_query import recent_queries
from tests.support.dicom_peers import dcmtk_env, findscu
from tests.support.prerequisites import require_tools
from tests.support.settings import make_config


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    require_tools("findscu", "echoscu")


# -- the database and the worklist in it -------------------------------------------------------


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


class Worklist:
    """Stores worklist items as the order service does: patient, order, step, built item."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._numbers = itertools.count(1)

    def add(self, **fields: object) -> int:
        return self.add_many([fields])[0]

    def add_many(self, items: list[dict]) -> list[int]:
        now = datetime.now(UTC)
        ids = []
        with self.db.transaction() as session:
            patients: dict[tuple[str, str], PatientRow] = {}
            for fields in items:
                ids.append(self._add(session, patients, now, **fields))
        return ids

    def _add(
        self,
        session,
        patients: dict,
        now: datetime,
        *,
        patient_id: str = "P1",
        issuer: str = "HOSP",
        name: str = "DOE^JOHN",
        accession: str | None = None,
        study: str | None = None,
        station: str | None = "CT1",
        modality: str = "CT",
        start: str = "20261127090000",
        status: str = "SCHEDULED",
        procedure: dict | None = None,
        step: dict | None = None,
    ) -> int:
        n = next(self._numbers)
        key = (patient_id, issuer)
        patient = patients.get(key)
        if patient is None:
            patient = (
                session.query(PatientRow).filter_by(patient_id=patient_id, issuer=issuer).first()
            )
        if patient is None:
            attributes = {
                "PatientID": patient_id,
                "IssuerOfPatientID": issuer,
                "PatientName": name,
                "PatientBirthDate": "19700101",
                "PatientSex": "M",
            }
            patient = PatientRow(
                patient_id=patient_id,
                issuer=issuer,
                patient_name=name,
                attributes=attributes,
                created_at=now,
                updated_at=now,
            )
            add(session, patient)
        patients[key] = patient
        order = OrderRow(
            placer_order_number=f"PL{n}",
            patient_pk=patient.id,
            order_control="NW",
            attributes={"ReferringPhysicianName": "HOUSE^GREGORY"},
            created_at=now,
            updated_at=now,
        )
        add(session, order)
        sps = {
            "Modality": modality,
            "ScheduledProcedureStepStartDate": start[:8],
            "ScheduledProcedureStepStartTime": start[8:],
            "ScheduledProcedureStepID": f"S{n}",
            "ScheduledProcedureStepDescription": "CT chest with contrast",
            **({"ScheduledStationAETitle": station} if station else {}),
            **(step or {}),
        }
        requested = {
            "AccessionNumber": accession or f"A{n}",
            "RequestedProcedureID": f"R{n}",
            "StudyInstanceUID": study or f"1.2.826.0.1.3680043.10.1{n:04d}",
            "RequestedProcedureDescription": "CT chest",
            **(procedure or {}),
        }
        row = StepRow(
            order_id=order.id,
            patient_pk=patient.id,
            patient_id=patient_id,
            status=status,
            attributes={"procedure": requested, "step": sps},
            created_at=now,
            updated_at=now,
        )
        refresh_step(row, patient, order)
        add(session, row)
        return row.id


@pytest.fixture
def worklist(db: Database) -> Worklist:
    return Worklist(db)


@pytest.fixture
def scp(db: Database, database_url: str) -> Iterator:
    """Start DICOM listeners with extra settings (``dicom__max_matches=2``); stopped at the end."""
    started: list[DicomServer] = []

    def start(**overrides: object) -> DicomServer:
        config = make_config(database_url, **overrides)
        worklist = build_worklist_query(config, db)
        worklist.start()
        progress = build_progress(config, db, build_outbound(config, db))
        try:
            server = start_dicom_server(dicom_options(config), worklist, progress)
        except BaseException:
            worklist.close()
            raise
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        server.worklist.close()  # flushes the query log


# -- DCMTK's findscu and echoscu ---------------------------------------------------------------


SPS = "ScheduledProcedureStepSequence[0]"


# -- pynetdicom as the client ------------------------------------------------------------------


def associate(port: int, aet: str = "MODALITY"):
    ae = AE(ae_title=aet)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert association.is_established
    return association


def find(association, identifier: Dataset, msg_id: int = 1) -> list[tuple[int, Dataset | None]]:
    results = association.send_c_find(identifier, ModalityWorklistInformationFind, msg_id=msg_id)
    # a failure (0xA000-0xCFFF) brings its status data set; a pending response its identifier
    return [
        (status.Status, status if 0xA000 <= status.Status < 0xD000 else found)
        for status, found in results
    ]


def identifier(**keys: object) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def sps_item(**keys: object) -> Dataset:
    return identifier(**keys)


def logged(server: DicomServer, db: Database) -> list:
    assert server.worklist.query_log.flush()
    with db.reading() as session:
        return list(reversed(recent_queries(session)))


# -- matching types, each over DICOM -----------------------------------------------------------


def test_single_value_matching_returns_the_requested_keys(scp, worklist, tmp_path):
    worklist.add(accession="ACC1", name="DOE^JOHN", patient_id="P1")
    worklist.add(accession="ACC2", name="ROE^JANE", patient_id="P2")
    server = scp()
    found = findscu(
        server.port,
        "AccessionNumber=ACC1",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "ReferringPhysicianName",
        "PatientWeight",  # nothing stored: returned empty
        "(0009,0010)",  # a private key the broker cannot know: returned empty
        f"{SPS}.Modality",
        f"{SPS}.ScheduledProcedureStepStartDate",
        tmp_path=tmp_path,
    )
    assert found.status == "Success"
    (response,) = found.responses
    assert response.AccessionNumber == "ACC1"
    assert response.PatientName == "DOE^JOHN" and response.PatientID == "P1"
    assert response.PatientBirthDate == "19700101"
    assert response.ReferringPhysicianName == "HOUSE^GREGORY"
    assert "PatientWeight" in response and response.PatientWeight in (None, "")
    assert Tag(0x00090010) in response and not response[0x00090010].value
    # exactly the requested keys: no Study Instance UID, no SPS ID, nothing extra
    assert {e.keyword for e in response if e.tag.group != 0x0009} == {
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "ReferringPhysicianName",
        "PatientWeight",
        "ScheduledProcedureStepSequence",
    }
    (step,) = response.ScheduledProcedureStepSequence
    assert {e.keyword for e in step} == {"Modality", "ScheduledProcedureStepStartDate"}
    assert step.Modality == "CT" and step.ScheduledProcedureStepStartDate == "20261127"


def test_wildcard_and_universal_matching(scp, worklist, tmp_path):
    worklist.add(name="DOE^JOHN", patient_id="P1")
    worklist.add(name="DOE^JANE", patient_id="P2")
    worklist.add(name="ROE^RICHARD", patient_id="P3")
    worklist.add(name="MOE_X^ANN", patient_id="P4")  # "_" is no wild card in DICOM
    server = scp()
    port = server.port
    assert findscu(port, "PatientName=DOE*", tmp_path=tmp_path).values("PatientName") == [
        "DOE^JANE",
        "DOE^JOHN",
    ]
    assert findscu(port, "PatientName=?OE^J*", tmp_path=tmp_path).values("PatientName") == [
        "DOE^JANE",
        "DOE^JOHN",
    ]
    assert findscu(port, "PatientName=*", "PatientID", tmp_path=tmp_path).values("PatientID") == [
        "P1",
        "P2",
        "P3",
        "P4",
    ]
    assert findscu(port, "PatientName", "PatientID", tmp_path=tmp_path).values("PatientID") == [
        "P1",
        "P2",
        "P3",
        "P4",
    ]
    assert findscu(port, "PatientID=P?", "PatientName=M*X*", tmp_path=tmp_path).values(
        "PatientID"
    ) == ["P4"]
    assert findscu(port, "PatientName=MOE%*", tmp_path=tmp_path).responses == []
    assert findscu(port, "PatientName=D_E*", tmp_path=tmp_path).responses == []


def test_case_sensitivity_follows_the_standard(scp, worklist, tmp_path):
    worklist.add(name="DOE^JOHN", modality="CT")
    server = scp()
    # single value and wild card matching are case-sensitive (PS3.4 C.2.2.2.1)
    assert findscu(server.port, f"{SPS}.Modality=ct", tmp_path=tmp_path).responses == []
    assert findscu(server.port, "PatientName=doe*", tmp_path=tmp_path).responses == []
    assert len(findscu(server.port, f"{SPS}.Modality=CT", tmp_path=tmp_path).responses) == 1


def test_person_names_case_and_accent_insensitive_by_configuration(scp, worklist, tmp_path):
    worklist.add(name="MÜLLER^HANS", patient_id="P1")
    worklist.add(name="Muller^Anna", patient_id="P2")
    worklist.add(name="MILLER^JOE", patient_id="P3")
    server = scp(
        dicom__pn_case_insensitive=True,
        dicom__profiles=[{"calling_ae": "STRICT*", "pn_case_insensitive": False}],
    )
    found = findscu(server.port, "PatientName=muller*", "PatientID", tmp_path=tmp_path)
    assert found.values("PatientID") == ["P1", "P2"]
    found = findscu(server.port, "PatientName=MULLER^HANS", "PatientID", tmp_path=tmp_path)
    assert found.values("PatientID") == ["P1"]
    # a profile can keep the standard's exact matching for one modality
    found = findscu(server.port, "PatientName=muller*", aet="STRICT1", tmp_path=tmp_path)
    assert found.status == "Success" and found.responses == []


def test_date_range_matching(scp, worklist, tmp_path):
    for day in ("20261126", "20261127", "20261128", "20261130"):
        worklist.add(start=day + "100000", accession="A" + day)
    server = scp()

    def accessions(value: str) -> list[str]:
        keys = [f"{SPS}.ScheduledProcedureStepStartDate={value}", "AccessionNumber"]
        return findscu(server.port, *keys, tmp_path=tmp_path).values("AccessionNumber")

    assert accessions("20261127") == ["A20261127"]
    assert accessions("20261127-20261128") == ["A20261127", "A20261128"]
    assert accessions("-20261127") == ["A20261126", "A20261127"]
    assert accessions("20261128-") == ["A20261128", "A20261130"]


def test_combined_start_date_and_time_range(scp, worklist, tmp_path):
    """Date 27-28 with time 08:00-12:00 is one span from 27th 08:00 to 28th 12:00 (C.2.2.2.5.1)."""
    for start in (
        "20261127070000",
        "20261127093000",
        "20261127130000",
        "20261128070000",
        "20261128113000",
        "20261128130000",
    ):
        worklist.add(start=start, accession=start)
    server = scp()
    found = findscu(
        server.port,
        f"{SPS}.ScheduledProcedureStepStartDate=20261127-20261128",
        f"{SPS}.ScheduledProcedureStepStartTime=0800-1200",
        "AccessionNumber",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == [
        "20261127093000",
        "20261127130000",
        "20261128070000",
        "20261128113000",
    ]
    (step,) = found.responses[0].ScheduledProcedureStepSequence
    assert step.ScheduledProcedureStepStartTime  # the stored time is returned, not the range


def test_list_of_uid_matching(scp, worklist, tmp_path):
    worklist.add(study="1.2.3.1", accession="X1")
    worklist.add(study="1.2.3.2", accession="X2")
    worklist.add(study="1.2.3.3", accession="X3")
    server = scp()
    found = findscu(
        server.port, r"StudyInstanceUID=1.2.3.1\1.2.3.3", "AccessionNumber", tmp_path=tmp_path
    )
    assert found.values("AccessionNumber") == ["X1", "X3"]


def test_sequence_matching(scp, worklist, tmp_path):
    code = {"CodeValue": "CTCHEST", "CodingSchemeDesignator": "L", "CodeMeaning": "CT chest"}
    other = {"CodeValue": "MRHEAD", "CodingSchemeDesignator": "L", "CodeMeaning": "MR head"}
    worklist.add(accession="C1", procedure={"RequestedProcedureCodeSequence": [code]})
    worklist.add(accession="C2", procedure={"RequestedProcedureCodeSequence": [other]})
    worklist.add(accession="C3", step={"ScheduledPerformingPhysicianName": "STRANGE^STEPHEN"})
    server = scp()
    found = findscu(
        server.port,
        "RequestedProcedureCodeSequence[0].CodeValue=CTCHEST",
        "RequestedProcedureCodeSequence[0].CodeMeaning",
        "AccessionNumber",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["C1"]
    (item,) = found.responses[0].RequestedProcedureCodeSequence
    assert item.CodeValue == "CTCHEST" and item.CodeMeaning == "CT chest"
    assert "CodingSchemeDesignator" not in item  # only the keys asked for
    found = findscu(
        server.port,
        f"{SPS}.ScheduledPerformingPhysicianName=STR*",
        f"{SPS}.Modality=CT",
        "AccessionNumber",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["C3"]


def test_issuer_of_patient_id(scp, worklist, tmp_path):
    worklist.add(patient_id="123", issuer="NORTH", accession="N1")
    worklist.add(patient_id="123", issuer="SOUTH", accession="S1")
    server = scp()
    found = findscu(
        server.port,
        "PatientID=123",
        "IssuerOfPatientID=SOUTH",
        "AccessionNumber",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["S1"]
    assert found.responses[0].IssuerOfPatientID == "SOUTH"
    found = findscu(server.port, "PatientID=123", "IssuerOfPatientID", tmp_path=tmp_path)
    assert found.values("IssuerOfPatientID") == ["NORTH", "SOUTH"]


def test_only_configured_statuses_are_served(scp, worklist, tmp_path):
    worklist.add(accession="SCH", status="SCHEDULED")
    worklist.add(accession="STA", status="STARTED")
    worklist.add(accession="CPL", status="COMPLETED")
    worklist.add(accession="HLD", status="HELD")
    default = scp()
    assert findscu(default.port, "AccessionNumber", tmp_path=tmp_path).values(
        "AccessionNumber"
    ) == ["SCH"]
    wider = scp(dicom__worklist_statuses=["SCHEDULED", "STARTED"])
    found = findscu(
        wider.port, "AccessionNumber", f"{SPS}.ScheduledProcedureStepStatus", tmp_path=tmp_path
    )
    assert found.values("AccessionNumber") == ["SCH", "STA"]
    found = findscu(
        wider.port,
        "AccessionNumber",
        f"{SPS}.ScheduledProcedureStepStatus=STARTED",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["STA"]


def test_more_matches_than_allowed_is_refused(scp, worklist, db, tmp_path):
    worklist.add_many([{"accession": f"M{i}"} for i in range(3)])
    server = scp(dicom__max_matches=2)
    found = findscu(server.port, "AccessionNumber", tmp_path=tmp_path)
    assert found.status == "Refused: OutOfResources" and found.responses == []
    found = findscu(server.port, "AccessionNumber=M1", tmp_path=tmp_path)
    assert found.status == "Success" and len(found.responses) == 1
    refused = logged(server, db)[0]
    assert refused.status == 0xA700 and "more than 2" in refused.error


# -- character sets ----------------------------------------------------------------------------


def test_utf8_names_arrive_intact(scp, worklist, tmp_path):
    worklist.add(name="MÜLLER^JÜRGEN", patient_id="P1")
    worklist.add(name="ΔΗΜΗΤΡΊΟΥ^ΕΛΈΝΗ", patient_id="P2")
    worklist.add(name="YAMADA^TARO=山田^太郎=やまだ^たろう", patient_id="P3")
    worklist.add(name="SMITH^JOHN", patient_id="P4")
    server = scp()
    found = findscu(
        server.port,
        "SpecificCharacterSet=ISO_IR 192",
        "PatientName=MÜLLER*",
        "PatientID",
        tmp_path=tmp_path,
    )
    (response,) = found.responses
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == "MÜLLER^JÜRGEN"
    assert "MÜLLER^JÜRGEN".encode() in found.files[0].read_bytes()
    found = findscu(server.port, "PatientName", "PatientID", tmp_path=tmp_path)
    names = {ds.PatientID: ds.PatientName for ds in found.responses}
    assert str(names["P2"]) == "ΔΗΜΗΤΡΊΟΥ^ΕΛΈΝΗ"
    assert names["P3"].ideographic == "山田^太郎" and names["P3"].phonetic == "やまだ^たろう"
    ascii_only = next(ds for ds in found.responses if ds.PatientID == "P4")
    assert "SpecificCharacterSet" not in ascii_only  # plain ASCII needs none


def test_latin1_profile_transliterates(scp, worklist, tmp_path):
    worklist.add(name="DVOŘÁK^ŁUKASZ", patient_id="P1")
    worklist.add(name="YAMADA^TARO=山田^太郎", patient_id="P2")
    server = scp(dicom__profiles=[{"calling_ae": "OLD*", "charset": "ISO_IR 100"}])
    found = findscu(
        server.port,
        "PatientName",
        "PatientID",
        "SpecificCharacterSet",
        aet="OLDUS",
        tmp_path=tmp_path,
    )
    by_id = {
        ds.PatientID: (ds, path) for ds, path in zip(found.responses, found.files, strict=True)
    }
    latin, path = by_id["P1"]
    assert latin.SpecificCharacterSet == "ISO_IR 100"
    assert str(latin.PatientName) == "DVORÁK^LUKASZ"
    assert b"DVOR\xc1K^LUKASZ" in path.read_bytes()  # Á as the one Latin-1 byte
    japanese, _ = by_id["P2"]
    assert str(japanese.PatientName) == "YAMADA^TARO"  # no ideographs a Latin-1 set can't hold
    assert japanese.SpecificCharacterSet == ""  # asked for, and plain ASCII
    # other callers still get UTF-8
    other = findscu(server.port, "PatientName", "PatientID=P1", aet="NEWCT", tmp_path=tmp_path)
    assert str(other.responses[0].PatientName) == "DVOŘÁK^ŁUKASZ"


# -- transfer syntaxes and PDUs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "syntax",
    [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    ],
    ids=["implicit", "explicit", "deflated", "big-endian"],
)
def test_each_transfer_syntax_gets_the_requested_keys(scp, worklist, syntax):
    # responses are written straight from the stored item in little endian syntaxes, and by
    # pydicom in the others or for values it must format itself (the weight, a DS)
    worklist.add(name="DVOŘÁK^JIŘÍ", patient_id="P1", procedure={"PatientWeight": "70.5"})
    worklist.add(name="SMITH^JOHN", patient_id="P2", study="1.2.3.4")
    server = scp()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityWorklistInformationFind, [syntax])
    association = ae.associate("127.0.0.1", server.port, ae_title="MWLBROKER")
    assert association.is_established
    try:
        assert association.accepted_contexts[0].transfer_syntax == [syntax]
        query = identifier(
            SpecificCharacterSet="",
            PatientName="",
            PatientID="",
            PatientWeight="",
            StudyInstanceUID="",
            ScheduledProcedureStepSequence=[
                sps_item(Modality="CT", ScheduledProcedureStepStartDate="")
            ],
        )
        results = find(association, query)
    finally:
        association.release()
    assert [status for status, _ in results] == [0xFF00, 0xFF00, 0x0000]
    by_id = {ds.PatientID: ds for status, ds in results if status == 0xFF00}
    requested = {
        "SpecificCharacterSet",
        "PatientName",
        "PatientID",
        "PatientWeight",
        "StudyInstanceUID",
        "ScheduledProcedureStepSequence",
    }
    for response in by_id.values():
        assert {e.keyword for e in response} == requested
        (step,) = response.ScheduledProcedureStepSequence
        assert step.Modality == "CT" and step.ScheduledProcedureStepStartDate == "20261127"
        assert {e.keyword for e in step} == {"Modality", "ScheduledProcedureStepStartDate"}
    utf8, ascii_only = by_id["P1"], by_id["P2"]
    assert utf8.SpecificCharacterSet == "ISO_IR 192"
    assert str(utf8.PatientName) == "DVOŘÁK^JIŘÍ" and utf8.PatientWeight == 70.5
    assert ascii_only.SpecificCharacterSet == "" and ascii_only.PatientWeight is None
    assert str(ascii_only.PatientName) == "SMITH^JOHN"
    assert ascii_only.StudyInstanceUID == "1.2.3.4"  # odd length: padded, and read back


@pytest.mark.parametrize("max_pdu", [16382, 128])
def test_each_response_leaves_in_as_few_pdus_as_the_peer_allows(scp, worklist, max_pdu):
    worklist.add_many([{"accession": f"PDU{i}", "patient_id": f"P{i}"} for i in range(3)])
    server = scp()
    received: list[P_DATA_TF] = []

    def on_pdu(event: evt.Event) -> None:
        if isinstance(event.pdu, P_DATA_TF):
            received.append(event.pdu)

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityWorklistInformationFind)
    association = ae.associate(
        "127.0.0.1",
        server.port,
        ae_title="MWLBROKER",
        max_pdu=max_pdu,
        evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)],
    )
    assert association.is_established
    try:
        query = identifier(
            AccessionNumber="PDU*",
            PatientID="",
            PatientName="",
            ScheduledProcedureStepSequence=[sps_item(ScheduledStationAETitle="CT1")],
        )
        results = find(association, query)
    finally:
        association.release()
    assert [status for status, _ in results] == [0xFF00] * 3 + [0x0000]
    found = sorted((ds.AccessionNumber, ds.PatientID) for s, ds in results if s == 0xFF00)
    assert found == [("PDU0", "P0"), ("PDU1", "P1"), ("PDU2", "P2")]
    for pdu in received:
        assert len(pdu.encode()) - 6 <= max_pdu  # PS3.8 D.1: the PDV list within the limit
    if max_pdu == 16382:
        # command and data set of each pending response together, then the final status
        assert [len(pdu.presentation_data_value_items) for pdu in received] == [2, 2, 2, 1]
    else:
        assert len(received) > 4


# -- profiles ----------------------------------------------------------------------------------


def test_station_ae_profile_fills_an_empty_station(scp, worklist, db, tmp_path):
    worklist.add(station="CT1", accession="FOR-CT1")
    worklist.add(station="CT2", accession="FOR-CT2")
    worklist.add(station=None, accession="UNASSIGNED")
    server = scp(dicom__profiles=[{"calling_ae": "CT*", "fill_station_ae": True}])
    found = findscu(
        server.port,
        "AccessionNumber",
        f"{SPS}.ScheduledStationAETitle",
        aet="CT1",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["FOR-CT1"]
    # the modality's own station key still wins
    found = findscu(
        server.port,
        "AccessionNumber",
        f"{SPS}.ScheduledStationAETitle=CT2",
        aet="CT1",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["FOR-CT2"]
    # no profile for this caller: everyone's items
    found = findscu(server.port, "AccessionNumber", aet="US1", tmp_path=tmp_path)
    assert found.values("AccessionNumber") == ["FOR-CT1", "FOR-CT2", "UNASSIGNED"]
    first = logged(server, db)[0]
    assert first.profile == "CT*" and "CT1" in first.notes[0]
    assert {
        "key": "ScheduledProcedureStepSequence>ScheduledStationAETitle",
        "match": "single",
        "value": "CT1",
        "source": "profile CT*",
    } in first.conditions


def test_date_window_profile_applies_when_no_date_is_asked(scp, worklist, tmp_path):
    today = date.today()
    for offset in (-3, 0, 1, 5):
        day = (today + timedelta(days=offset)).strftime("%Y%m%d")
        worklist.add(start=day + "120000", accession=f"D{offset:+d}")
    server = scp(dicom__profiles=[{"calling_ae": "*", "date_window_days": 1}])
    found = findscu(server.port, "AccessionNumber", tmp_path=tmp_path)
    assert found.values("AccessionNumber") == ["D+0", "D+1"]
    far = (today + timedelta(days=5)).strftime("%Y%m%d")
    found = findscu(
        server.port,
        "AccessionNumber",
        f"{SPS}.ScheduledProcedureStepStartDate={far}",
        tmp_path=tmp_path,
    )
    assert found.values("AccessionNumber") == ["D+5"]


# -- associations, verification, cancel, failures ----------------------------------------------


def test_verification_with_echoscu(scp):
    server = scp()
    done = subprocess.run(
        ["echoscu", "-v", "-aec", "MWLBROKER", "127.0.0.1", str(server.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "Received Echo Response (Success)" in done.stdout + done.stderr


def test_calling_ae_allow_list_and_called_ae_check(scp, worklist, tmp_path):
    worklist.add()
    server = scp(dicom__allowed_calling_aets=["CT1", "MR1"], dicom__require_called_aet=True)
    refused = findscu(server.port, "PatientName", aet="INTRUDER", tmp_path=tmp_path)
    assert refused.responses == []
    assert re.search(r"Rejected Permanent.*Service User", refused.output, re.S)
    assert "Calling AE Title Not Recognized" in refused.output
    wrong_called = findscu(server.port, "PatientName", aet="CT1", aec="PACS", tmp_path=tmp_path)
    assert "Called AE Title Not Recognized" in wrong_called.output
    allowed = findscu(server.port, "PatientName", aet="CT1", tmp_path=tmp_path)
    assert allowed.status == "Success" and len(allowed.responses) == 1


def test_cancel_stops_the_responses_and_the_association_stays_usable(scp, worklist, db):
    count = 1500
    worklist.add_many([{"accession": f"BULK{i:05d}", "patient_id": f"B{i}"} for i in range(count)])
    worklist.add(accession="AFTER", station="MR1", modality="MR")
    server = scp(dicom__max_matches=5000)
    association = associate(server.port)
    try:
        query = identifier(AccessionNumber="", PatientName="")
        statuses = []
        for status, _found in association.send_c_find(
            query, ModalityWorklistInformationFind, msg_id=7
        ):
            statuses.append(status.Status)
            if len(statuses) == 1:
                assert status.Status == 0xFF00
                association.send_c_cancel(7, query_model=ModalityWorklistInformationFind)
        assert statuses[-1] == 0xFE00  # Cancel
        assert statuses.count(0xFF00) < count
        again = find(association, identifier(AccessionNumber="AFTER"), msg_id=8)
        assert [s for s, _ in again] == [0xFF00, 0x0000]
        assert again[0][1].AccessionNumber == "AFTER"
    finally:
        association.release()
    cancelled, after = logged(server, db)
    assert cancelled.status == 0xFE00 and cancelled.matches == count + 1
    assert cancelled.returned < count and after.returned == 1


def test_a_malformed_identifier_fails_and_the_association_stays_usable(scp, worklist, db):
    worklist.add(accession="OK1")
    server = scp()
    association = associate(server.port)
    try:
        step = Dataset()  # a value pydicom would refuse to build, as a modality may send it
        step[0x00400002] = RawDataElement(Tag(0x00400002), "DA", 10, b"2026-11-27", 0, True, True)
        bad_date = identifier(ScheduledProcedureStepSequence=[step])
        ((status, failure),) = find(association, bad_date, msg_id=1)
        assert status == 0xC000  # unable to process
        assert "not a date" in failure.ErrorComment
        assert failure.OffendingElement == Tag(0x00400002)

        two_items = identifier(
            ScheduledProcedureStepSequence=[sps_item(Modality="CT"), sps_item(Modality="MR")]
        )
        ((status, failure),) = find(association, two_items, msg_id=2)
        assert status == 0xA900  # identifier does not match SOP class
        assert failure.ErrorComment

        good = find(association, identifier(AccessionNumber="OK1"), msg_id=5)
        assert [s for s, _ in good] == [0xFF00, 0x0000]
    finally:
        association.release()
    records = logged(server, db)
    assert [r.status for r in records] == [0xC000, 0xA900, 0x0000]
    assert records[0].identifier["00400100"]["Value"][0]["00400002"]["Value"] == ["2026-11-27"]
    assert "not a date" in records[0].error


def test_bytes_invalid_in_the_character_set_and_uid_wildcards_are_refused(scp, worklist, tmp_path):
    worklist.add(name="MÜLLER^HANS")
    server = scp()
    out = tmp_path / "bad"
    out.mkdir()
    done = subprocess.run(
        [
            b"findscu",
            b"-v",
            b"-W",
            b"-aec",
            b"MWLBROKER",
            b"-k",
            b"SpecificCharacterSet=ISO_IR 192",
            b"-k",
            b"PatientName=M\xdcLLER*",  # Latin-1 bytes declared as UTF-8
            b"127.0.0.1",
            str(server.port).encode(),
        ],
        capture_output=True,
        timeout=60,
        env=dcmtk_env(),
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert "Received Final Find Response (Failed: UnableToProcess)" in output
    # a wild card where only a UID or a list of UIDs may stand
    found = findscu(server.port, "StudyInstanceUID=1.2.*", tmp_path=tmp_path)
    assert found.status == "Failed: UnableToProcess"


def test_every_query_is_recorded(scp, worklist, db, tmp_path):
    step_id = worklist.add(accession="LOG1")
    worklist.add(accession="LOG2")
    server = scp()
    findscu(server.port, "AccessionNumber=LOG1", "PatientName", aet="CT7", tmp_path=tmp_path)
    (record,) = logged(server, db)
    assert record.calling_ae == "CT7" and record.called_ae == "MWLBROKER"
    assert record.peer.startswith("127.0.0.1:")
    assert record.identifier["00080050"] == {"vr": "SH", "Value": ["LOG1"]}
    assert record.identifier["00100010"] == {"vr": "PN"}
    assert record.conditions == [{"key": "AccessionNumber", "match": "single", "value": "LOG1"}]
    assert record.status == 0 and record.matches == 1 and record.returned == 1
    assert record.step_ids == [step_id] and record.candidates >= 1
    assert record.milliseconds > 0 and 0 < record.first_response_ms <= record.milliseconds
    assert server.worklist.purge_log(datetime.now(UTC) + timedelta(days=31)) == 1
