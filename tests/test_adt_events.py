"""The ADT events a hospital sends all day, over MLLP, as a modality's C-FIND then sees them.

Transfers, discharges, changes of patient class and their cancellations move the visit of the
items still to do; merges of every kind move the orders to the survivor; links show as Other
Patient IDs; anything else is refused AR 201 with what the broker takes; an order or update
under a merged-away ID follows the profile's ``merged_patient:``. The messages are written in
the shapes Epic, Cerner and Meditech interfaces send (PID-3 repetitions, PV1-3 with facility
and bed status, EVN-5 operator, v2.3 / v2.3.1 / v2.5.1 structures).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from mwlbroker.mapping.engine import MappingLoadError, load_mappings
from mwlbroker.mapping.worklist_item import item_from_json
from mwlbroker.store import messages, worklist
from tests.support.dicom_peers import findscu
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.prerequisites import require_tools
from tests.support.workflow import perform

STAMP = "20261206101500"


def msh(sender: str, facility: str, type_name: str, control_id: str, version: str) -> str:
    return f"MSH|^~\\&|{sender}|{facility}|MWLBROKER|RADIOLOGY|{STAMP}||{type_name}|{control_id}|P|{version}"


# -- orders and ADT in vendors' shapes --------------------------------------------------------------


def epic_order(
    control_id: str, patient: str, accession: str, *, pv1: str, version: str = "2.3.1"
) -> bytes:
    """An Epic-shaped ORM^O01 (v2.3.1): MRN~SSN in PID-3, PV1 with department and visit."""
    return hl7(
        msh("EPIC", "EPICADT", "ORM^O01", control_id, version),
        f"PID|1||{patient}^^^EPI^MR~123-45-6789^^^SSA^SS||HARRIS^ANNA^M||19610514|F|||"
        "12 ELM ST^^MADISON^WI^53703",
        pv1,
        f"ORC|NW|P{accession}|F{accession}||SC||^^^20261206140000^^R||{STAMP}|1234^CLERK^ANN",
        segment(
            "OBR",
            f1="1",
            f2=f"P{accession}",
            f3=f"F{accession}",
            f4="IMG123^CT HEAD W/O CONTRAST^EAP",
            f16="5678^WELBY^MARCUS",  # OBR-16 Ordering Provider
            f18=accession,
            f19=f"R{accession}",
            f20=f"S{accession}",
            f24="CT",
        ),
    )


def epic_adt(control_id: str, trigger: str, *segments: str, structure: str = "") -> bytes:
    """An Epic-shaped ADT (v2.5.1): EVN-5 the operator, MSH-9.3 the message structure."""
    structure = structure or f"ADT_{trigger}"
    return hl7(
        msh("EPIC", "EPICADT", f"ADT^{trigger}^{structure}", control_id, "2.5.1"),
        f"EVN|{trigger}|{STAMP}|||E12345^NURSE^NINA",
        *segments,
    )


def cerner_adt(control_id: str, trigger: str, *segments: str) -> bytes:
    """A Cerner-shaped ADT (v2.3): MSH-3 HNAM, Q-style control IDs, no MSH-9.3 structure."""
    return hl7(
        msh("HNAM", "COCH", f"ADT^{trigger}", f"Q{control_id}T1", "2.3"),
        f"EVN|{trigger}|{STAMP}",
        *segments,
    )


def meditech_adt(control_id: str, trigger: str, *segments: str) -> bytes:
    """A Meditech-shaped ADT (v2.3.1): MSH-4 facility mnemonic, EVN-2 only."""
    return hl7(
        msh("MEDITECH", "MGH", f"ADT^{trigger}", control_id, "2.3.1"),
        f"EVN|{trigger}|{STAMP}",
        *segments,
    )


def segment(name: str, **fields: str) -> str:
    """A segment from its fields by number: ``segment("PV1", f2="I", f19="V1")``."""
    numbered = {int(key[1:]): value for key, value in fields.items()}
    return "|".join([name, *(numbered.get(n, "") for n in range(1, max(numbered) + 1))])


def epic_pid(patient: str, name: str = "HARRIS^ANNA^M") -> str:
    return f"PID|1||{patient}^^^EPI^MR~123-45-6789^^^SSA^SS||{name}||19610514|F"


def epic_pv1(klass: str, location: str, visit: str, prior: str = "") -> str:
    # PV1-2 class, PV1-3 location (unit^room^bed^facility^status^^^^building), PV1-6 prior,
    # PV1-8 referring doctor, PV1-10 hospital service, PV1-19 visit number.
    return segment(
        "PV1",
        f1="1",
        f2=klass,
        f3=location,
        f6=prior,
        f8="5678^WELBY^MARCUS",
        f10="MED",
        f19=f"{visit}^^^EPI^VN",
    )


# -- the modality ---------------------------------------------------------------------------------


def find(broker, **keys: str) -> list[Dataset]:
    """A modality's C-FIND asking for the visit attributes and the Other Patient IDs."""
    query = Dataset()
    query.PatientID = keys.get("patient", "")
    query.PatientName = ""
    query.AccessionNumber = keys.get("accession", "")
    query.CurrentPatientLocation = ""
    query.AdmissionID = ""
    query.PatientState = ""
    query.OtherPatientIDsSequence = []
    step = Dataset()
    step.Modality = ""
    step.ScheduledProcedureStepStatus = ""
    query.ScheduledProcedureStepSequence = [step]
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", broker.dicom.port, ae_title="MWLBROKER")
    assert assoc.is_established
    found = []
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None
            if status.Status in (0xFF00, 0xFF01):
                found.append(identifier)
            else:
                assert status.Status == 0x0000, status
    finally:
        assoc.release()
    return found


