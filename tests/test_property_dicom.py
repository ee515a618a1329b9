"""Hostile C-FIND identifiers and MPPS data sets (hypothesis) against a real ``mwlbroker serve``.

Random keys from the Modality Worklist key set and beyond, random VRs and values (wildcards,
ranges, sequences, bytes not valid in any character set, numbers where text belongs), random
N-CREATE attribute lists and N-SET modification lists: every request gets a DIMSE status the
standard allows for that service, the association stays up, and a normal worklist query on it
afterwards still finds the order it should. The broker runs in its own process so that its
pydicom settings are the production ones, not the lenient ones this client needs to encode junk.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import ModalityPerformedProcedureStep, ModalityWorklistInformationFind

from tests.support.dicom_peers import ended, in_progress
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import ServeProcess, start_serve
from tests.support.properties import examples

# PS3.4 K.4.1.1.4 (C-FIND of Basic Worklist Management) and PS3.7 C.4.2: pending, success, cancel,
# refused out of resources, identifier does not match SOP class, unable to process (Cxxx).
FIND_PENDING = {0xFF00, 0xFF01}


def valid_find_final(status: int) -> bool:
    return status in {0x0000, 0xFE00, 0xA700, 0xA900} or 0xC000 <= status <= 0xCFFF


# PS3.7 Annex C: the statuses of N-CREATE (C.4.x) and N-SET, success, warnings and failures.
N_STATUSES = {
    0x0000, 0x0001, 0x0107, 0x0116,  # success, warnings
    0x0105, 0x0106, 0x0110, 0x0111, 0x0112, 0x0117, 0x0118, 0x0119, 0x0120, 0x0121,
    0x0122, 0x0124, 0x0210, 0x0211, 0x0212, 0x0213,
}  # fmt: skip

TEXT_VRS = ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
            "UI", "UR", "UT"]  # fmt: skip
NUMBER_VRS = ["US", "UL", "SS", "SL", "FL", "FD"]
BYTES_VRS = ["OB", "OW", "UN"]

TOP_KEYS = [
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
    "PatientSex", "PatientWeight", "AccessionNumber", "RequestedProcedureID", "StudyInstanceUID",
    "RequestedProcedureDescription", "RequestedProcedurePriority", "ReferringPhysicianName",
    "AdmissionID", "CurrentPatientLocation", "PatientComments", "MedicalAlerts", "Allergies",
    "ReferencedStudySequence", "ReferencedPatientSequence", "RequestedProcedureCodeSequence",
    "OtherPatientIDsSequence", "InstitutionName", "StudyDate", "QueryRetrieveLevel",
]  # fmt: skip
STEP_KEYS = [
    "Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepID", "ScheduledStationName",
    "ScheduledProcedureStepLocation", "ScheduledProcedureStepStatus", "PreMedication",
    "ScheduledProtocolCodeSequence", "RequestedContrastAgent",
]  # fmt: skip
CODE_KEYS = ["CodeValue", "CodingSchemeDesignator", "CodeMeaning", "CodingSchemeVersion"]

text_value = st.one_of(
    st.sampled_from(
        [
            "",
            "*",
            "?",
            "*^*",
            "DOE*",
            "D?E",
            "CT",
            "MR\\CT",
            "20261127",
            "20261127-20261128",
            "-20261127",
            "20261127-",
            "-",
            "143000-",
            "1430-1500",
            "1.2.3\\1.2.4",
            "  ",
            "\\",
            "ISO_IR 100",
            "ISO_IR 192",
            "ISO 2022 IR 87",
            "\x1b$B",
            "=",
            "^^^^^",
            "x" * 300,
        ]
    ),
    st.text(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
    st.binary(max_size=40),
)
number_value = st.one_of(st.integers(-(2**31), 2**32 - 1), st.floats(allow_nan=True))


def made(tag: int, vr: str, value: object) -> DataElement:
    """The element, or the key alone (no value) where pydicom cannot hold the value at all."""
    try:
        return DataElement(tag, vr, value)
    except Exception:  # pydicom converts bytes of DS/IS/AT and refuses some values outright
        return DataElement(tag, vr, [] if vr == "SQ" else None)


@st.composite
def element(draw: st.DrawFn, keywords: list[str], depth: int) -> DataElement:
    """One key: its own VR most of the time, sometimes another; a value to match, or junk."""
    keyword = draw(st.sampled_from(keywords))
    tag = tag_for_keyword(keyword)
    assert tag is not None
    vr = dictionary_VR(tag).split(" or ")[0]
    if draw(st.integers(0, 9)) == 0:
        vr = draw(st.sampled_from([*TEXT_VRS, *NUMBER_VRS, *BYTES_VRS, "SQ"]))
    if vr == "SQ":
        if depth > 1:
            return DataElement(tag, "SQ", [])
        items = draw(st.lists(dataset(CODE_KEYS + STEP_KEYS, depth + 1), max_size=2))
        return made(tag, "SQ", items)
    if vr in NUMBER_VRS:
        value = draw(st.one_of(st.none(), number_value))
        if vr in ("US", "UL") and value is not None:
            finite = math.isfinite(value)
            value = abs(int(value)) % (2**16 if vr == "US" else 2**32) if finite else 0
        elif vr in ("SS", "SL") and value is not None:
            value = int(value) % 2**15 if math.isfinite(value) and abs(value) < 1e18 else 0
        return made(tag, vr, value)
    if vr in BYTES_VRS:
        return made(tag, vr, draw(st.binary(max_size=30)))
    return made(tag, vr, draw(text_value))


@st.composite
def dataset(draw: st.DrawFn, keywords: list[str], depth: int = 0) -> Dataset:
    ds = Dataset()
    for item in draw(st.lists(element(keywords, depth), max_size=8)):
        ds[item.tag] = item
    return ds


@st.composite
def identifier(draw: st.DrawFn) -> Dataset:
    ds = draw(dataset(TOP_KEYS, 0))
    if draw(st.booleans()):
        steps = draw(st.lists(dataset(STEP_KEYS, 1), max_size=2))
        ds.ScheduledProcedureStepSequence = steps
    if draw(st.integers(0, 4)) == 0:  # a private or unknown element
        ds.add_new(draw(st.sampled_from([0x00091010, 0x00990010, 0x7FE00010])), "OB", b"\x00\x01")
    return ds


# -- the broker in its own process, with orders to find ---------------------------------------


@pytest.fixture
def lenient_pydicom(monkeypatch) -> None:
    """Let this client encode what a careless or hostile modality would send."""
    monkeypatch.setattr(pydicom_config.settings, "writing_validation_mode", pydicom_config.IGNORE)
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.IGNORE)


@pytest.fixture
def serve(database_url: str, tmp_path: Path, lenient_pydicom) -> Iterator[ServeProcess]:
    served = start_serve(database_url, cwd=tmp_path, MWLBROKER_DICOM_DIMSE_TIMEOUT="30")
    try:
        with Peer(served.hl7_port) as peer:
            for number, modality in enumerate(["CT", "MR", "CT", "US"]):
                control = f"SEED{number}"
                message = orm(control, patient=f"P{control}").replace(
                    b"|||CT\r", f"|||{modality}\r".encode()
                )
                assert ack_fields(peer.send(message))["MSA"][1] == "AA"
        yield served
    finally:
        if served.process.poll() is None:
            served.terminate()
        served.close()
    exceptions = [r for r in served.log if r.get("exception")]
    print(f"\n{len(exceptions)} log record(s) with a traceback")
    for record in exceptions[:5]:
        print(record.get("message"), record["exception"].splitlines()[-1])


def associate(port: int) -> object:
    ae = AE(ae_title="FUZZ1")
    ae.dimse_timeout = 15
    ae.acse_timeout = 15
    ae.network_timeout = 15
    # Explicit VR only, so that a wrong VR travels as sent (implicit VR would hide it).
    ae.add_requested_context(ModalityWorklistInformationFind, [ExplicitVRLittleEndian])
    ae.add_requested_context(
        ModalityPerformedProcedureStep, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    )
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert assoc.is_established
    return assoc


def normal_query_finds_the_seed(assoc) -> None:
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    query.AccessionNumber = "APLSEED0"
    step = Dataset()
    step.Modality = ""
    step.ScheduledProcedureStepID = ""
    query.ScheduledProcedureStepSequence = [step]
    responses = list(assoc.send_c_find(query, ModalityWorklistInformationFind))
    statuses = [status.Status for status, _ in responses]
    assert statuses == [0xFF00, 0x0000], statuses
    assert responses[0][1].PatientID == "PSEED0"


def encodable(ds: Dataset) -> None:
    """Reject what no modality can send: what pydicom cannot write, and an empty data set
    (pynetdicom then sends the command alone, announcing a data set that never comes, and the
    broker rightly waits for it until its DIMSE timeout)."""
    if not encode(ds, False, True):
        reject()


def answered(status: Dataset | None) -> bool:
    """pynetdicom gives an empty status data set when no response came (timeout, abort)."""
    return status is not None and "Status" in status


@pytest.fixture(autouse=True)
def quiet_client() -> Iterator[None]:
    """pydicom warns about the junk this client writes on purpose; the broker is not affected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


