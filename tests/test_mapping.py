"""The HL7 -> worklist mapping: mapping files, rules, transforms, profiles, items (no database).

Golden files in tests/golden/ hold what ``mwlbroker mappings test`` shows for every sample
message; run with MWLBROKER_UPDATE_GOLDEN=1 to rewrite them after a deliberate change, then
read the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from pydicom.uid import UID

from mwlbroker.domain.errors import MappingError
from mwlbroker.domain.worklist import CLEAR, MappedOrder, MappedStep, StepStatus
from mwlbroker.hl7v2.reader import FieldPath, HL7Message, parse_message
from mwlbroker.mapping import transforms as t
from mwlbroker.mapping.engine import MappingSet, NotMappedForSender, load_mappings, stable_uid
from mwlbroker.mapping.loader import BUNDLED, MappingLoadError
from mwlbroker.mapping.report import check_mappings, explain_message, split_messages
from mwlbroker.mapping.worklist_item import (
    build_worklist_item,
    item_from_json,
    item_to_json,
    worklist_items,
)
from tests.support.samples import SAMPLES, listed, sample_files

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("MWLBROKER_UPDATE_GOLDEN", "") not in ("", "0")
MSH = "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||{type}|C1|P|2.3.1"
PID = "PID|1||PID1^^^HOSPITAL^MR||DOE^JOHN||19700101|M"
ORC = "ORC|NW|PL1|FL1||SC||^^^20261127143000^^R"


def obr(accession: str = "ACC1", *, rp: str = "RP1", sps: str = "SPS1", modality: str = "CT"):
    """An OBR with OBR-4, OBR-18/19/20 and OBR-24 filled."""
    fields = ["OBR", "1", "PL1", "FL1", "CT01^CT chest^L"] + [""] * 13
    fields += [accession, rp, sps, "", "", "", modality]
    return "|".join(fields)


def message(*segments: str, type_name: str = "ORM^O01", msh: str = MSH) -> HL7Message:
    return parse_message("\r".join([msh.format(type=type_name), *segments]).encode("utf-8"))


@pytest.fixture(scope="module")
def bundled() -> MappingSet:
    return load_mappings()


def sample(name: str) -> HL7Message:
    return parse_message((SAMPLES / name).read_bytes())


def site_folder(tmp_path: Path) -> Path:
    """The bundled mappings with the site example switched on."""
    folder = tmp_path / "site"
    folder.mkdir()
    for path in listed(BUNDLED, "*.yaml"):
        text = path.read_text(encoding="utf-8")
        (folder / path.name).write_text(
            text.replace("\nenabled: false", "\nenabled: true"), encoding="utf-8"
        )
    return folder


def profile_folder(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def load_profile(tmp_path: Path, text: str) -> MappingSet:
    return load_mappings(profile_folder(tmp_path, text))


def order_profile(step: str = "", procedure: str = "", patient: str = "", extra: str = "") -> str:
    """A small profile for orders; sections are indented YAML lines."""
    return f"""\