def only(broker, accession: str) -> Dataset:
    [item] = find(broker, accession=accession)
    return item


def send(broker, *messages_: bytes) -> list[dict[str, list[str]]]:
    with Peer(broker.hl7.port) as peer:
        return [ack_fields(peer.send(message)) for message in messages_]


def accepted(broker, *messages_: bytes) -> None:
    for ack in send(broker, *messages_):
        assert ack["MSA"][1] == "AA", ack


def stored_item(broker, accession: str) -> tuple[str, Dataset]:
    """(status, stored worklist item) of the step of ``accession``, whatever its status."""
    with broker.db.reading() as session:
        [step] = worklist.search_steps(session, accession_number=accession)
        return step.status, item_from_json(step.dataset)


# -- the visit moves on ---------------------------------------------------------------------------


def test_a_transfer_moves_the_open_item_and_its_cancellation_moves_it_back(broker):
    accepted(
        broker,
        epic_order("O1", "E1001", "ACC1001", pv1=epic_pv1("I", "4E^402^B^EHC^^^^^4 EAST", "V1")),
    )
    item = only(broker, "ACC1001")
    assert item.CurrentPatientLocation == "4E 402 B"
    assert item.AdmissionID == "V1"

    # A02: the patient moves to the ICU; PV1-6 says where from.
    accepted(
        broker,
        epic_adt(
            "T1",
            "A02",
            epic_pid("E1001"),
            epic_pv1("I", "ICU^12^A^EHC^^^^^MAIN", "V1", prior="4E^402^B^EHC"),
        ),
    )
    item = only(broker, "ACC1001")
    assert item.CurrentPatientLocation == "ICU 12 A"
    assert item.PatientState == "Inpatient"
    assert item.PatientName == "HARRIS^ANNA^M"

    # A12: the transfer is cancelled; PV1-3 is where the patient was before it.
    accepted(
        broker,
        epic_adt(
            "T2",
            "A12",
            epic_pid("E1001"),
            epic_pv1("I", "4E^402^B^EHC", "V1", prior="ICU^12^A^EHC"),
        ),
    )
    assert only(broker, "ACC1001").CurrentPatientLocation == "4E 402 B"
    with broker.db.reading() as session:
        [step] = worklist.search_steps(session, accession_number="ACC1001")
        events = [
            e for e in worklist.events_for_order(session, step.order_id) if e.event == "visit"
        ]
        audits = list(worklist.audit_for(session, "order", step.order_id))
    assert [e.detail.split(":")[0] for e in events] == ["ADT^A02", "ADT^A12"]
    assert "4E 402 B -> ICU 12 A" in events[0].detail
    # Audited with what it was before, by the message that changed it.
    assert [a.action for a in audits] == ["visit", "visit"]
    assert audits[0].before["CurrentPatientLocation"] == "4E 402 B"
    assert audits[0].after["CurrentPatientLocation"] == "ICU 12 A"
    assert audits[0].message_id == events[0].message_id is not None