_uids = itertools.count(1)


@examples(30, against_broker=True)
@given(identifiers=st.lists(identifier(), min_size=1, max_size=3))
def test_property_any_identifier_gets_a_valid_c_find_status(serve, identifiers):
    for query in identifiers:
        encodable(query)
    assoc = associate(serve.dicom_port)
    try:
        for query in identifiers:
            statuses = [
                status for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
            ]
            assert statuses, "no response at all"
            assert all(answered(status) for status in statuses), "no response: dropped or hung"
            codes = [int(status.Status) for status in statuses]
            assert all(code in FIND_PENDING for code in codes[:-1]), [hex(c) for c in codes]
            assert valid_find_final(codes[-1]), [hex(c) for c in codes]
            assert assoc.is_established
        normal_query_finds_the_seed(assoc)
    finally:
        assoc.release()


MPPS_TOP = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PerformedProcedureStepID",
    "PerformedStationAETitle", "PerformedStationName", "PerformedLocation",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus", "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "Modality", "StudyID",
    "PerformedSeriesSequence", "ScheduledStepAttributesSequence", "ProcedureCodeSequence",
    "SpecificCharacterSet", "ReferencedPatientSequence", "PerformedProtocolCodeSequence",
    "StudyInstanceUID", "AccessionNumber",
]  # fmt: skip
step_status = st.sampled_from(
    ["IN PROGRESS", "COMPLETED", "DISCONTINUED", "", "in progress", "DONE"]
)