profile: t
status: {{NW/*: SCHEDULED, CA/*: CANCELED}}
{extra}
messages:
  ORM^O01:
    patient:
      PatientID: PID-3.1
{patient}
    procedure:
      AccessionNumber: OBR-18
{procedure}
    step:
      Modality: {{field: OBR-24, transform: upper}}
{step}
"""


def load_errors(folder: Path) -> list[str]:
    with pytest.raises(MappingLoadError) as raised:
        load_mappings(folder)
    return [str(error) for error in raised.value.errors]


# -- golden files: every sample message, as "mappings test" shows it -----------------------------

GOLDEN_CASES = [(path, None) for path in sample_files()] + [
    (GOLDEN / "site_stmary_orm_o01.hl7", "site")
]


@pytest.mark.parametrize(
    ("message_file", "folder"), GOLDEN_CASES, ids=[path.stem for path, _ in GOLDEN_CASES]
)
def test_golden(message_file: Path, folder: str | None, tmp_path: Path):
    mappings_folder = site_folder(tmp_path) if folder == "site" else None
    report = explain_message(message_file, mappings_folder)
    assert report.ok, report.text
    golden = GOLDEN / f"{message_file.stem}.txt"
    text = report.text + "\n"
    if UPDATE_GOLDEN:
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden.name}: run with MWLBROKER_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_every_sample_has_a_golden_file():
    for path in sample_files():
        assert (GOLDEN / f"{path.stem}.txt").exists(), path.name


def test_every_golden_file_is_checked_against_a_message():
    checked = {message_file.stem for message_file, _ in GOLDEN_CASES}
    orphans = [path.name for path in listed(GOLDEN, "*.txt") if path.stem not in checked]
    assert orphans == [], f"golden files no test compares: {orphans}"


# -- the samples, field by field -------------------------------------------------------------------


def test_orm_new_order_fields_come_from_the_right_places(bundled):
    order = bundled.map_order(sample("02_orm_o01_nw_v231.hl7"))
    assert (order.order_control, order.order_status) == ("NW", "SC")
    assert order.step_status is StepStatus.SCHEDULED
    assert order.profile == "ihe-swf"
    assert (order.placer_order_number, order.filler_order_number) == (
        "PLC20261120001",
        "FIL20261120001",
    )
    patient = order.patient.attributes
    assert patient == {
        "PatientID": "PID123456",
        "IssuerOfPatientID": "HOSPITAL",
        "PatientName": "DOE^JOHN^Q^MR",  # XPN prefix MR goes to PN component 4
        "PatientBirthDate": "19650412",
        "PatientSex": "M",
        "IssuerOfPatientIDQualifiersSequence": [{"IdentifierTypeCode": "MR"}],  # PID-3.5
    }
    assert order.order["ReferringPhysicianName"] == "SMITH^ROBERT^A^DR"  # PV1-8
    assert order.order["RequestingPhysician"] == "JONES^MARY^^DR"  # OBR-16
    assert order.order["CurrentPatientLocation"] == "OPD RAD1 01"  # PV1-3
    assert order.order["AdmissionID"] == "V20261118001"  # PV1-19
    # OBR-13: the order's own clinical info, kept with the order, not the patient
    assert order.order["MedicalAlerts"] == "Suspected pulmonary embolism"
    [step] = order.steps
    assert step.accession_number == "ACC20261127001"
    assert step.requested_procedure_id == "RP20261127001"
    assert step.sps_id == "SPS20261127001"
    assert step.study_instance_uid == "1.2.826.0.1.3680043.10.543.20261127.1"  # ZDS-1.1
    assert step.procedure["RequestedProcedureCodeSequence"] == [
        {
            "CodeValue": "71260",
            "CodingSchemeDesignator": "C4",
            "CodeMeaning": "CT THORAX W/CONTRAST",
        }
    ]
    assert step.procedure["RequestedProcedurePriority"] == "ROUTINE"  # ORC-7.6 R
    assert step.step == {
        "ScheduledProcedureStepID": "SPS20261127001",
        "Modality": "CT",
        "ScheduledProcedureStepStartDate": "20261127",
        "ScheduledProcedureStepStartTime": "143000",
        "ScheduledProcedureStepDescription": "CT CHEST WITH CONTRAST",  # OBR-4.2 (no OBR-4.5)
    }


def test_an_obx_weight_without_a_value_is_passed_over(bundled):
    empty = "OBX|1|NM|29463-7^Body weight^LN|||kg|||||F"
    order = bundled.map_order(message(PID, ORC, obr(), empty, "OBX|2|NM|^BODY WEIGHT||70|kg"))
    assert order.patient.attributes["PatientWeight"] == "70"
    order = bundled.map_order(message(PID, ORC, obr(), empty))
    assert "PatientWeight" not in order.patient.attributes


def test_change_and_cancel_of_the_same_order(bundled):
    change = bundled.map_order(sample("03_orm_o01_xo_v231.hl7"))
    assert change.order_control == "XO" and change.step_status is StepStatus.SCHEDULED
    assert change.steps[0].step["ScheduledProcedureStepStartTime"] == "160000"
    cancel = bundled.map_order(sample("04_orm_o01_ca_v231.hl7"))
    assert (cancel.order_control, cancel.order_status) == ("CA", "CA")
    assert cancel.step_status is StepStatus.CANCELED
    assert cancel.steps[0].sps_id == change.steps[0].sps_id == "SPS20261127001"


def test_omi_takes_the_procedure_and_step_from_ipc_and_tq1(bundled):
    order = bundled.map_order(sample("10_omi_o23_nw_v251.hl7"))
    assert order.patient.attributes["PatientName"] == "García López^José Ángel"
    assert order.order["ReferringPhysicianName"] == "Wójcik^Łukasz^^Dr."
    [step] = order.steps
    assert step.procedure["AccessionNumber"] == "ACC20261130003"  # IPC-1
    assert step.procedure["RequestedProcedureID"] == "RP20261130003"  # IPC-2
    assert step.procedure["StudyInstanceUID"] == "1.2.826.0.1.3680043.10.543.20261130.3"  # IPC-3
    assert step.procedure["RequestedProcedurePriority"] == "ROUTINE"  # TQ1-9
    assert step.step["ScheduledProcedureStepID"] == "SPS20261130003"  # IPC-4
    assert step.step["Modality"] == "MR"  # IPC-5
    assert step.step["ScheduledProtocolCodeSequence"] == [
        {"CodeValue": "KNEE_STD", "CodingSchemeDesignator": "L", "CodeMeaning": "Rodilla estándar"}
    ]  # IPC-6
    assert step.step["ScheduledStationName"] == "MR2"  # IPC-7
    assert step.step["ScheduledProcedureStepLocation"] == "MRROOM2"  # IPC-8
    assert step.step["ScheduledStationAETitle"] == "MRSCANNER2"  # IPC-9
    assert step.step["ScheduledProcedureStepStartDate"] == "20261130"  # TQ1-7
    assert step.step["ScheduledProcedureStepStartTime"] == "091500"


def test_latin1_names_are_decoded(bundled):
    order = bundled.map_order(sample("08_orm_o01_latin1_v231.hl7"))
    assert order.patient.attributes["PatientName"] == "MÜLLER^JÖRG"
    assert order.order["ReferringPhysicianName"] == "Böhm^Anna^^Dr."
    assert order.steps[0].study_instance_uid == "1.2.826.0.1.3680043.10.543.20261128.1"


def test_multi_obr_gives_one_item_per_obr_each_with_its_own_zds(bundled):
    order = bundled.map_order(sample("09_orm_o01_multi_obr_v231.hl7"))
    assert [(s.accession_number, s.requested_procedure_id, s.sps_id) for s in order.steps] == [
        ("ACC20261130001", "RP20261130001", "SPS20261130001"),
        ("ACC20261130002", "RP20261130002", "SPS20261130002"),
    ]
    assert [s.study_instance_uid for s in order.steps] == [
        "1.2.826.0.1.3680043.10.543.20261130.1",
        "1.2.826.0.1.3680043.10.543.20261130.2",
    ]
    codes = [s.procedure["RequestedProcedureCodeSequence"][0]["CodeValue"] for s in order.steps]
    assert codes == ["70551", "72148"]


def test_adt_update_and_merges(bundled):
    update = bundled.map_patient_event(sample("05_adt_a08_v251.hl7"))
    assert update.trigger == "A08" and update.prior_patient_id is None
    assert update.patient.attributes["PatientName"] == "DOE^JOHN^QUINCY^MR"
    for name in ("06_adt_a40_v251.hl7", "07_adt_a40_v231.hl7"):
        merge = bundled.map_patient_event(sample(name))
        assert merge.trigger == "A40"
        assert (merge.patient.patient_id, merge.patient.issuer) == ("PID123456", "HOSPITAL")
        assert (merge.prior_patient_id, merge.prior_issuer) == ("PID999999", "HOSPITAL")


def test_supported_types(bundled):
    assert bundled.supported_types == {
        "ORM^O01",
        "OMI^O23",
        "OMG^O19",
        *(f"ADT^{t}" for t in ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08")),
        *(f"ADT^{t}" for t in ("A11", "A12", "A13", "A18", "A24", "A31", "A34", "A35")),
        *(f"ADT^{t}" for t in ("A36", "A37", "A39", "A40", "A47")),
        *(f"SIU^{t}" for t in ("S12", "S13", "S14", "S15")),  # siu-example, sender SCHEDULER
    }


def test_site_example_routes_by_procedure_code_and_picks_the_hospital_id(tmp_path):
    mappings = load_mappings(site_folder(tmp_path))
    order = mappings.map_order(parse_message((GOLDEN / "site_stmary_orm_o01.hl7").read_bytes()))
    assert order.profile == "site-example"
    patient = order.patient.attributes
    assert (patient["PatientID"], patient["IssuerOfPatientID"]) == ("SM0012345", "STMARY")
    assert patient["OtherPatientIDsSequence"] == [
        {"PatientID": "4857711", "IssuerOfPatientID": "NHS", "TypeOfPatientID": "TEXT"}
    ]
    ct, xray = order.steps
    assert ct.step["ScheduledStationAETitle"] == "CT_ER"  # emergency patient, CT
    assert xray.step["ScheduledStationAETitle"] == "DR_ROOM2"  # from the procedures table
    assert (ct.step["Modality"], xray.step["Modality"]) == ("CT", "DX")
    assert ct.procedure["RequestedProcedurePriority"] == "STAT"  # OBR-5 S
    assert xray.procedure["RequestedProcedurePriority"] == "ROUTINE"
    assert xray.step["ScheduledProcedureStepStartTime"] == "093000"  # its own OBR-27
    assert ct.step["ScheduledProtocolCodeSequence"][0]["CodeValue"] == "CTCHEST_C"
    assert ct.step["CommentsOnTheScheduledProcedureStep"].startswith("Patient on trolley")
    assert "CommentsOnTheScheduledProcedureStep" not in xray.step  # not the CT's note
    assert ct.sps_id == ct.accession_number == "SM26A00042"  # missing: from_accession
    for step in order.steps:  # no ZDS: generated under the hospital's root
        uid = step.study_instance_uid
        assert uid.startswith("1.2.826.0.1.3680043.10.543.") and UID(uid).is_valid
    assert ct.study_instance_uid != xray.study_instance_uid


def test_site_example_ships_disabled(bundled):
    [site] = [p for p in bundled.profiles if p.name == "site-example"]
    assert not site.enabled
    assert bundled.profile_for("CENTRICITY RIS", "STMARY").name == "ihe-swf"


# -- profile selection ------------------------------------------------------------------------------

SELECTION = """\
profile: {name}
priority: {priority}
match: {{sending_application: "{app}", sending_facility: "{facility}"}}
status: {{NW/*: SCHEDULED}}
messages:
  {types}
"""


def test_profile_for_sender_by_priority_then_specificity(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    profiles = [
        ("default", 0, "*", "*", "ORM^O01: {}\n  ADT: {}"),
        ("centricity", 5, "CENTRICITY*", "*", "ORM^O01: {}"),
        ("stmary", 5, "CENTRICITY*", "STMARY", "ORM^O01: {}"),
        ("urgent", 9, "ER-RIS", "*", "ORM^O01: {}"),
    ]
    for name, priority, app, facility, types in profiles:
        (folder / f"{name}.yaml").write_text(
            SELECTION.format(name=name, priority=priority, app=app, facility=facility, types=types)
        )
    mappings = load_mappings(folder)
    assert mappings.profile_for("RIS", "HOSPITAL").name == "default"
    assert mappings.profile_for("Centricity RIS", "HOSPITAL").name == "centricity"
    assert mappings.profile_for("CENTRICITY RIS", "STMARY").name == "stmary"  # more specific
    assert mappings.profile_for("ER-RIS", "STMARY").name == "urgent"  # higher priority
    # A profile that does not map the type leaves it to the next one.
    assert mappings.profile_for("CENTRICITY RIS", "STMARY", "ADT^A08").name == "default"


def test_no_profile_for_sender_is_a_mapping_error(tmp_path):
    text = SELECTION.format(name="only", priority=0, app="PACS", facility="*", types="ORM^O01: {}")
    mappings = load_profile(tmp_path, text)
    with pytest.raises(MappingError, match=r"no mapping profile .*'RIS'"):
        mappings.map_order(message(PID, ORC, obr()))


# -- rules --------------------------------------------------------------------------------------


def test_hl7_null_clears_and_is_never_transformed_or_defaulted(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(
            patient="      PatientName: {field: PID-5, transform: xpn_to_pn}\n"
            "      PatientSex: {field: PID-8, transform: sex, default: O}\n"
            "      PatientBirthDate: {field: PID-7, transform: hl7_date}",
        ),
    )
    order = mappings.map_order(message('PID|1||PID1||""||""|""', ORC, obr()))
    patient = order.patient.attributes
    assert patient["PatientName"] is CLEAR
    assert patient["PatientSex"] is CLEAR  # not "O": the sender said "clear it"
    assert patient["PatientBirthDate"] is CLEAR
    order = mappings.map_order(message("PID|1||PID1||||", ORC, obr()))
    assert "PatientName" not in order.patient.attributes  # empty: keep what is stored
    assert order.patient.attributes["PatientSex"] == "O"  # default applies to empty only


def test_first_join_value_and_default(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(
            step="      ScheduledStationName: {first: [ZXX-1, OBR-21, {value: ANY}]}\n"
            "      ScheduledProcedureStepLocation: {join: [PV1-3.1, PV1-3.2], sep: '/'}\n"
            "      ScheduledStationAETitle: {field: ZXX-2, default: DEFAULT_AE}",
        ),
    )
    order = mappings.map_order(message(PID, "PV1|1|O|OPD^RAD1", ORC, obr()))
    assert order.steps[0].step["ScheduledStationName"] == "ANY"
    assert order.steps[0].step["ScheduledProcedureStepLocation"] == "OPD/RAD1"
    assert order.steps[0].step["ScheduledStationAETitle"] == "DEFAULT_AE"
    order = mappings.map_order(message(PID, "PV1|1|O|OPD", ORC, obr(), "ZXX|ST1|AE1"))
    assert order.steps[0].step["ScheduledStationName"] == "ST1"
    assert order.steps[0].step["ScheduledProcedureStepLocation"] == "OPD"
    assert order.steps[0].step["ScheduledStationAETitle"] == "AE1"


def test_conditions(tmp_path):
    rule = """\
      ScheduledStationAETitle:
        rules:
          - when: {all: [{field: OBR-24, equals: CT}, {field: PV1-2, in: [E, I]}]}
            value: CT_ER
          - when: {field: OBR-24, transform: upper, matches: "^(MR|MRI)$"}
            value: MR1
          - when: {any: [{field: OBR-24, empty: true}, {not: {field: OBR-24, in: [CT, US]}}]}
            value: UNKNOWN
          - field: OBR-24
            transform: lower
      ScheduledStationName:
        when: {field: ZDS-1, empty: false}
        then: {value: HAS_UID}
        else: {value: NO_UID}
"""
    mappings = load_profile(tmp_path, order_profile(step=rule))

    def station(modality: str, patient_class: str = "O", *extra: str) -> tuple[str, str]:
        order = mappings.map_order(
            message(PID, f"PV1|1|{patient_class}", ORC, obr(modality=modality), *extra)
        )
        step = order.steps[0].step
        return step["ScheduledStationAETitle"], step["ScheduledStationName"]

    assert station("CT", "E") == ("CT_ER", "NO_UID")
    assert station("CT", "O", "ZDS|1.2.3") == ("ct", "HAS_UID")
    assert station("mri") == ("MR1", "NO_UID")
    assert station("") == ("UNKNOWN", "NO_UID")
    assert station("XA") == ("UNKNOWN", "NO_UID")
    assert station("US") == ("us", "NO_UID")


def test_repetition_chosen_by_assigning_authority(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(extra="missing: {PatientID: allow}").replace(
            "      PatientID: PID-3.1",
            "      PatientID: {field: PID-3.1, where: {component: 4, equals: LOCAL}}\n"
            "      IssuerOfPatientID: {field: PID-3.4, where: {component: 4, equals: LOCAL}}\n"
            "      OtherPatientIDsSequence:\n"
            "        items:\n"
            "          - PatientID: {field: PID-3.1, where: {component: 4, in: [NAT, NHS]}}\n"
            "            IssuerOfPatientID: {field: PID-3.4, where: {component: 4, in: [NAT, NHS]}}",
        ),
    )
    order = mappings.map_order(message("PID|1||N77^^^NAT~L55^^^LOCAL^MR", ORC, obr()))
    patient = order.patient.attributes
    assert (patient["PatientID"], patient["IssuerOfPatientID"]) == ("L55", "LOCAL")
    assert patient["OtherPatientIDsSequence"] == [{"PatientID": "N77", "IssuerOfPatientID": "NAT"}]
    order = mappings.map_order(message("PID|1||L55^^^LOCAL", ORC, obr()))
    assert "OtherPatientIDsSequence" not in order.patient.attributes  # empty item left out
    order = mappings.map_order(message("PID|1||N77^^^NAT", ORC, obr()))
    assert "PatientID" not in order.patient.attributes


def test_code_sequences(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(
            procedure="      RequestedProcedureCodeSequence: {code: [OBR-44, OBR-4]}",
            step="      ScheduledProtocolCodeSequence:\n"
            "        code: {value: OBR-45.1, meaning: {value: Fixed meaning}, scheme: {value: 99X}}",
        ),
    )
    order = mappings.map_order(message(PID, ORC, obr()))
    assert order.steps[0].procedure["RequestedProcedureCodeSequence"] == [
        {"CodeValue": "CT01", "CodingSchemeDesignator": "L", "CodeMeaning": "CT chest"}
    ]  # OBR-44 empty: from OBR-4
    assert "ScheduledProtocolCodeSequence" not in order.steps[0].step
    long_code = "urn:oid:1.2.3.4.5.6.7.8"
    fields = obr() + "|" + "|" * 19 + f"CPT1^Chest^C4|{long_code}"
    step = mappings.map_order(message(PID, ORC, fields)).steps[0]
    assert step.procedure["RequestedProcedureCodeSequence"][0]["CodeValue"] == "CPT1"
    assert step.step["ScheduledProtocolCodeSequence"] == [
        {
            "LongCodeValue": long_code,
            "CodingSchemeDesignator": "99X",
            "CodeMeaning": "Fixed meaning",
        }
    ]


def test_segment_groups_for_repeated_orc_and_obr(bundled):
    zds = "ZDS|{uid}^100^Application^DICOM"
    first = [PID, ORC, obr("A1", sps="S1"), zds.format(uid="1.2.1")]
    second = [obr("A2", sps="S2"), zds.format(uid="1.2.2")]
    both = [[*first, ORC, *second], [*first, *second]]  # ORC OBR ZDS (ORC) OBR ZDS
    for segments in both:
        order = bundled.map_order(message(*segments))
        assert [s.study_instance_uid for s in order.steps] == ["1.2.1", "1.2.2"]
    # An OBR without its own ZDS never takes its neighbour's UID: one is generated.
    order = bundled.map_order(
        message(PID, ORC, obr("A1", sps="S1"), zds.format(uid="1.2.1"), obr("A2", sps="S2"))
    )
    first, second = (s.study_instance_uid for s in order.steps)
    assert first == "1.2.1" and second.startswith("2.25.") and UID(second).is_valid


def test_orc_segments_of_one_order_must_agree(bundled):
    cancel = "ORC|CA|PL1|FL1||CA"
    with pytest.raises(MappingError, match=r"disagree .*NW/SC, CA/CA") as raised:
        bundled.map_order(message(PID, ORC, obr("A1"), cancel, obr("A2", sps="S2")))
    assert raised.value.location == "ORC[2]-1"
    # An ORC without its own numbers continues the order before it.
    unnumbered = "ORC|CA||||CA"
    with pytest.raises(MappingError, match=r"disagree .*NW/SC, CA/CA"):
        bundled.map_order(message(PID, ORC, obr("A1"), unnumbered, obr("A2", sps="S2")))
    same = bundled.map_orders(message(PID, ORC, obr("A1"), ORC, obr("A2", sps="S2")))
    assert [len(order.steps) for order in same] == [2] and same[0].group is None


def test_orc_groups_of_different_placer_orders_are_orders_of_their_own(bundled):
    other = "ORC|CA|PL2|FL2||CA"
    parsed = message(PID, ORC, obr("A1"), obr("A3", sps="S3"), other, obr("A2", sps="S2"))
    first, second = bundled.map_orders(parsed)
    assert (first.placer_order_number, first.order_control, first.step_status) == (
        "PL1",
        "NW",
        StepStatus.SCHEDULED,
    )
    assert (second.placer_order_number, second.order_control, second.step_status) == (
        "PL2",
        "CA",
        StepStatus.CANCELED,
    )
    assert [s.accession_number for s in first.steps] == ["A1", "A3"]
    assert [s.accession_number for s in second.steps] == ["A2"]
    assert second.order["PlacerOrderNumberImagingServiceRequest"] == "PL2"
    assert second.group is not None and second.group.name == "order 2 (ORC[2], placer PL2)"
    with pytest.raises(MappingError, match="carries 2 orders"):
        bundled.map_order(parsed)
    # An error in one order names it, and points ERR-2 at its ORC.
    unknown = "ORC|XX|PL2|FL2||YY"
    with pytest.raises(MappingError) as raised:
        bundled.map_orders(message(PID, ORC, obr("A1"), unknown, obr("A2", sps="S2")))
    assert str(raised.value).startswith("order 2 (ORC[2], placer PL2): no status for ORC-1 'XX'")
    assert raised.value.location == "ORC[2]-1"
    # A new order without an OBR has nothing to schedule; a cancel needs none.
    with pytest.raises(MappingError, match=r"^order 2 \(ORC\[2\], placer PL2\): ORC-1 NW wit"):
        bundled.map_orders(message(PID, ORC, obr("A1"), "ORC|NW|PL2|FL2||SC"))
    cancel_only = bundled.map_orders(message(PID, ORC, obr("A1"), "ORC|CA|PL2|FL2||CA"))
    assert [(o.placer_order_number, len(o.steps)) for o in cancel_only] == [("PL1", 1), ("PL2", 0)]
    # Items are numbered within their order; the text names the OBR's place in the message.
    second = [other, obr("A2", sps="S2"), obr("", sps="S3")]
    with pytest.raises(MappingError) as raised:
        bundled.map_orders(message(PID, ORC, obr("A1"), *second))
    assert str(raised.value).startswith(
        "order 2 (ORC[2], placer PL2): AccessionNumber is missing for item 2 (OBR[3])"
    )
    assert raised.value.location == "ORC[2]"


# -- status, structure and identifier policies ------------------------------------------------------


def test_unknown_status_pair_names_the_pair_and_the_file(bundled):
    with pytest.raises(MappingError) as raised:
        bundled.map_order(message(PID, "ORC|XX|PL1|FL1||YY", obr()))
    text = str(raised.value)
    assert "no status for ORC-1 'XX' with ORC-5 'YY' in profile ihe-swf" in text
    assert re.search(r"add it to status: in .*ihe-swf\.yaml:\d+", text)
    assert raised.value.location == "ORC-1"


def test_status_table_wildcards_and_empty_order_status(tmp_path):
    text = order_profile().replace(
        "status: {NW/*: SCHEDULED, CA/*: CANCELED}",
        "status: {NW/: ARRIVED, NW/SC: SCHEDULED, '*/CM': COMPLETED, DC/*: DISCONTINUED}",
    )
    mappings = load_profile(tmp_path, text)

    def status(orc_1: str, orc_5: str) -> StepStatus:
        return mappings.map_order(message(PID, f"ORC|{orc_1}|PL1|FL1||{orc_5}", obr())).step_status

    assert status("NW", "") is StepStatus.ARRIVED
    assert status("nw", "sc") is StepStatus.SCHEDULED
    assert status("XO", "CM") is StepStatus.COMPLETED
    assert status("DC", "CA") is StepStatus.DISCONTINUED
    with pytest.raises(MappingError, match="ORC-1 'NW' with ORC-5 'IP'"):
        status("NW", "IP")


def test_message_without_orc_or_without_obr(bundled):
    with pytest.raises(MappingError, match="without an ORC") as raised:
        bundled.map_order(message(PID, obr()))
    assert raised.value.location == "ORC"
    with pytest.raises(MappingError, match="without an OBR segment"):
        bundled.map_order(message(PID, ORC))
    # An OMI without IPC falls back to its OBR (repeat: [IPC, OBR]); with neither, no item.
    with pytest.raises(MappingError, match=r"without an IPC segment.*per IPC, else OBR"):
        bundled.map_order(message(PID, ORC, type_name="OMI^O23"))


def test_adt_merge_without_mrg(bundled):
    with pytest.raises(MappingError, match=r"without a prior patient ID \(MRG-1\)"):
        bundled.map_patient_event(message(PID, type_name="ADT^A40"))
    with pytest.raises(MappingError, match="2 MRG segments"):
        bundled.map_patient_event(message(PID, "MRG|X1", PID, "MRG|X2", type_name="ADT^A40"))
    assert bundled.map_patient_event(message(PID, type_name="ADT^A08")).prior_patient_id is None


def test_missing_patient_id_is_rejected_by_default(bundled):
    with pytest.raises(MappingError, match=r"without a Patient ID .*PID-3\.1"):
        bundled.map_patient_event(message("PID|1||", type_name="ADT^A08"))


def test_missing_policy_reject_names_the_field(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(
            procedure="      RequestedProcedureID: OBR-19",
            extra="missing: {RequestedProcedureID: reject}",
        ),
    )
    with pytest.raises(MappingError) as raised:
        mappings.map_order(message(PID, ORC, obr(rp="")))
    assert "RequestedProcedureID is missing for the order" in str(raised.value)
    assert "missing: RequestedProcedureID: reject at " in str(raised.value)


def test_missing_policy_from_accession(tmp_path):
    mappings = load_profile(tmp_path, order_profile())  # defaults: from_accession
    order = mappings.map_order(message(PID, ORC, obr("ACC9", rp="", sps="")))
    assert (order.steps[0].requested_procedure_id, order.steps[0].sps_id) == ("ACC9", "ACC9")
    # Two steps of one requested procedure: the SPS IDs are told apart.
    order = mappings.map_order(
        message(
            PID, ORC, obr("ACC9", rp="", sps=""), obr("ACC9", rp="", sps=""), obr("ACC8", sps="")
        )
    )
    assert [s.sps_id for s in order.steps] == ["ACC9-1", "ACC9-2", "ACC8"]
    assert [s.requested_procedure_id for s in order.steps] == ["ACC9", "ACC9", "ACC8"]
    with pytest.raises(MappingError, match="no accession number to use"):
        mappings.map_order(message(PID, ORC, obr("", sps="")))


def test_missing_policy_generate_is_stable_and_valid(tmp_path, bundled):
    new = message(PID, ORC, obr("ACC7"))
    change = message(PID, ORC.replace("NW", "XO"), obr("ACC7"))
    uid = bundled.map_order(new).steps[0].study_instance_uid
    assert uid == bundled.map_order(change).steps[0].study_instance_uid
    assert uid.startswith("2.25.") and UID(uid).is_valid and len(uid) <= 64
    other = bundled.map_order(message(PID, ORC, obr("ACC8"))).steps[0].study_instance_uid
    assert other != uid
    local = load_profile(
        tmp_path,
        order_profile(
            extra="uid_root: '1.2.826.0.1.3680043.10.543'\n"
            "missing: {RequestedProcedureID: generate, ScheduledProcedureStepID: generate}"
        ),
    )
    step = local.map_order(message(PID, ORC, obr("ACC7", rp="", sps=""))).steps[0]
    assert step.study_instance_uid.startswith("1.2.826.0.1.3680043.10.543.")
    assert UID(step.study_instance_uid).is_valid and len(step.study_instance_uid) <= 64
    assert re.fullmatch(r"[0-9A-F]{16}", step.requested_procedure_id)
    assert re.fullmatch(r"[0-9A-F]{16}", step.sps_id) and step.sps_id != step.requested_procedure_id


def test_stable_uid_fits_any_root():
    for root in ("2.25", "1.2.3", "1.2.826.0.1.3680043.10.543.123456789.987654321"):
        uid = stable_uid(root, "key")
        assert uid == stable_uid(root, "key") and UID(uid).is_valid and len(uid) <= 64


def test_values_are_checked_against_the_vr(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(
            step="      ScheduledStationAETitle: ZXX-1", patient="      PatientSex: PID-8"
        ),
    )
    with pytest.raises(MappingError) as raised:
        mappings.map_order(message(PID, ORC, obr(), "ZXX|AN_AE_TITLE_FAR_TOO_LONG"))
    text = str(raised.value)
    assert "ScheduledStationAETitle (AE) from ZXX-1" in text and "truncate" in text
    assert re.search(r"rule at .*site\.yaml:\d+", text)
    assert raised.value.location == "ZXX-1"
    with pytest.raises(MappingError, match=r"PatientSex \(CS\) from PID-8 = 'm'"):
        mappings.map_order(message("PID|1||PID1||DOE||19700101|m", ORC, obr()))  # CS: upper


def test_transform_errors_name_the_attribute(tmp_path):
    mappings = load_profile(
        tmp_path,
        order_profile(patient="      PatientBirthDate: {field: PID-7, transform: hl7_date}"),
    )
    with pytest.raises(MappingError, match=r"PatientBirthDate: '1965-04-12' is not an HL7 date"):
        mappings.map_order(message("PID|1||PID1||X||1965-04-12", ORC, obr()))


# -- transforms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "date", "time_"),
    [
        ("20261127143000", "20261127", "143000"),
        ("202611271430", "20261127", "143000"),
        ("2026112714", "20261127", "140000"),
        ("20261127", "20261127", None),
        ("20261127143000.1234", "20261127", "143000.1234"),
        ("20261127143000+0100", "20261127", "143000"),
        ("202611", None, None),
        ("2026", None, None),
    ],
)
def test_hl7_date_and_time(value, date, time_):
    assert t.hl7_date(value) == date
    assert t.hl7_time(value) == time_