def test_discharge_and_its_cancellation_in_cerner_shape(broker):
    accepted(
        broker,
        epic_order("O2", "C2002", "ACC2002", pv1="PV1|1|I|5W^510^01^COCH^^BED^MAIN|||||||MED"),
    )
    # Cerner: the person alias in PID-2, the MRN in PID-3.
    pid = "PID|1|P77^^^COCH^CMRN|C2002^^^EPI^MR||HARRIS^ANNA^M||19610514|F"
    fin = "98765^^^COCH^FIN NBR"  # the Cerner FIN is the visit number
    # A03: discharged; PV1-3 the discharge point, PV1-6 the bed left.
    accepted(
        broker,
        cerner_adt(
            "3",
            "A03",
            pid,
            segment("PV1", f1="1", f2="O", f3="DISCH^^^COCH", f6="5W^510^01^COCH", f19=fin),
        ),
    )
    item = only(broker, "ACC2002")
    assert (item.CurrentPatientLocation, item.AdmissionID, item.PatientState) == (
        "DISCH",
        "98765",
        "Outpatient",
    )
    # A13: the discharge is cancelled; the patient is back in the bed, an inpatient again.
    accepted(
        broker,
        cerner_adt(
            "4",
            "A13",
            pid,
            segment("PV1", f1="1", f2="I", f3="5W^510^01^COCH^^BED^MAIN", f19=fin),
        ),
    )
    item = only(broker, "ACC2002")
    assert (item.CurrentPatientLocation, item.PatientState) == ("5W 510 01", "Inpatient")


def test_a_change_of_patient_class_leaves_started_and_completed_items_alone(broker):
    pv1 = epic_pv1("O", "RADOP^^^EHC", "V3")
    accepted(
        broker,
        epic_order("O3", "M3003", "ACC3001", pv1=pv1),
        epic_order("O4", "M3003", "ACC3002", pv1=pv1),
        epic_order("O5", "M3003", "ACC3003", pv1=pv1),
    )
    with broker.db.reading() as session:
        started = worklist.search_steps(session, accession_number="ACC3002")[0]
        completed = worklist.search_steps(session, accession_number="ACC3003")[0]
    perform(broker, started)
    perform(broker, completed, "COMPLETED")
    before = {a: stored_item(broker, a)[1] for a in ("ACC3002", "ACC3003")}

    # A06 (Meditech, v2.3.1): the outpatient is admitted to 3 West.
    accepted(
        broker,
        meditech_adt(
            "M1",
            "A06",
            "PID|1||M3003^^^EPI^MR||HARRIS^ANNA^M||19610514|F",
            segment("PV1", f1="1", f2="I", f3="3W^301^1^MGH", f6="RADOP^^^EHC", f19="V3A"),
            "MRG|M3003^^^EPI^MR||||V3",
        ),
    )
    item = only(broker, "ACC3001")
    assert (item.PatientState, item.CurrentPatientLocation, item.AdmissionID) == (
        "Inpatient",
        "3W 301 1",
        "V3A",
    )
    for accession, status in (("ACC3002", "STARTED"), ("ACC3003", "COMPLETED")):
        now_status, now_item = stored_item(broker, accession)
        assert now_status == status
        assert now_item.CurrentPatientLocation == before[accession].CurrentPatientLocation
        assert "PatientState" not in now_item

    # A07: back to an outpatient.
    accepted(
        broker,
        meditech_adt(
            "M2",
            "A07",
            "PID|1||M3003^^^EPI^MR||HARRIS^ANNA^M||19610514|F",
            segment("PV1", f1="1", f2="O", f3="RADOP^^^MGH", f19="V3"),
        ),
    )
    item = only(broker, "ACC3001")
    assert (item.PatientState, item.CurrentPatientLocation, item.AdmissionID) == (
        "Outpatient",
        "RADOP",
        "V3",
    )