@st.composite
def n_create(draw: st.DrawFn) -> Dataset:
    """A real N-CREATE attribute list with some attributes changed, removed or added."""
    ds = in_progress(None, study_uid=generate_uid())
    for item in draw(st.lists(element(MPPS_TOP, 0), max_size=4)):
        ds[item.tag] = item
    for keyword in draw(st.lists(st.sampled_from(MPPS_TOP), max_size=3)):
        if keyword in ds:
            del ds[keyword]
    if draw(st.booleans()):
        # A random element above may hold this tag with another VR: replace it, not convert it.
        ds.pop(0x00400252, None)
        ds.PerformedProcedureStepStatus = draw(step_status)
    return ds


@st.composite
def n_set(draw: st.DrawFn) -> Dataset:
    ds = (
        ended(draw(st.sampled_from(["COMPLETED", "DISCONTINUED"])))
        if draw(st.booleans())
        else Dataset()
    )
    for item in draw(st.lists(element(MPPS_TOP, 0), max_size=4)):
        ds[item.tag] = item
    if draw(st.booleans()):
        ds.pop(0x00400252, None)  # as in n_create: replace a random element of this tag
        ds.PerformedProcedureStepStatus = draw(step_status)
    return ds


uid_choice = st.one_of(
    st.just("new"), st.just("none"), st.sampled_from(["1.2.3", "1.2.840.10008.999." + "9" * 40])
)


@examples(30, against_broker=True)
@given(
    creates=st.lists(
        st.tuples(uid_choice, n_create(), st.lists(n_set(), max_size=2)), min_size=1, max_size=3
    )
)
def test_property_any_mpps_gets_a_valid_n_status(serve, creates):
    for _, created, sets in creates:
        encodable(created)
        for modification in sets:
            encodable(modification)
    assoc = associate(serve.dicom_port)
    try:
        for choice, created, sets in creates:
            uid = {"new": f"1.2.826.0.1.3680043.10.1{next(_uids)}.{generate_uid()[-8:]}",
                   "none": None}.get(choice, choice)  # fmt: skip
            status, reply = assoc.send_n_create(created, ModalityPerformedProcedureStep, uid)
            assert answered(status), "no response to N-CREATE: dropped or hung"
            assert int(status.Status) in N_STATUSES, hex(status.Status)
            if uid is None and reply is not None and "AffectedSOPInstanceUID" in status:
                uid = str(status.AffectedSOPInstanceUID)
            for modification in sets:
                target = uid or generate_uid()
                status, _ = assoc.send_n_set(modification, ModalityPerformedProcedureStep, target)
                assert answered(status), "no response to N-SET: dropped or hung"
                assert int(status.Status) in N_STATUSES, hex(status.Status)
            assert assoc.is_established
        normal_query_finds_the_seed(assoc)
    finally:
        assoc.release()