@pytest.mark.parametrize("value", ["2026-11-27", "20261332", "20260230", "2026112725", "abc"])
def test_hl7_date_rejects_what_is_not_a_date(value):
    with pytest.raises(t.TransformError):
        t.hl7_date(value)


def test_person_names():
    assert t.xpn_to_pn(["DOE", "JOHN", "Q", "", "MR"]) == "DOE^JOHN^Q^MR"
    assert t.xpn_to_pn(["DOE", "JOHN", "Q", "JR", "MR", "MD"]) == "DOE^JOHN^Q^MR^JR"
    assert t.xpn_to_pn(["DOE", "JOHN"]) == "DOE^JOHN"
    assert t.xpn_to_pn(["DOE", "", "", "III"]) == "DOE^^^^III"
    assert t.xpn_to_pn(["", ""]) is None
    assert t.xpn_to_pn(["A^B", "C=D"]) == "A B^C D"  # delimiters inside a part
    assert t.xcn_to_pn(["1234", "SMITH", "ROBERT", "A", "", "DR"]) == "SMITH^ROBERT^A^DR"
    assert t.xcn_to_pn(["1234"]) is None


def test_sex_priority_and_text():
    assert [t.sex(v) for v in ("M", "f", "O", "A", "N", "U", "Z")] == [
        "M",
        "F",
        "O",
        "O",
        "O",
        None,
        None,
    ]
    assert [t.priority(v) for v in ("S", "A", "R", "P", "T", "TS30", "STAT", "x")] == [
        "STAT",
        "HIGH",
        "ROUTINE",
        "LOW",
        "MEDIUM",
        "MEDIUM",
        "STAT",
        None,
    ]
    assert t.upper("ct") == "CT" and t.lower("CT") == "ct"
    strip_spaces = t.strip
    assert strip_spaces(" a ") == "a" and strip_spaces(" ") is None