def test_a_cancelled_admission_updates_the_visit_and_unknown_classes_pass_as_sent(broker):
    accepted(broker, epic_order("O6", "E6006", "ACC6006", pv1=epic_pv1("I", "4E^1^1", "V6")))
    accepted(
        broker,
        epic_adt(
            "A11", "A11", epic_pid("E6006"), segment("PV1", f1="1", f2="Z", f3='""', f19="V6")
        ),
    )
    item = only(broker, "ACC6006")
    assert item.PatientState == "Z"  # not in HL7 table 0004: kept as sent
    assert item.CurrentPatientLocation == ""  # the HL7 null "" clears it


# -- merges -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "structure", "version"),
    [
        ("A18", "ADT_A18", "2.3.1"),
        ("A34", "ADT_A30", "2.3.1"),
        ("A36", "ADT_A30", "2.5.1"),
        ("A39", "ADT_A40", "2.5.1"),
        ("A40", "ADT_A39", "2.5.1"),
    ],
)
def test_each_merge_trigger_moves_the_orders_to_the_survivor(broker, trigger, structure, version):
    accepted(
        broker,
        epic_order("O7", "SURV7", "ACC7001", pv1=epic_pv1("O", "RAD", "V7")),
        epic_order("O8", "DUP7", "ACC7002", pv1=epic_pv1("O", "RAD", "V8")),
    )
    merge = hl7(
        msh("EPIC", "EPICADT", f"ADT^{trigger}^{structure}", f"MG{trigger}", version),
        f"EVN|{trigger}|{STAMP}",
        "PID|1||SURV7^^^EPI^MR||HARRIS^ANNA^M||19610514|F",
        "MRG|DUP7^^^EPI^MR",
    )
    accepted(broker, merge)
    assert sorted(str(i.AccessionNumber) for i in find(broker, patient="SURV7")) == [
        "ACC7001",
        "ACC7002",
    ]
    assert find(broker, patient="DUP7") == []


def test_an_account_merge_changes_no_patient_id_unless_mrg_1_names_another_patient(broker):
    accepted(
        broker,
        epic_order("O9", "P9", "ACC9001", pv1=epic_pv1("O", "RAD", "V9")),
        epic_order("O10", "Q9", "ACC9002", pv1=epic_pv1("O", "RAD", "V10")),
    )
    # A35 proper: accounts of P9 merged (MRG-3 the prior account, MRG-1 P9 itself).
    accepted(
        broker,
        epic_adt(
            "AM",
            "A35",
            "PID|1||P9^^^EPI^MR||HARRIS^ANNA^M||19610514|F|||||||||||ACCT2",
            "MRG|P9^^^EPI^MR||ACCT1",
            structure="ADT_A30",
        ),
    )
    assert [str(i.AccessionNumber) for i in find(broker, patient="Q9")] == ["ACC9002"]
    assert [str(i.AccessionNumber) for i in find(broker, patient="P9")] == ["ACC9001"]
    # Some senders merge patients with A35: MRG-1 names Q9, whom the broker knows, so Q9's
    # orders move to P9 as for A40.
    accepted(
        broker,
        epic_adt(
            "AM2",
            "A35",
            "PID|1||P9^^^EPI^MR||HARRIS^ANNA^M||19610514|F|||||||||||ACCT2",
            "MRG|Q9^^^EPI^MR||ACCT3",
            structure="ADT_A30",
        ),
    )
    assert find(broker, patient="Q9") == []
    assert sorted(str(i.AccessionNumber) for i in find(broker, patient="P9")) == [
        "ACC9001",
        "ACC9002",
    ]


# -- links ------------------------------------------------------------------------------------------


