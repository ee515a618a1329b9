"""The IHE Table B-1 attributes, from an order over MLLP to what a modality's C-FIND returns.

The vendor-shaped samples 32 (ORM^O01 v2.3.1) and 33 (OMI^O23 v2.5.1) carry every attribute;
each test sends messages to the real broker (SQLite and PostgreSQL) and asks for the attributes
as a modality does, with pynetdicom return keys (sequences included) and with DCMTK findscu.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests.support.dicom_peers import findscu
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.prerequisites import require_tools
from tests.support.samples import SAMPLES

ORM_SAMPLE = SAMPLES / "32_orm_o01_table_b1_v231.hl7"
OMI_SAMPLE = SAMPLES / "33_omi_o23_table_b1_v251.hl7"

# The top-level return keys of Table B-1 (empty: universal matching, PS3.4 C.2.2.2.3).
TOP_KEYS = (
    "PatientID",
    "AccessionNumber",
    "PatientWeight",
    "PatientSize",
    "PregnancyStatus",
    "Allergies",
    "MedicalAlerts",
    "RequestingService",
    "AdmissionID",
    "ReasonForTheRequestedProcedure",
    "PatientTransportArrangements",
)
TOP_SEQUENCES = (
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
    "RequestingServiceCodeSequence",
    "IssuerOfAdmissionIDSequence",
    "ReasonForRequestedProcedureCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "ReferencedStudySequence",
    "RequestedProcedureCodeSequence",
)
STEP_KEYS = (
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ScheduledPerformingPhysicianName",
)


def wire(path: Path) -> bytes:
    return path.read_bytes().replace(b"\n", b"\r")


def send(broker, *messages: bytes) -> list[dict[str, list[str]]]:
    with Peer(broker.hl7.port) as peer:
        return [ack_fields(peer.send(message)) for message in messages]


def table_b1_query(**matching: object) -> Dataset:
    """Every Table B-1 attribute as a return key; ``matching`` sets values or replaces keys."""
    query = Dataset()
    for keyword in TOP_KEYS:
        setattr(query, keyword, None)  # zero length, whatever the VR
    for keyword in TOP_SEQUENCES:
        setattr(query, keyword, [])
    step = Dataset()
    for keyword in STEP_KEYS:
        setattr(step, keyword, "")
    step.ScheduledProtocolCodeSequence = []
    query.ScheduledProcedureStepSequence = [step]
    for keyword, value in matching.items():
        setattr(query, keyword, value)
    return query


def find(broker, query: Dataset) -> list[Dataset]:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", broker.dicom.port, ae_title="MWLBROKER")
    assert assoc.is_established
    found = []
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None, "no C-FIND response"
            if status.Status == 0xFF00:
                found.append(identifier)
            else:
                assert status.Status == 0x0000, hex(status.Status)
    finally:
        assoc.release()
    return found


def code(item: Dataset) -> tuple[str, str, str]:
    return (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)


def test_orm_v231_attributes_come_back_to_a_modality(broker):
    [ack] = send(broker, wire(ORM_SAMPLE))
    assert ack["MSA"][1:3] == ["AA", "RIS0000032"]

    [item] = find(broker, table_b1_query(AccessionNumber="ACC20261204032"))

    # OBX 29463-7 154.3 [lb_av] and 8302-2 65 [in_i]: converted to kg and metres (DS)
    assert float(item.PatientWeight) == pytest.approx(69.99)
    assert float(item.PatientSize) == pytest.approx(1.651)
    assert item.PregnancyStatus == 3  # PV1-15 B6: definitely pregnant
    assert list(item.Allergies) == ["IODINATED CONTRAST MEDIA", "PENICILLIN G", "LATEX"]  # AL1-3
    assert item.MedicalAlerts == "G2P1, 22 weeks, routine anatomy scan"  # OBR-13
    assert item.RequestingService == "Women's Health Center"  # ORC-17.2
    assert [code(c) for c in item.RequestingServiceCodeSequence] == [
        ("WHC", "99ORG", "Women's Health Center")
    ]
    assert item.ReasonForTheRequestedProcedure == "Supervision of high risk pregnancy"
    assert [code(c) for c in item.ReasonForRequestedProcedureCodeSequence] == [
        ("O09.892", "I10", "Supervision of high risk pregnancy")  # OBR-31, ICD-10
    ]
    assert item.PatientTransportArrangements == "Wheelchair"  # OBR-30 WHLC
    assert item.AdmissionID == "V20261202005"
    [admission_issuer] = item.IssuerOfAdmissionIDSequence  # PV1-19.4 HOSPITAL&OID&ISO
    assert admission_issuer.LocalNamespaceEntityID == "HOSPITAL"
    assert admission_issuer.UniversalEntityID == "1.2.840.113619.6.197"
    assert admission_issuer.UniversalEntityIDType == "ISO"
    [accession_issuer] = item.IssuerOfAccessionNumberSequence  # OBR-18 as an EI
    assert accession_issuer.UniversalEntityID == "1.2.840.113619.6.197.2"
    assert item.AccessionNumber == "ACC20261204032"  # still only OBR-18.1
    [study] = item.ReferencedStudySequence
    assert study.ReferencedSOPClassUID == "1.2.840.10008.3.1.2.3.1"
    assert study.ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.10.543.20261204.32"  # ZDS-1

    [qualifiers] = item.IssuerOfPatientIDQualifiersSequence
    assert qualifiers.UniversalEntityID == "1.2.840.113619.6.197"  # PID-3.4.2
    assert qualifiers.UniversalEntityIDType == "ISO"  # PID-3.4.3
    assert qualifiers.IdentifierTypeCode == "MR"  # PID-3.5
    [facility] = qualifiers.AssigningFacilitySequence  # PID-3.6
    assert facility.LocalNamespaceEntityID == "RADIOLOGY"
    assert facility.UniversalEntityID == "1.2.840.113619.6.197.1"
    others = item.OtherPatientIDsSequence  # PID-3 repetitions 2 and 3
    assert [(o.PatientID, o.IssuerOfPatientID, o.TypeOfPatientID) for o in others] == [
        ("998877665", "SSA", "TEXT"),
        ("E4455667", "EPIC", "TEXT"),
    ]
    assert others[0].IssuerOfPatientIDQualifiersSequence[0].IdentifierTypeCode == "SS"
    assert item.PatientID == "PID320032"  # the first repetition stays the Patient ID

    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "OB second trimester survey"  # OBR-4.5
    assert [code(c) for c in step.ScheduledProtocolCodeSequence] == [
        ("USOB2", "99HOSPPROT", "OB second trimester survey")  # OBR-4.4-6
    ]
    assert str(step.ScheduledPerformingPhysicianName) == "LEE^SUSAN^K"  # OBR-34 T123&LEE&SUSAN&K
    assert [code(c) for c in item.RequestedProcedureCodeSequence] == [
        ("76805", "C4", "US OB >14 WKS SINGLE FETUS")  # OBR-44
    ]


def test_omi_v251_attributes_come_back_to_a_modality(broker):
    [ack] = send(broker, wire(OMI_SAMPLE))
    assert ack["MSA"][1:3] == ["AA", "RIS0000033"]

    [item] = find(broker, table_b1_query(AccessionNumber="ACC20261205033"))

    assert float(item.PatientWeight) == 92  # kg as sent
    assert float(item.PatientSize) == pytest.approx(1.68)  # 168 cm
    assert item.PregnancyStatus == 1  # OBX 82810-3 LA26683-5 Not pregnant
    assert list(item.Allergies) == ["Contrast media", "Peanut"]  # AL1 before the ORC
    assert item.PatientTransportArrangements == "Portable - the device goes to the patient"
    assert item.RequestingService == "Cardiology"
    assert item.ReasonForTheRequestedProcedure == "Chest pain, unspecified"
    [accession_issuer] = item.IssuerOfAccessionNumberSequence  # IPC-1.2 / .3 / .4
    assert (
        accession_issuer.LocalNamespaceEntityID,
        accession_issuer.UniversalEntityID,
        accession_issuer.UniversalEntityIDType,
    ) == ("HOSPITAL", "1.2.840.113619.6.197.2", "ISO")
    [study] = item.ReferencedStudySequence
    assert study.ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.10.543.20261205.33"  # IPC-3
    [other] = item.OtherPatientIDsSequence
    assert (other.PatientID, other.IssuerOfPatientID) == ("7755331", "NHS")
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "Cardiac CTA gated"  # IPC-6.2
    assert [code(c) for c in step.ScheduledProtocolCodeSequence] == [
        ("CTCA_GATED", "99HOSPPROT", "Cardiac CTA gated")
    ]
    assert str(step.ScheduledPerformingPhysicianName) == "Nowak^Piotr"  # OBR-34.1 (NDL)


def test_sequence_keys_return_the_sub_keys_asked_for_and_match_inside_items(broker):
    send(broker, wire(ORM_SAMPLE), wire(OMI_SAMPLE))
    # A sequence key with one item of return keys gives each stored item with those keys only.
    other = Dataset()
    other.PatientID = ""
    query = Dataset()
    query.PatientID = ""
    query.OtherPatientIDsSequence = [other]
    found = {ds.PatientID: ds for ds in find(broker, query)}
    assert sorted(found) == ["PID320032", "PID330033"]
    assert [o.PatientID for o in found["PID320032"].OtherPatientIDsSequence] == [
        "998877665",
        "E4455667",
    ]
    assert "IssuerOfPatientID" not in found["PID320032"].OtherPatientIDsSequence[0]
    # PS3.4 C.2.2.2.6: a value inside the item matches some item of the stored sequence.
    other.PatientID = "7755331"
    query.OtherPatientIDsSequence = [other]
    assert [ds.PatientID for ds in find(broker, query)] == ["PID330033"]
    other.PatientID = "NOBODY"
    query.OtherPatientIDsSequence = [other]
    assert find(broker, query) == []


def test_findscu_gets_the_attributes(broker, tmp_path):
    require_tools("findscu")
    send(broker, wire(ORM_SAMPLE))
    found = findscu(
        broker.dicom.port,
        "AccessionNumber=ACC20261204032",
        "PatientWeight",
        "PatientSize",
        "PregnancyStatus",
        "Allergies",
        "PatientTransportArrangements",
        "OtherPatientIDsSequence[0].PatientID",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
        "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName",
        tmp_path=tmp_path,
    )
    assert found.status == "Success", found.output
    [item] = found.responses
    assert str(item.PatientWeight) == "69.99"
    assert str(item.PatientSize) == "1.651"
    assert item.PregnancyStatus == 3
    assert list(item.Allergies) == ["IODINATED CONTRAST MEDIA", "PENICILLIN G", "LATEX"]
    assert item.PatientTransportArrangements == "Wheelchair"
    assert [o.PatientID for o in item.OtherPatientIDsSequence] == ["998877665", "E4455667"]
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "OB second trimester survey"
    assert str(step.ScheduledPerformingPhysicianName) == "LEE^SUSAN^K"


MSH = "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261206101500||{type}|{id}|P|{version}"


def test_an_order_without_the_optional_segments_is_accepted_and_leaves_them_empty(broker):
    # No AL1, no OBX, no ZDS, no PV1-19, ORC-17, OBR-13/30/31/34; one PID-3 repetition.
    plain = hl7(
        MSH.format(type="ORM^O01", id="PLAIN1", version="2.3.1"),
        "PID|1||PLAIN01^^^HOSPITAL||PLAIN^PAT||19700101|F",
        "PV1|1|O",
        "ORC|NW|PLPLAIN1|||SC||^^^20261210090000^^R",
        "|".join(["OBR", "1", "PLPLAIN1", "", "XR01^XR CHEST^L", *[""] * 13, "ACCPLAIN1"])
        + "|RPPLAIN1|SPSPLAIN1||||DX",
    )
    [ack] = send(broker, plain)
    assert ack["MSA"][1:3] == ["AA", "PLAIN1"]
    [item] = find(broker, table_b1_query(AccessionNumber="ACCPLAIN1"))
    for keyword in TOP_KEYS[2:]:  # asked for, returned, empty (PS3.4 K.2.2.1.2)
        assert keyword in item and item[keyword].value in ("", None), keyword
    for keyword in TOP_SEQUENCES:
        if keyword == "RequestedProcedureCodeSequence":
            continue  # OBR-4 is there
        assert keyword in item and len(item[keyword].value) == 0, keyword
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "XR CHEST"  # OBR-4.2 without OBR-4.5
    assert len(step.ScheduledProtocolCodeSequence) == 0  # no alternate code in OBR-4
    assert step.ScheduledPerformingPhysicianName in ("", None)


def test_omg_order_gets_the_attributes_as_orm(broker):
    omg = hl7(
        MSH.format(type="OMG^O19^OMG_O19", id="OMGB1", version="2.5.1"),
        "PID|1||PIDOMG1^^^HOSPITAL^MR~5550001^^^NHS^NH||HALL^ADA||19850101|F",
        "PV1|1|O|US^ROOM3^^HOSPITAL||||||||||||B6",
        "AL1|1|DA|^Iodine contrast",
        "ORC|NW|PLOMGB1^RIS|FLOMGB1^RIS||SC||||20261206101500|||||||||RAD^Radiology^L",
        "TQ1|1||||||20261208093000||R",
        "OBR|1|PLOMGB1^RIS|FLOMGB1^RIS|US0201^US pelvis^L^USPELV^Pelvis transabdominal^99PROT"
        "|||||||||Pelvic pain|||||ACCOMGB1|RPOMGB1|SPSOMGB1||||US||||||CART"
        "|R10.2^Pelvic and perineal pain^I10|||T9&OSEI&KOFI",
        "OBX|1|NM|^BODY WEIGHT||130|lbs|||||F",  # IHE's v2.3.1 way of naming it, in pounds
    )
    [ack] = send(broker, omg)
    assert ack["MSA"][1:3] == ["AA", "OMGB1"]
    [item] = find(broker, table_b1_query(AccessionNumber="ACCOMGB1"))
    assert float(item.PatientWeight) == pytest.approx(58.97)  # 130 lb
    assert item.PregnancyStatus == 3
    assert item.Allergies == "Iodine contrast"  # one AL1, AL1-3.2 with no code
    assert item.PatientTransportArrangements == "Cart or gurney"
    assert item.ReasonForTheRequestedProcedure == "Pelvic and perineal pain"
    assert item.MedicalAlerts == "Pelvic pain"
    [other] = item.OtherPatientIDsSequence
    assert other.PatientID == "5550001"
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "Pelvis transabdominal"
    assert [code(c) for c in step.ScheduledProtocolCodeSequence] == [
        ("USPELV", "99PROT", "Pelvis transabdominal")
    ]
    assert str(step.ScheduledPerformingPhysicianName) == "OSEI^KOFI"


def test_a_weight_in_unknown_units_is_answered_ae_and_nothing_is_scheduled(broker):
    text = OMI_SAMPLE.read_text(encoding="utf-8").replace(
        "||92|kg^kilogram^UCUM|", "||14|st^stone^L|"
    )
    [ack] = send(broker, text.replace("\n", "\r").encode("utf-8"))
    assert ack["MSA"][1] == "AE"
    assert "PatientWeight" in ack["MSA"][3] and "'st'" in ack["MSA"][3]
    assert ack["ERR"][2].startswith("OBX")  # ERR-2 location: the segment the value came from
    assert find(broker, table_b1_query(AccessionNumber="ACC20261205033")) == []
    # The service still answers, and the corrected message is taken.
    [ack] = send(broker, wire(OMI_SAMPLE).replace(b"RIS0000033", b"RIS0000034"))
    assert ack["MSA"][1] == "AA"
    [item] = find(broker, table_b1_query(AccessionNumber="ACC20261205033"))
    assert float(item.PatientWeight) == 92


def test_an_adt_update_with_a_new_weight_reaches_the_worklist_item(broker):
    send(broker, wire(ORM_SAMPLE))
    update = hl7(
        MSH.format(type="ADT^A08", id="A08WEIGHT", version="2.3.1"),
        "EVN|A08|20261206101500",
        "PID|1||PID320032^^^HOSPITAL&1.2.840.113619.6.197&ISO^MR||OKONKWO^ADAEZE^N^^MS||19880317|F",
        "PV1|1|O",
        "OBX|1|NM|29463-7^Body weight^LN||71.5|kg|||||F",
    )
    [ack] = send(broker, update)
    assert ack["MSA"][1:3] == ["AA", "A08WEIGHT"]
    [item] = find(broker, table_b1_query(AccessionNumber="ACC20261204032"))
    assert float(item.PatientWeight) == pytest.approx(71.5)
    assert float(item.PatientSize) == pytest.approx(1.651)  # not in the A08: kept
    assert list(item.Allergies) == ["IODINATED CONTRAST MEDIA", "PENICILLIN G", "LATEX"]


def test_the_numeric_attributes_can_be_matching_keys(broker):
    send(broker, wire(ORM_SAMPLE), wire(OMI_SAMPLE))
    query = Dataset()
    query.PatientID = ""
    query.PregnancyStatus = 3  # US: single value matching on the stored number
    assert [ds.PatientID for ds in find(broker, query)] == ["PID320032"]
    query = Dataset()
    query.PatientID = ""
    query.PatientWeight = "92"  # DS
    assert [ds.PatientID for ds in find(broker, query)] == ["PID330033"]


def test_omg_sample_without_zds_returns_an_empty_referenced_study_sequence(broker):
    [ack] = send(broker, wire(SAMPLES / "34_omg_o19_table_b1_v251.hl7"))
    assert ack["MSA"][1:3] == ["AA", "RIS0000034"]
    query = table_b1_query(AccessionNumber="ACC20261207034")
    query.StudyInstanceUID = ""
    [item] = find(broker, query)
    assert item.StudyInstanceUID.startswith("2.25.")  # generated: the order has no ZDS
    assert "ReferencedStudySequence" in item and len(item.ReferencedStudySequence) == 0
    assert item.PregnancyStatus == 2  # OBX 11449-6, SNOMED CT 102874004 possible pregnancy
    assert float(item.PatientWeight) == pytest.approx(58.97)  # ^BODY WEIGHT 130 lbs
    assert float(item.PatientSize) == pytest.approx(1.63)  # ^BODY HEIGHT 163 cm
    step = item.ScheduledProcedureStepSequence[0]
    assert str(step.ScheduledPerformingPhysicianName) == "Asante^Kwame"