@pytest.mark.parametrize(
    ("value", "kg"),
    [
        ("80 kg", "80"),
        ("154.3 [lb_av]", "69.99"),
        ("130 LBS", "58.97"),
        ("3500 g", "3.5"),
        ("62,5 kg", "62.5"),
        ("112 oz", "3.18"),
        ("80kg", "80"),  # units written into OBX-5
        ("80 kg kg", "80"),  # ... and OBX-6 too
    ],
)
def test_weight_in_any_unit_becomes_kg(value, kg):
    assert t.weight_kg(value) == kg


@pytest.mark.parametrize(
    ("value", "m"),
    [("1.8 m", "1.8"), ("168 cm", "1.68"), ("65 [in_i]", "1.651"), ("6 ft", "1.829")],
)
def test_height_in_any_unit_becomes_metres(value, m):
    assert t.height_m(value) == m


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("80", "has no units"),
        ("14 st", "unit 'st' is not known"),
        ("heavy kg", "not a number"),
        ("-3 kg", "out of range"),
    ],
)
def test_a_weight_that_cannot_be_converted_is_an_error(value, problem):
    with pytest.raises(t.TransformError, match=problem):
        t.weight_kg(value)


def test_pregnancy_codes_become_dicom_values():
    codes = ("B6", "LA15173-0", "la26683-5", "LA4489-6", "102874004", "N", "0004", "A0", "X")
    assert [t.pregnancy_status(code) for code in codes] == [
        "3",
        "3",
        "1",
        "4",
        "2",
        "1",
        "4",
        None,
        None,
    ]