def test_a24_links_and_a37_unlinks_as_other_patient_ids(broker, tmp_path: Path):
    accepted(
        broker,
        epic_order("O11", "L1", "ACC1101", pv1=epic_pv1("O", "RAD", "V11")),
        epic_order("O12", "L2", "ACC1102", pv1=epic_pv1("O", "RAD", "V12")),
    )
    # ADT_A24: PID PV1 PID PV1, the second PID the linked patient.
    link = epic_adt(
        "LK",
        "A24",
        "PID|1||L1^^^EPI^MR||HARRIS^ANNA^M||19610514|F",
        "PV1|1|O",
        "PID|2||L2^^^EPI^MR||HARRIS^ANNE||19610514|F",
        "PV1|1|O",
    )
    accepted(broker, link)
    # The order's own second identifier (the SSN in PID-3's second repetition) stays beside
    # the link.
    for accession, other in (("ACC1101", "L2"), ("ACC1102", "L1")):
        ids = only(broker, accession).OtherPatientIDsSequence
        assert sorted((i.PatientID, i.IssuerOfPatientID, i.TypeOfPatientID) for i in ids) == [
            ("123-45-6789", "SSA", "TEXT"),
            (other, "EPI", "TEXT"),
        ]
    accepted(broker, link)  # the same link again changes nothing
    assert len(only(broker, "ACC1101").OtherPatientIDsSequence) == 2
    # DCMTK's findscu, an independent client, reads the same.
    require_tools("findscu")
    found = findscu(
        broker.dicom.port,
        "AccessionNumber=ACC1101",
        "OtherPatientIDsSequence[0].PatientID",
        "OtherPatientIDsSequence[0].IssuerOfPatientID",
        tmp_path=tmp_path,
    )
    assert found.status == "Success", found.output
    [response] = found.responses
    assert sorted(str(i.PatientID) for i in response.OtherPatientIDsSequence) == [
        "123-45-6789",
        "L2",
    ]

    accepted(
        broker,
        epic_adt(
            "UL",
            "A37",
            "PID|1||L1^^^EPI^MR||HARRIS^ANNA^M||19610514|F",
            "PID|2||L2^^^EPI^MR||HARRIS^ANNE||19610514|F",
            structure="ADT_A37",
        ),
    )
    for accession in ("ACC1101", "ACC1102"):
        ids = only(broker, accession).get("OtherPatientIDsSequence", [])
        assert [str(i.PatientID) for i in ids] == ["123-45-6789"]  # the link gone, the SSN kept


def test_a_link_without_its_second_pid_is_answered_ae(broker):
    [ack] = send(broker, epic_adt("LX", "A24", "PID|1||L1^^^EPI^MR||HARRIS^ANNA"))
    assert ack["MSA"][1] == "AE"
    assert "with 1 PID segment(s): a link names two patients" in ack["ERR"][8], ack
    assert ack["ERR"][2].startswith("PID"), ack


# -- what the broker does not take ------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["A09", "A10", "A14", "A28"])
def test_an_unsupported_trigger_is_refused_ar_201_naming_what_is_taken(broker, trigger):
    [ack] = send(broker, epic_adt(f"U{trigger}", trigger, epic_pid("E1"), "PV1|1|I|4E"))
    assert ack["MSA"][1] == "AR"
    assert ack["ERR"][3].split("^")[0] == "201"  # ERR-3 HL7 error code (table 0357)
    text = ack["ERR"][8].replace("\\S\\", "^")  # ^ is escaped as \S\ in a field
    assert f"ADT^{trigger}" in text and "A02" in text and "A40" in text, text
    with broker.db.reading() as session:
        [row] = messages.latest(session, control_id=f"U{trigger}")
        assert row.status == "rejected"


# -- a merged-away Patient ID -----------------------------------------------------------------------


def merged_pair(broker) -> None:
    accepted(
        broker,
        epic_order("O13", "KEEP", "ACC1301", pv1=epic_pv1("O", "RAD", "V13")),
        epic_order("O14", "GONE", "ACC1302", pv1=epic_pv1("O", "RAD", "V14")),
        epic_adt(
            "MG13",
            "A40",
            "PID|1||KEEP^^^EPI^MR||HARRIS^ANNA^M||19610514|F",
            "MRG|GONE^^^EPI^MR",
            structure="ADT_A39",
        ),
    )


def renamed_order(control_id: str, accession: str, version: str = "2.3.1") -> bytes:
    """An order under the merged-away ID GONE, with that record's (older) spelling."""
    pv1 = epic_pv1("O", "RAD", "V15")
    order = epic_order(control_id, "GONE", accession, pv1=pv1, version=version)
    return order.replace(b"HARRIS^ANNA^M", b"HARRIS^ANA")


def test_an_order_under_a_merged_away_id_is_refused_naming_the_survivor(broker):
    merged_pair(broker)
    with broker.db.reading() as session:
        [merge_row] = messages.latest(session, control_id="MG13")
    [ack] = send(broker, renamed_order("O15", "ACC1303", "2.5.1"))
    assert ack["MSA"][1] == "AE"
    text = ack["ERR"][8]
    assert "patient GONE was merged into KEEP on " in text, text
    assert f"by message {merge_row.id} (MSH-10 MG13); send the order under KEEP" in text
    assert ack["ERR"][2].startswith("PID^1^3"), ack["ERR"]
    # A v2.3.1 sender reads the same in MSA-3 (cut at its 80 characters).
    [ack] = send(broker, renamed_order("O16", "ACC1303"))
    assert ack["MSA"][1] == "AE" and ack["MSA"][3].startswith("patient GONE was merged into KEEP")
    # An update under the old ID is refused too; the survivor's name is what it was.
    [ack] = send(broker, epic_adt("U15", "A08", epic_pid("GONE", "HARRIS^ANA"), "PV1|1|O"))
    assert ack["MSA"][1] == "AE" and "send the update under KEEP" in ack["ERR"][8]
    assert find(broker, accession="ACC1303") == []
    assert {str(i.PatientName) for i in find(broker, patient="KEEP")} == {"HARRIS^ANNA^M"}


def test_use_survivor_puts_the_order_on_the_survivor_without_its_demographics(
    broker_factory, tmp_path: Path
):
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "site.yaml").write_text(
        "profile: site\nextends: ihe-swf\npriority: 10\nmerged_patient: use_survivor\n"
        "match:\n  sending_application: '*'\n"
    )
    broker = broker_factory(mappings__dir=str(folder))
    merged_pair(broker)
    accepted(broker, renamed_order("O15", "ACC1303"))
    item = only(broker, "ACC1303")
    assert (item.PatientID, item.PatientName) == ("KEEP", "HARRIS^ANNA^M")
    # A transfer under the old ID moves the survivor's open items, its name unchanged.
    accepted(
        broker,
        epic_adt("T15", "A02", epic_pid("GONE", "HARRIS^ANA"), epic_pv1("I", "ICU^3", "V15")),
    )
    assert {str(i.CurrentPatientLocation) for i in find(broker, patient="KEEP")} == {"ICU 3"}
    assert {str(i.PatientName) for i in find(broker, patient="KEEP")} == {"HARRIS^ANNA^M"}


# -- the profile language ---------------------------------------------------------------------------


def check(folder: Path) -> list[str]:
    """``mwlbroker mappings check`` of a folder: each error as FILE:LINE: what is wrong."""
    try:
        load_mappings(folder)
    except MappingLoadError as failed:
        return [str(error) for error in failed.errors]
    return []


def test_a_bad_merged_patient_policy_and_identity_in_visit_are_named_with_their_line(
    tmp_path: Path,
):
    (tmp_path / "site.yaml").write_text(
        "profile: site\n"
        "extends: ihe-swf\n"
        "merged_patient: apply\n"
        "messages:\n"
        "  ADT:\n"
        "    visit:\n"
        "      PatientID: PV1-19.1\n"
    )
    errors = check(tmp_path)
    assert any(
        "site.yaml:3:" in e and "'apply' is not a policy (choose refuse | use_survivor)" in e
        for e in errors
    ), errors
    assert any("site.yaml:6:" in e and "belongs in patient:" in e for e in errors), errors
    (tmp_path / "site.yaml").write_text(
        "profile: site\nextends: ihe-swf\nmerged_patient: use_survivor\n"
    )
    assert check(tmp_path) == []