def build(name: str, tables: dict | None = None, **arguments):
    spec = t.TRANSFORMS[name]
    setup = t.TransformSetup("p", {k: t.Table(k, v) for k, v in (tables or {}).items()})
    values = {key: param.default for key, param in spec.params.items()} | arguments
    return spec.factory(setup, **values)


def test_truncate_regex_lookup():
    assert build("truncate", length=3)("ABCDEF") == "ABC"
    assert build("regex", pattern=r"^0+(\d)", replace=r"\1")("000123") == "123"
    assert build("regex", pattern="[^A-Z]")("a1b2") is None
    tables = {
        "priority": {"S": "STAT", "R": "ROUTINE"},
        "rooms": {"CT01": {"station": "CT1", "modality": "CT"}},
    }
    assert build("lookup", tables, table="priority")("S") == "STAT"
    assert build("lookup", tables, table="priority")("X") is None
    assert build("lookup", tables, table="priority", default="LOW")("X") == "LOW"
    assert build("lookup", tables, table="rooms", column="station")("CT01") == "CT1"
    with pytest.raises(t.TransformError, match="'MR9' has no entry in column 'station'"):
        build("lookup", tables, table="rooms", column="station", strict=True)("MR9")
    for arguments, problem in (
        ({"table": "nope"}, "no table 'nope'"),
        ({"table": "rooms"}, "has columns"),
        ({"table": "rooms", "column": "x"}, "no column 'x'"),
        ({"table": "priority", "column": "x"}, "has no columns"),
    ):
        with pytest.raises(ValueError, match=problem):
            build("lookup", tables, **arguments)
    with pytest.raises(ValueError, match="does not compile"):
        build("regex", pattern="(")
    with pytest.raises(ValueError, match="group 2"):
        build("regex", pattern="(a)", replace=r"\2")


# -- broken mapping files: every error, with FILE:LINE ---------------------------------------------

BROKEN = """\
profile: broken
status: {NW/*: SCHEDULED}
messages:
  ORM^O01:
    patient:
      PatientNme: PID-5
      PatientID: PID-3.x
      PatientBirthDate: {field: PID-7, transform: hl7_dat}
    step:
      ScheduledStationAETitle: {field: OBR-4.1, transform: {lookup: {table: rooms}}}
      Modality: {field: OBR-24, colour: red}
"""


def test_broken_file_reports_every_error_with_its_line(tmp_path):
    folder = profile_folder(tmp_path, BROKEN, "broken.yaml")
    path = folder / "broken.yaml"
    errors = load_errors(folder)
    expected = [
        (6, "'PatientNme' is not a DICOM keyword (did you mean PatientName?)"),
        (7, "'PID-3.x' is not an HL7 field path"),
        (8, "unknown transform 'hl7_dat' (did you mean hl7_date?)"),
        (10, "lookup: no table 'rooms' in profile broken"),
        (11, "unknown key 'colour' in a rule"),
    ]
    assert len(errors) == len(expected), errors
    for error, (line, text) in zip(errors, expected, strict=True):
        assert error.startswith(f"{path}:{line}: "), error
        assert text in error


def test_yaml_syntax_error_has_its_line(tmp_path):
    folder = profile_folder(
        tmp_path, "profile: x\nmessages:\n  ORM^O01: patient: PID-3\n", "syntax.yaml"
    )
    [error] = load_errors(folder)
    assert error.startswith(f"{folder / 'syntax.yaml'}:3: YAML syntax: mapping values")


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("profile: x\nstatus: {NW/*: SCHEDULED}\nmesages: {}\n", 3, "unknown key 'mesages'"),
        ("profile: x\nstatus: {NW/*: PLANNED}\nmessages: {}\n", 2, "'PLANNED' is not a step"),
        ("profile: x\nstatus: {NEW: SCHEDULED}\nmessages: {}\n", 2, "must be ORC-1/ORC-5"),
        ("profile: x\nmessages:\n  ORU^R01: {}\n", 3, "not one the broker maps"),
        ("profile: x\nmessages:\n  ADT:\n    patient:\n      Modality: OBR-24\n", 5, "step:"),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      PatientName: {field: PID-5.1, "
            "transform: xpn_to_pn}\n",
            5,
            "write PID-5, not PID-5.1",
        ),
        ("profile: x\nmessages:\n  ADT:\n    patient:\n      PatientID: CT\n", 5, "{value: CT}"),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      OtherPatientIDsSequence: PID-3\n",
            5,
            "is a sequence (SQ)",
        ),
        ("profile: x\nuid_root: 1.02.3\nmessages: {}\n", 2, "not a UID root"),
        ("profile: x\nmissing: {PatientID: generate}\nmessages: {}\n", 2, "reject | allow"),
        (
            "profile: x\nmissing: {AccessionNumber: from_order}\nmessages: {}\n",
            2,
            "reject | from_placer | from_filler | generate | allow",
        ),
        ("profile: x\nmessages:\n  SIU^S16: {}\n", 3, "SIU (every trigger) or SIU^S12"),
        ("profile: x\nextends: nothing\nmessages: {}\n", 2, "no profile 'nothing'"),
        ("profile: x\nmessages:\n  ORM^O01: {}\n", 1, "has no status: table"),
        ("profile: x\npriority: high\nmessages: {}\n", 2, "whole number"),
        ("profile: x\nmessages: {}\nmessages: {}\n", 3, "given twice"),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      PatientSex: "
            "{field: PID-8, transform: {truncate: many}}\n",
            5,
            "truncate length must be a whole number",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      PatientSex:\n"
            "        when: {field: PID-8}\n        then: {value: M}\n",
            6,
            "needs exactly one test",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      PatientWeight:\n"
            "        find: {where: {field: OBX-3.1, equals: WT}, read: OBX-5}\n",
            6,
            "needs read: and one of segment: or repetition:",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      Allergies:\n"
            "        each: {segment: AL1-3, read: AL1-3.2}\n",
            6,
            "'AL1-3' is not a segment name",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      OtherPatientIDsSequence:\n"
            "        each: {repetition: PID-3(2), read: {items: [{PatientID: PID-3.1}]}}\n",
            6,
            "repetition: names a field, such as PID-3",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      Allergies:\n"
            "        each: {segment: AL1, from: 0, read: AL1-3}\n",
            6,
            "from: is a position counting from 1",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      PatientName: "
            "{field: PID-5, transform: cnn_to_pn}\n",
            5,
            "write PID-5.N, not PID-5",
        ),
        (
            "profile: x\nmessages:\n  ADT:\n    patient:\n      PatientWeight: "
            "{field: OBX-5, transform: wieght_kg}\n",
            5,
            "did you mean weight_kg",
        ),
    ],
)
def test_each_kind_of_error(tmp_path, text, line, problem):
    folder = profile_folder(tmp_path, text, "p.yaml")
    errors = load_errors(folder)
    assert any(e.startswith(f"{folder / 'p.yaml'}:{line}: ") and problem in e for e in errors), (
        errors
    )


def test_errors_of_every_file_are_collected(tmp_path):
    profile_folder(tmp_path, "profile: a\nmessages: {ORX: {}}\n", "a.yaml")
    folder = profile_folder(tmp_path, "profile: b\nmessages: [\n", "b.yaml")
    errors = load_errors(folder)
    assert [Path(e.split(":")[0]).name for e in errors] == ["a.yaml", "b.yaml"]


def test_duplicate_profile_names_and_empty_folder(tmp_path):
    profile_folder(tmp_path, "profile: same\nmessages: {}\n", "a.yaml")
    folder = profile_folder(tmp_path, "profile: same\nmessages: {}\n", "b.yaml")
    assert any("also defined in" in e for e in load_errors(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_errors(empty) == [f"{empty}:0: holds no mapping files (*.yaml)"]


def test_extends_merges_keyword_by_keyword_and_tilde_removes(tmp_path):
    folder = profile_folder(
        tmp_path,
        """\
profile: site
extends: ihe-swf
match: {sending_facility: HOSPITAL}
priority: 1
messages:
  ORM^O01:
    patient:
      PatientSex: ~
    step:
      ScheduledStationAETitle: {value: CT1}
  OMI^O23: ~
""",
    )
    mappings = load_mappings(folder)  # ihe-swf comes from the bundled folder
    assert [p.name for p in mappings.profiles] == ["site"]
    order = mappings.map_order(sample("02_orm_o01_nw_v231.hl7"))
    assert order.profile == "site"
    assert "PatientSex" not in order.patient.attributes
    assert order.patient.attributes["PatientName"] == "DOE^JOHN^Q^MR"  # inherited
    assert order.steps[0].step["ScheduledStationAETitle"] == "CT1"
    assert order.steps[0].step["Modality"] == "CT"  # inherited
    assert "OMI^O23" not in mappings.supported_types


def test_loading_compiles_everything_once(bundled):
    # The rules are objects built at load time: nothing is parsed per message.
    [ihe] = [p for p in bundled.profiles if p.name == "ihe-swf"]
    attribute = ihe.messages["ORM^O01"].step.attributes[0]
    assert attribute.keyword == "ScheduledProcedureStepID"
    assert attribute.rule.path == FieldPath.parse("OBR-20")


# -- the worklist item ----------------------------------------------------------------------------


def test_worklist_item_structure_and_json_round_trip(bundled):
    order = bundled.map_order(sample("10_omi_o23_nw_v251.hl7"))
    [item] = worklist_items(order)
    assert item.SpecificCharacterSet == "ISO_IR 192"
    assert item.AccessionNumber == "ACC20261130003"
    assert str(item.PatientName) == "García López^José Ángel"
    assert item.RequestedProcedureCodeSequence[0].CodeValue == "73721"
    [sps] = item.ScheduledProcedureStepSequence
    assert sps.ScheduledProcedureStepStatus == "SCHEDULED"
    assert sps.Modality == "MR" and sps.ScheduledStationAETitle == "MRSCANNER2"
    assert sps.ScheduledProtocolCodeSequence[0].CodeMeaning == "Rodilla estándar"
    assert "Modality" not in item  # step attributes live only inside the sequence
    data = item_to_json(item)
    assert json.loads(json.dumps(data)) == data
    assert data["00400100"]["Value"][0]["00400020"] == {"vr": "CS", "Value": ["SCHEDULED"]}
    assert item_from_json(data) == item


def test_worklist_item_leaves_out_cleared_values():
    step = MappedStep(
        procedure={"AccessionNumber": "A1", "RequestedProcedureDescription": CLEAR},
        step={"Modality": "CT", "ScheduledStationAETitle": None},
    )
    item = build_worklist_item(
        {"PatientID": "P1", "PatientName": CLEAR}, {}, step, StepStatus.STARTED, "ISO_IR 100"
    )
    assert item.SpecificCharacterSet == "ISO_IR 100"
    assert "PatientName" not in item and "RequestedProcedureDescription" not in item
    [sps] = item.ScheduledProcedureStepSequence
    assert "ScheduledStationAETitle" not in sps
    assert sps.ScheduledProcedureStepStatus == "STARTED"


def test_worklist_item_refuses_values_that_do_not_fit():
    step = MappedStep(procedure={"AccessionNumber": "A" * 17}, step={})
    with pytest.raises(MappingError, match=r"AccessionNumber .*exceeds"):
        build_worklist_item({}, {}, step, StepStatus.SCHEDULED)


# -- the reports behind "mwlbroker mappings check / test" ------------------------------------------


def test_check_report_lists_profiles_or_errors(tmp_path):
    report = check_mappings()
    assert report.ok
    assert report.lines[0].endswith("3 profiles, ok")
    assert any(line.startswith("profile ihe-swf (ihe-swf.yaml)") for line in report.lines)
    assert any("DISABLED" in line for line in report.lines)
    assert [line for line in report.lines if line.startswith("  maps SIU")] == [
        "  maps SIU S12 S13 S14 S15 (one item per AIS; order control S12 NW, S13 XO, S14 XO, "
        "S15 CA)"
    ]
    assert {p["name"] for p in report.data["profiles"]} == {
        "ihe-swf",
        "site-example",
        "siu-example",
    }
    broken = check_mappings(profile_folder(tmp_path, BROKEN, "broken.yaml"))
    assert not broken.ok
    assert broken.lines[0].endswith("5 errors")
    assert all(re.match(r".*broken\.yaml:\d+: ", line) for line in broken.lines[1:])
    assert broken.data["errors"][0]["line"] == 6


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_message_report_reads_any_line_ending(tmp_path, ending):
    raw = (SAMPLES / "02_orm_o01_nw_v231.hl7").read_bytes().replace(b"\n", ending)
    path = tmp_path / "02_orm_o01_nw_v231.hl7"
    path.write_bytes(raw)
    report = explain_message(path)
    assert report.ok
    assert report.text + "\n" == (GOLDEN / "02_orm_o01_nw_v231.txt").read_text(encoding="utf-8")
    assert report.data["step_status"] == "SCHEDULED"
    assert report.data["items"][0]["00080050"]["Value"] == ["ACC20261127001"]
    assert json.loads(report.json())["profile"] == "ihe-swf"


def test_message_report_shows_errors_and_several_messages(tmp_path):
    path = tmp_path / "two.hl7"
    good = (SAMPLES / "01_adt_a04_v231.hl7").read_bytes()
    bad = b"MSH|^~\\&|RIS|HOSPITAL|MWL|RAD|20261127||ORM^O01|C9|P|2.3.1\rPID|1||P9\rOBR|1\r"
    path.write_bytes(good + bad)
    assert len(split_messages(good + bad)) == 2
    report = explain_message(path)
    assert not report.ok
    assert "== message 2 of 2" in report.lines
    assert any(line.startswith("AE: ORM^O01 without an ORC") for line in report.lines)
    assert report.data["messages"][1]["ack_code"] == "AE"
    missing = explain_message(tmp_path / "nope.hl7")
    assert not missing.ok and "cannot read" in missing.text


def test_message_report_for_adt_shows_the_prior_id():
    report = explain_message(SAMPLES / "06_adt_a40_v251.hl7")
    assert "prior patient ID PID999999, issuer HOSPITAL (merged into this one)" in report.lines
    assert report.data["prior_patient_id"] == "PID999999"
    assert report.data["patient"]["00100020"]["Value"] == ["PID123456"]


# -- the reader methods the mapping uses ------------------------------------------------------------


def test_indexed_reads_give_the_same_answers_as_get():
    messages = [parse_message(path.read_bytes()) for path in sample_files()]
    messages.append(message('PID|1||A1^^^ONE~B2^^^TWO||DOE&VAN^JOHN^\\S\\x^^MR|""|X||~Y|a&b'))
    for each in messages:
        for segment in {*each.segment_names, "ZZZ"}:
            for occurrence in (1, 2):
                for number in range(1, 30):
                    for repetition, component, sub in ((1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 4, 2)):
                        path = FieldPath(segment, number, repetition, component, sub, occurrence)
                        assert each.value(path) == each.get(path), path


def test_subcomponents_of_a_component():
    parsed = message("OBR|1|||||||||||||||||||||||||||||||||T123&LEE&SUSAN&K^20261204~&\\T\\x|")
    assert parsed.subcomponents("OBR-34.1") == ["T123", "LEE", "SUSAN", "K"]
    assert parsed.subcomponents("OBR-34(2).1") == ["", "&x"]  # escapes decoded after the split
    assert parsed.subcomponents("OBR-34.2") == ["20261204"]
    assert parsed.subcomponents("OBR-34.3") is None
    assert parsed.subcomponents("OBR-35.1") is None


def test_components_of_a_repetition():
    parsed = message('PID|1||A1^^^ONE~B2^^^TWO||DOE&VAN^JOHN^\\S\\x^^MR|""|X')
    assert parsed.components("PID-3(2)") == ["B2", "", "", "TWO"]
    assert parsed.components("PID-5") == ["DOE", "JOHN", "^x", "", "MR"]
    assert parsed.components("PID-6") == ['""']
    assert parsed.components("PID-7") == ["X"]
    assert parsed.components("PID-8") is None
    assert parsed.components("PID-3(3)") is None
    assert parsed.repetition_count(FieldPath("PID", 3)) == 2


def test_build_keeps_every_order_step(bundled):
    order = bundled.map_order(sample("09_orm_o01_multi_obr_v231.hl7"))
    assert isinstance(order, MappedOrder)
    items = worklist_items(order)
    assert [i.AccessionNumber for i in items] == ["ACC20261130001", "ACC20261130002"]


def test_bundled_folder_is_the_top_level_mappings_folder():
    assert BUNDLED.resolve() == (Path(__file__).resolve().parent.parent / "mappings").resolve()


# -- SIU: appointments as orders (siu-example, sender SCHEDULER) -----------------------------------

SIU_MSH = (
    "MSH|^~\\&|{app}|HOSPITAL|MWLBROKER|RADIOLOGY|20261201090000||SIU^{trigger}^SIU_S12|C1|P|2.5.1"
)
SIU_PID = "PID|1||PID1^^^HOSPITAL^MR||DOE^JANE||19800101|F"
RESOURCES = (
    "RGS|1|A",
    "AIS|1|A|74177^CT ABDOMEN^C4|20261204103000|||20|min",
    "AIG|1|A|CT01^CT scanner 1^L",
    "AIL|1|A|RAD^CTROOM1^^HOSPITAL",
)


def sch(status: str = "Booked", appointment: str = "APT1", start: str = "20261204103000") -> str:
    """An SCH with SCH-1/SCH-2 appointment IDs, SCH-11 timing (start, priority R), SCH-25."""
    fields = ["SCH", "PA1^HIS", f"{appointment}^SCHEDULER"] + [""] * 23
    fields[11] = f"^^M20^{start}^^R"
    fields[25] = f"{status}^{status}^HL70278"
    return "|".join(fields)


def siu(
    trigger: str = "S12",
    *resources: str,
    status: str = "Booked",
    app: str = "SCHEDULER",
    head: tuple[str, ...] = (),
) -> HL7Message:
    """An SIU^Sxx from the scheduler: MSH, SCH, PID, then the resource segments."""
    segments = [
        SIU_MSH.format(app=app, trigger=trigger),
        *head,
        sch(status),
        SIU_PID,
        *(resources or RESOURCES),
    ]
    return parse_message("\r".join(segments).encode("ascii"))


def siu_profile(
    section: str = "", extra: str = "", missing: str = "{AccessionNumber: from_filler}"
) -> str:
    """A small SIU profile; ``section`` holds extra lines of the SIU entry (4 spaces)."""
    return f"""\
profile: s
status: {{NW/*: SCHEDULED, XO/*: SCHEDULED, XO/IP: STARTED, CA/*: CANCELED, SC/*: STARTED}}
missing: {missing}
{extra}
messages:
  SIU:
{section}
    patient:
      PatientID: PID-3.1
    procedure:
      AccessionNumber: OBR-18
    step:
      ScheduledProcedureStepStartTime: {{first: [AIS-4, SCH-11.4], transform: hl7_time}}
      ScheduledStationName: AIG-3.1
"""


def test_siu_sample_fields_come_from_sch_ais_aig_ail(bundled):
    order = bundled.map_order(sample("11_siu_s12_v251.hl7"))
    assert order.profile == "siu-example"
    assert (order.order_control, order.order_status) == ("NW", "SC")  # S12, SCH-25 Booked
    assert order.step_status is StepStatus.SCHEDULED
    assert (order.placer_order_number, order.filler_order_number) == ("PA20261130017", "APT778123")
    assert order.patient.attributes["PatientName"] == "LINDQVIST^ERIK^J^MR"
    assert order.order["ReferringPhysicianName"] == "PATEL^ANIKA^^DR"
    [step] = order.steps
    # No accession in the SIU: the filler appointment ID (SCH-2) and the item number.
    assert step.accession_number == step.requested_procedure_id == step.sps_id == "APT778123-1"
    assert UID(step.study_instance_uid).is_valid
    assert step.procedure["RequestedProcedureCodeSequence"][0]["CodeValue"] == "74177"  # AIS-3
    assert step.procedure["RequestedProcedurePriority"] == "ROUTINE"  # SCH-11.6
    assert step.step == {
        "ScheduledProcedureStepStartDate": "20261204",  # AIS-4
        "ScheduledProcedureStepStartTime": "103000",
        "ScheduledProcedureStepEndDate": "20261204",  # + AIS-7 20 AIS-8 min
        "ScheduledProcedureStepEndTime": "105000",
        "ScheduledProcedureStepDescription": "CT ABDOMEN AND PELVIS W/CONTRAST",
        "Modality": "CT",  # AIG-3.1 CT01 in the resources table
        "ScheduledStationAETitle": "CT_MAIN",
        "ScheduledStationName": "CT1",
        "ScheduledProcedureStepLocation": "CTROOM1",  # AIL-3.2
        "ScheduledProcedureStepID": "APT778123-1",
    }


@pytest.mark.parametrize(
    ("trigger", "status", "control", "order_status", "step_status"),
    [
        ("S12", "Booked", "NW", "SC", StepStatus.SCHEDULED),
        ("S13", "Booked", "XO", "SC", StepStatus.SCHEDULED),  # rescheduled
        ("S14", "Booked", "XO", "SC", StepStatus.SCHEDULED),  # modified
        ("S14", "Started", "XO", "IP", StepStatus.STARTED),
        ("S14", "Noshow", "XO", "CA", StepStatus.CANCELED),  # siu-example's XO/CA
        ("S15", "Cancelled", "CA", "CA", StepStatus.CANCELED),
        ("S15", "", "CA", "", StepStatus.CANCELED),  # CA/* in ihe-swf
        ("S12", "Unheard", "NW", "", StepStatus.SCHEDULED),  # not in the table: no status
    ],
)
def test_siu_trigger_gives_the_order_control(
    bundled, trigger, status, control, order_status, step_status
):
    order = bundled.map_order(siu(trigger, status=status))
    assert (order.order_control, order.order_status) == (control, order_status)
    assert order.step_status is step_status
    assert order.steps[0].sps_id == "APT1-1"  # the same step in every message


def test_siu_reschedule_moves_the_start_and_keeps_the_identifiers(bundled):
    new = bundled.map_order(siu("S12")).steps[0]
    moved = bundled.map_order(
        siu("S13", "RGS|1|U", "AIS|1|U|74177^CT ABDOMEN^C4|20261205091500|||45|min", "AIG|1|U|CT01")
    ).steps[0]
    assert moved.step["ScheduledProcedureStepStartDate"] == "20261205"
    assert moved.step["ScheduledProcedureStepEndTime"] == "100000"  # 09:15 + 45 min
    for attribute in ("AccessionNumber", "RequestedProcedureID", "StudyInstanceUID"):
        assert moved.procedure[attribute] == new.procedure[attribute]
    assert moved.sps_id == new.sps_id


def test_siu_start_falls_back_to_sch_11(bundled):
    order = bundled.map_order(siu("S12", "RGS|1|A", "AIS|1|A|74177^CT ABDOMEN^C4", "AIG|1|A|CT01"))
    step = order.steps[0].step
    assert step["ScheduledProcedureStepStartTime"] == "103000"  # SCH-11.4
    assert "ScheduledProcedureStepEndTime" not in step  # no AIS-7 duration


def test_siu_items_read_the_resources_of_their_own_rgs_group(bundled):
    order = bundled.map_order(
        siu(
            "S12",
            "RGS|1|A",
            "AIS|1|A|74177^CT ABDOMEN^C4|20261204103000|||20|min",
            "AIS|2|A|71260^CT THORAX^C4|20261204105000|||15|min",
            "AIG|1|A|CT01",
            "RGS|2|A",
            "AIS|3|A|70551^MR BRAIN^C4|20261204140000|||1|h",
            "AIL|1|A|RAD^MRROOM1^^HOSPITAL",
            "RGS|3|A",
            "AIS|4|A|76700^US ABDOMEN^C4|20261204160000",
        )
    )
    assert [s.step.get("ScheduledStationAETitle") for s in order.steps] == [
        "CT_MAIN",  # the AIG after both AIS of the first group
        "CT_MAIN",
        "MR_NEURO",  # no AIG in its group: its room (AIL-3.2) in the table
        None,  # nothing in its group; never the neighbours' AIG or AIL
    ]
    assert [s.step.get("ScheduledProcedureStepEndTime") for s in order.steps] == [
        "105000",
        "110500",
        "150000",  # 1 h
        None,
    ]
    assert [s.accession_number for s in order.steps] == ["APT1-1", "APT1-2", "APT1-3", "APT1-4"]


def test_siu_cancellation_may_leave_out_the_services(bundled):
    cancel = bundled.map_order(siu("S15", "RGS|1|D", status="Cancelled"))
    assert (cancel.order_control, cancel.step_status) == ("CA", StepStatus.CANCELED)
    assert cancel.steps == [] and cancel.filler_order_number == "APT1"
    with pytest.raises(MappingError, match=r"SIU\^S12 without an AIS segment: nothing to schedule"):
        bundled.map_order(siu("S12", "RGS|1|A"))


def test_siu_order_numbers_come_from_an_orc_when_there_is_one(bundled):
    order = bundled.map_order(siu("S12", head=("ORC|SC|ORD7^RIS|FORD7^RIS||CM",)))
    assert (order.placer_order_number, order.filler_order_number) == ("ORD7", "FORD7")
    assert order.order_control == "NW" and order.order_status == "SC"  # ORC-1 / ORC-5 not read
    assert order.steps[0].accession_number == "FORD7-1"


def test_siu_from_another_sender_is_not_mapped_and_answered_ar(bundled):
    with pytest.raises(NotMappedForSender) as raised:
        bundled.map_order(siu("S12", app="RIS"))
    assert raised.value.ack_code == "AR" and raised.value.location == "MSH-3"
    assert "mapped only for other senders: siu-example for SCHEDULER / *" in str(raised.value)
    assert isinstance(raised.value, MappingError)


def test_siu_control_table_changes_and_leaves_out_triggers(tmp_path):
    text = siu_profile(
        "    control: {S14: SC, S13: ~}\n    order_status: {field: SCH-25, transform: upper}"
    )
    mappings = load_profile(tmp_path, text.replace("SC/*: STARTED", "SC/ST: STARTED"))
    assert mappings.supported_types == {"SIU^S12", "SIU^S14", "SIU^S15"}
    order = mappings.map_order(siu("S14", status="St"))
    assert (order.order_control, order.order_status) == ("SC", "ST")
    assert order.step_status is StepStatus.STARTED
    with pytest.raises(MappingError) as raised:
        mappings.map_order(siu("S14", status="Booked"))
    text = str(raised.value)
    assert "no status for SIU^S14 (order control 'SC', control: at " in text
    assert "with order status 'BOOKED' (from SCH-25, order_status: at " in text
    assert "turn it into an ORC-5 code" in text and raised.value.location == "SCH-25"


def test_siu_per_trigger_entry_and_extends(tmp_path):
    folder = profile_folder(
        tmp_path,
        siu_profile(
            "    repeat: AIS",
            extra="match: {sending_application: SCHEDULER}",
            missing="{AccessionNumber: allow, RequestedProcedureID: allow, "
            "ScheduledProcedureStepID: generate}",
        ),
        "base.yaml",
    )
    profile_folder(
        tmp_path,
        """\
profile: child
extends: s
priority: 1
match: {sending_application: SCHEDULER}
messages:
  SIU:
    control: {S15: ~}
  SIU^S15:
    control: DC
    patient: {PatientID: PID-3.1}
""",
        "child.yaml",
    )
    (folder / "base.yaml").write_text(
        (folder / "base.yaml")
        .read_text()
        .replace("CA/*: CANCELED", "CA/*: CANCELED, DC/*: DISCONTINUED")
    )
    mappings = load_mappings(folder)
    [child] = [p for p in mappings.profiles if p.name == "child"]
    assert child.handled_types == {"SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15"}
    assert child.messages["SIU"].control == {"S12": "NW", "S13": "XO", "S14": "XO"}
    cancel = mappings.map_order(siu("S15", "RGS|1|D"))
    assert (cancel.profile, cancel.order_control) == ("child", "DC")
    assert cancel.step_status is StepStatus.DISCONTINUED
    new = mappings.map_order(siu("S12"))
    assert new.profile == "child" and new.steps[0].step["ScheduledStationName"] == "CT01"
    assert new.steps[0].accession_number is None  # missing: AccessionNumber: allow


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("from_placer", "PA1-1"), ("from_filler", "APT1-1"), ("generate", r"[0-9A-F]{16}")],
)
def test_missing_accession_from_the_order_numbers(tmp_path, policy, expected):
    mappings = load_profile(tmp_path, siu_profile(missing=f"{{AccessionNumber: {policy}}}"))
    step = mappings.map_order(siu("S12")).steps[0]
    assert re.fullmatch(expected, step.accession_number)
    assert step.sps_id == step.requested_procedure_id == step.accession_number  # from_accession
    assert mappings.map_order(siu("S14")).steps[0].accession_number == step.accession_number


def test_missing_accession_from_placer_for_orders_and_its_limits(tmp_path):
    mappings = load_profile(
        tmp_path, order_profile(extra="missing: {AccessionNumber: from_placer}")
    )
    order = mappings.map_order(message(PID, ORC, obr(""), obr("", sps="SPS2")))
    assert [s.accession_number for s in order.steps] == ["PL1-1", "PL1-2"]
    assert [s.sps_id for s in order.steps] == ["PL1-1", "PL1-2"]  # from_accession
    long_order = "ORC|NW|PLACER-NUMBER-15||SC"
    with pytest.raises(MappingError, match="'PLACER-NUMBER-15-1' is longer than 16"):
        mappings.map_order(message(PID, long_order, obr("")))
    with pytest.raises(MappingError, match="no placer or filler number to use"):
        mappings.map_order(message(PID, "ORC|NW|||SC", "OBR|1|||CT01||||||||||||||||||CT"))


BROKEN_SIU = """\
profile: broken-siu
status: {NW/*: SCHEDULED, XO/*: SCHEDULED}
messages:
  SIU:
    control: {S16: NW, S14: NEW}
    ordr_status: SCH-25
    step:
      ScheduledProcedureStepEndTime: {end: {start: AIS-4}, transform: hl7_time}
      ScheduledProcedureStepEndDate: {end: {start: AIS-4, duration: AIS-7, unit: AIS-8}}
  SIU^S13:
    control: {S13: ~}
  ORM^O01:
    control: {S12: NW}
"""


def test_broken_siu_entries_report_every_error_with_its_line(tmp_path):
    folder = profile_folder(tmp_path, BROKEN_SIU, "broken.yaml")
    errors = load_errors(folder)
    expected = [
        (4, "SIU^S15 maps to order control CA, but status: has no CA/... entry"),
        (5, "control: 'S16' is not a trigger of SIU (use S12 S13 S14 S15)"),
        (5, "control: S14: 'NEW' is not an order control the broker acts on"),
        (6, "unknown key 'ordr_status' in messages: SIU (did you mean order_status?)"),
        (8, "end: needs duration:"),
        (9, "unknown key 'unit' in end (did you mean units?)"),
        (10, "SIU^S13 leaves out its own trigger in control:"),
        (13, "unknown key 'control' in messages: ORM^O01"),
    ]
    assert len(errors) == len(expected), errors
    for error, (line, text) in zip(errors, expected, strict=True):
        assert error.startswith(f"{folder / 'broken.yaml'}:{line}: "), error
        assert text in error, error


def test_end_of_a_time_span():
    assert t.end_of("20261204103000", "20", "min") == "20261204105000"
    assert t.end_of("202612042330", "90", "") == "20261205010000"  # minutes by default
    assert t.end_of("20261204103000+0100", "1.5", "h") == "20261204120000"
    assert t.end_of("20261204103000", "30", "S") == "20261204103030"
    assert t.end_of("20261231220000", "1", "d") == "20270101220000"
    assert t.end_of("20261204", "20", "min") is None  # no time of day to add to
    with pytest.raises(t.TransformError, match="'twenty' is not a number"):
        t.end_of("20261204103000", "twenty", "min")
    with pytest.raises(t.TransformError, match="duration unit 'fortnight' is not known"):
        t.end_of("20261204103000", "1", "fortnight")
    with pytest.raises(t.TransformError, match="not an HL7 date/time"):
        t.end_of("2026-12-04", "1", "h")


def test_bad_duration_names_the_attribute(bundled):
    resources = ("RGS|1|A", "AIS|1|A|74177^CT^C4|20261204103000|||20|weeks", "AIG|1|A|CT01")
    with pytest.raises(MappingError) as raised:
        bundled.map_order(siu("S12", *resources))
    assert "ScheduledProcedureStepEndDate: duration unit 'weeks' is not known" in str(raised.value)
    assert "(from AIS-4 / TQ1-7 / SCH-11.4 / AIS-7 / AIS-8, rule at " in str(raised.value)
    assert raised.value.location == "AIS-4"
