"""Lenient where a modality would be, strict where it matters, and error codes that say what.

Over real MLLP and DICOM, on both databases: free text longer than its VR is cut with a
warning (the message's record, the AA's ERR of severity W) unless the profile says
``too_long: reject``; the keys the worklist is matched on are never cut; the ACK's text never
shows where the broker keeps its files; each failure carries the HL7 table 0357 code that says
what happened, at the right ERR location.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from mwlbroker.domain.accounts import Role
from mwlbroker.domain.messages import AckCode, MessageWarning
from mwlbroker.hl7v2.ack import build_ack
from mwlbroker.hl7v2.header import read_header
from mwlbroker.mapping.value_fit import STRICT_KEYWORDS, truncate
from tests.support.hl7_messages import hl7
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli
from tests.support.samples import SAMPLES
from tests.support.web_client import login

LONG_PHYSICIAN = SAMPLES / "30_omi_o23_long_physician_v251.hl7"
# OBR-16 of the sample as xcn_to_pn makes it a PN: 68 characters in one component group.
REQUESTING = "RequestingPhysicianFN^RequestingPhysicianGN^RequestingPhysicianMN^DR"
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+[\w.-]+")


def wire(path: Path) -> bytes:
    """A sample file as a sender puts it on the wire: segments ended by CR."""
    return path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r")


def segments(ack: bytes) -> list[list[str]]:
    """Every segment of an ACK, split so that index n is field n (MSH-n for MSH)."""
    found = []
    for line in ack.decode("latin-1").split("\r"):
        if line:
            parts = line.split("|")
            found.append(["MSH", "|", *parts[1:]] if parts[0] == "MSH" else parts)
    return found


def errs(ack: bytes) -> list[list[str]]:
    return [segment for segment in segments(ack) if segment[0] == "ERR"]


def msa(ack: bytes) -> list[str]:
    return next(segment for segment in segments(ack) if segment[0] == "MSA")


def field(segment: list[str], number: int) -> str:
    return segment[number] if len(segment) > number else ""


def find(port: int, accession: str) -> list[Dataset]:
    """A modality's C-FIND for one accession number, asking for the physicians' names."""
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert assoc.is_established
    query = Dataset()
    query.AccessionNumber = accession
    query.PatientID = ""
    query.RequestingPhysician = ""
    query.ReferringPhysicianName = ""
    step = Dataset()
    step.Modality = ""
    step.ScheduledStationAETitle = ""
    query.ScheduledProcedureStepSequence = [step]
    found = []
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None
            if status.Status in (0xFF00, 0xFF01):
                found.append(identifier)
    finally:
        assoc.release()
    return found


def show(database_url: str, message_id: str, *, as_json: bool) -> str:
    args = ["messages", "show", message_id, *(["--json"] if as_json else [])]
    done = run_cli(*args, env=cli_env(database_url))
    assert done.returncode == 0, done.stderr
    return done.stdout


def latest_id(broker, control_id: str) -> str:
    from mwlbroker.store import messages

    with broker.db.reading() as session:
        [row] = messages.latest(session, control_id=control_id)
    return str(row.id)


def omi(
    control_id: str,
    *,
    accession: str = "ACC-L1",
    physician: str = "4455^SMITH^JANE^^^DR",
    birth_date: str = "19610615",
    version: str = "2.5.1",
    control: str = "NW",
    order_status: str = "SC",
    patient: str = "PATL1",
    sender: str = "RIS",
    extra: tuple[str, ...] = (),
) -> bytes:
    """A small OMI^O23 in the shape most v2.5.1 senders use, with its parts to vary."""
    return hl7(
        f"MSH|^~\\&|{sender}|HOSPITAL|MWLBROKER|RADIOLOGY|20261201093155||OMI^O23^OMI_O23|"
        f"{control_id}|P|{version}",
        f"PID|1||{patient}^^^HOSPITAL^MR||ROE^RICHARD||{birth_date}|M",
        f"ORC|{control}|PL{control_id}|FL{control_id}||{order_status}",
        "TQ1|1||||||20261208151000||R",
        f"OBR|1|PL{control_id}|FL{control_id}|24627-2^CT Chest^LN||||||||||||{physician}",
        f"IPC|{accession}|RP{control_id}|1.2.826.0.1.3680043.10.543.{len(control_id)}9|"
        f"SPS{control_id}|CT",
        *extra,
    )


def orm(control_id: str, *, version: str, physician: str) -> bytes:
    """An ORM^O01 as v2.3.1 and v2.4 RIS send it, with OBR-16 given."""
    return hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261201093155||ORM^O01|{control_id}|P|"
        f"{version}",
        "PID|1||PATL2^^^HOSPITAL^MR||ROE^RICHARD||19610615|M",
        f"ORC|NW|PL{control_id}|FL{control_id}||SC||^^^20261208151000^^R",
        f"OBR|1|PL{control_id}|FL{control_id}|CTCHEST^CT chest^L||||||||||||{physician}||"
        f"A{control_id}|R{control_id}|S{control_id}||||CT",
    )


def site_folder(tmp_path: Path, profile: str) -> Path:
    """A mappings folder holding the bundled IHE profile and one site profile."""
    folder = tmp_path / "site-mappings"
    folder.mkdir()
    (folder / "ihe-swf.yaml").write_text((SAMPLES.parent / "mappings" / "ihe-swf.yaml").read_text())
    (folder / "site.yaml").write_text(profile)
    return folder


STRICT_SITE = """\
profile: strict-site
extends: ihe-swf
priority: 10
match:
  sending_application: RIS
too_long: reject
tables:
  stations:
    CT: CT_SCANNER1
messages:
  OMI^O23:
    step:
      ScheduledStationAETitle: {field: IPC-5, transform: {lookup: {table: stations, strict: true}}}
"""


# -- too long: cut with a warning where a modality does not care ---------------------------------


def test_dcm4chee_shaped_omi_with_a_68_character_physician_is_accepted_with_warnings(
    broker, database_url
):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(wire(LONG_PHYSICIAN))
        again = peer.send(wire(LONG_PHYSICIAN))  # a resend is answered the same way
    assert msa(ack)[1] == "AA", ack
    warnings = errs(ack)
    assert [field(err, 2) for err in warnings] == ["OBR^1^16", "PV1^1^8"]
    for err in warnings:
        assert field(err, 3) == "102^Data type error^HL70357"
        assert field(err, 4) == "W"  # ERR-4 Severity, HL7 table 0516: warning
    assert "RequestingPhysician" in field(warnings[0], 8)
    assert "truncated" in field(warnings[0], 8)
    assert "accepted with a warning" in msa(ack)[3]
    assert msa(again)[1] == "AA"
    assert [field(err, 2) for err in errs(again)] == ["OBR^1^16", "PV1^1^8"]

    [item] = find(broker.dicom.port, "ACC-shi3Ub")
    # Whole components kept: the cut would have fallen inside the prefix, so it is left out.
    assert str(item.RequestingPhysician) == "RequestingPhysicianFN^RequestingPhysicianGN"
    assert len(str(item.RequestingPhysician)) <= 64
    assert str(item.ReferringPhysicianName) == (
        "ReferringPhysicianFN^ReferringPhysicianGN^ReferringPhysicianMN"
    )
    assert item.PatientID == "PATID1234"  # keys untouched
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT_SCANNER1"

    message_id = latest_id(broker, "1001130")
    record = json.loads(show(database_url, message_id, as_json=True))
    assert record["status"] == "processed" and record["error"] is None
    assert [w["location"] for w in record["warnings"]] == ["OBR-16", "PV1-8"]
    assert "68 characters" in record["warnings"][0]["text"]
    assert record["duplicates"] == 1
    text = show(database_url, message_id, as_json=False)
    assert re.search(r"warning 1 +OBR-16: RequestingPhysician \(PN\)", text), text


def test_an_epic_shaped_orm_with_a_long_ordering_provider_is_accepted_with_a_warning(broker):
    # Epic fills OBR-16 with the NPI, degree and assigning authority, and repeats it per ID type.
    provider = (
        "1639485720^VANDERHOEVEN-MONTGOMERY-WHITFIELD^ALEXANDRA-KATHERINE^ELIZABETH^JR^DR^MD^^"
        "NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI~E4521^VANDERHOEVEN-MONTGOMERY-WHITFIELD^"
        "ALEXANDRA-KATHERINE^^^^^^EPIC^^^^PROVID"
    )
    message = hl7(
        "MSH|^~\\&|EPIC|EPICADT|MWLBROKER|RADIOLOGY|20261201093155||ORM^O01|EP1001|P|2.3",
        "PID|1||E8837261^^^EPI^MR~123-45-6789^^^SSA^SS||SMITH^JOHN^^^^^L||19700101|M",
        "PV1|1|O|RAD^^^CHI^^^^^||||1639485720^WELBY^MARCUS^^^^^^NPI^L^^^NPI|||||||||||8812731",
        "ORC|NW|EP1001^EPC|||SC||^^^20261208151000^^R||20261201093155|CLERK^CLERK^A|||"
        "RAD^^^CHI^^^^^",
        f"OBR|1|EP1001^EPC||IMG123^CT CHEST WO CONTRAST^EAP^^CT CHEST||||||||||||{provider}||"
        "EPACC1001|EPRP1001|EPSPS1001||||CT",
    )
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(message)
    assert msa(ack)[1] == "AA", ack
    assert errs(ack) == []  # v2.3: the warning is in MSA-3
    assert "RequestingPhysician (PN) from OBR-16" in msa(ack)[3]
    [item] = find(broker.dicom.port, "EPACC1001")
    assert str(item.RequestingPhysician) == (
        "VANDERHOEVEN-MONTGOMERY-WHITFIELD^ALEXANDRA-KATHERINE^ELIZABETH"
    )


@pytest.mark.parametrize("version", ["2.3.1", "2.4"])
def test_before_v2_5_the_warning_is_in_msa_3_and_no_err_is_sent(broker, version):
    # ERR-1 (v2.3.1, v2.4) has no severity: an ERR in an AA would read as an error.
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(orm(f"W{version}", version=version, physician="^" + REQUESTING))
    assert msa(ack)[1] == "AA", ack
    assert errs(ack) == []
    assert msa(ack)[3].startswith("accepted with a warning: RequestingPhysician (PN)")


def test_a_message_that_fits_gets_a_plain_aa(broker):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(omi("FIT1"))
    assert msa(ack)[1:] == ["AA", "FIT1"] and errs(ack) == []


def test_too_long_reject_in_a_site_profile_answers_ae_102_naming_the_field(
    broker_factory, tmp_path
):
    folder = site_folder(tmp_path, STRICT_SITE)
    broker = broker_factory(mappings__dir=str(folder))
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(omi("REJ1", physician="^" + REQUESTING))
    assert msa(ack)[1] == "AE", ack
    [err] = errs(ack)
    assert field(err, 2) == "OBR^1^16"
    assert field(err, 3) == "102^Data type error^HL70357"
    assert field(err, 4) == "E"
    assert "RequestingPhysician (PN) from OBR-16" in field(err, 8)
    assert "too_long: reject at site.yaml:" in field(err, 8)
    assert str(folder) not in ack.decode("latin-1")
    assert not ABSOLUTE_PATH.search(ack.decode("latin-1"))
    assert find(broker.dicom.port, "ACC-L1") == []  # nothing half-applied


def test_an_over_long_accession_number_stays_strict(broker):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(omi("KEY1", accession="ACC-0123456789ABCDEF"))  # 20 > SH 16
    assert msa(ack)[1] == "AE", ack
    [err] = errs(ack)
    assert field(err, 2) == "IPC^1^1"
    assert field(err, 3).startswith("102^")
    assert "AccessionNumber is a key the worklist is matched on: never truncated" in field(err, 8)
    assert find(broker.dicom.port, "ACC-0123456789*") == []


def test_a_date_that_is_not_a_date_is_still_refused(broker):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(omi("DAT1", birth_date="19611345"))
    assert msa(ack)[1] == "AE", ack
    [err] = errs(ack)
    assert field(err, 2) == "PID^1^7"
    assert field(err, 3).startswith("102^")


def test_the_warnings_are_on_the_web_page_and_in_the_api(broker):
    broker.accounts.add_user("admin", "correct horse battery", Role.ADMIN)
    client = broker.build_web_app().test_client()
    login(client, "admin", "correct horse battery")
    with Peer(broker.hl7.port) as peer:
        assert msa(peer.send(wire(LONG_PHYSICIAN)))[1] == "AA"
    message_id = latest_id(broker, "1001130")
    detail = client.get(f"/api/messages/{message_id}").get_json()
    assert detail["status"] == "processed"
    assert [w["location"] for w in detail["warnings"]] == ["OBR-16", "PV1-8"]
    assert {w["code"] for w in detail["warnings"]} == {102}
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert "Warnings" in page and "OBR-16: RequestingPhysician (PN) from OBR-16" in page


def test_a_message_refused_as_too_long_is_accepted_with_a_warning_after_the_profile_changes(
    broker_factory, tmp_path, database_url
):
    folder = site_folder(tmp_path, STRICT_SITE)
    broker = broker_factory(mappings__dir=str(folder))
    with Peer(broker.hl7.port) as peer:
        assert msa(peer.send(omi("RP1", physician="^" + REQUESTING)))[1] == "AE"
    message_id = latest_id(broker, "RP1")
    # The site decides that a cut physician's name is fine after all, and reprocesses.
    site = folder / "site.yaml"
    site.write_text(site.read_text().replace("too_long: reject", "too_long: truncate"))
    env = cli_env(database_url, MWLBROKER_MAPPINGS_DIR=str(folder))
    done = run_cli("messages", "reprocess", message_id, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processed (AA)" in done.stdout
    assert "warning at OBR-16: RequestingPhysician (PN)" in done.stdout
    record = json.loads(show(database_url, message_id, as_json=True))
    assert record["status"] == "processed" and record["error"] is None
    assert [w["location"] for w in record["warnings"]] == ["OBR-16"]
    [item] = find(broker.dicom.port, "ACC-L1")
    assert str(item.RequestingPhysician) == "RequestingPhysicianFN^RequestingPhysicianGN"


# -- no server paths, and codes that say what happened -------------------------------------------


def test_no_ack_text_shows_a_path_of_the_server(broker_factory, tmp_path, database_url):
    folder = site_folder(tmp_path, STRICT_SITE)
    broker = broker_factory(mappings__dir=str(folder))
    failures = {
        "too long, rejected": omi("P1", physician="^" + REQUESTING),
        "no status pair": omi("P2", control="SC", order_status="ZZ"),
        "not in a table": omi("P3").replace(b"|CT\r", b"|MR\r"),
        "not a date": omi("P4", birth_date="1961-06-15"),
        "no patient ID": omi("P5", patient=""),
    }
    answers = {}
    with Peer(broker.hl7.port) as peer:
        for name, message in failures.items():
            answers[name] = peer.send(message)
    server_paths = {str(folder), str(folder.resolve()), str(tmp_path), str(SAMPLES.parent)}
    for name, ack in answers.items():
        text = ack.decode("latin-1")
        assert msa(ack)[1] == "AE", (name, text)
        assert not any(path in text for path in server_paths), (name, text)
        assert not ABSOLUTE_PATH.search(text), (name, text)
    # The profile and line are still named, relative to the mappings folder.
    assert "site.yaml:" in answers["too long, rejected"].decode()
    assert "ihe-swf.yaml:" in answers["no status pair"].decode()
    assert "site.yaml:" in answers["not in a table"].decode()


def test_an_internal_fault_keeps_its_detail_out_of_the_ack(broker, monkeypatch):
    # Stands for a fault nobody foresaw, whose words hold a file and SQL.
    def broken(raw: bytes, truncated: bool):
        raise RuntimeError("boom in /srv/mwl/lib/reader.py: SELECT * FROM patient")

    monkeypatch.setattr(broker.ingest, "_read", broken)
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(omi("FAULT2"))
    text = ack.decode("latin-1")
    assert msa(ack)[1] == "AR"
    assert "boom" not in text and "SELECT" not in text and "/srv" not in text
    [err] = errs(ack)
    assert field(err, 3).startswith("207^")  # a real internal fault
    assert "the details are in the broker's log" in field(err, 8)
    from mwlbroker.store import messages

    with broker.db.reading() as session:
        [row] = messages.latest(session, control_id="FAULT2")
    assert "boom in /srv/mwl/lib/reader.py" in row.error  # the record keeps it


@pytest.mark.parametrize(
    ("message", "code", "location"),
    [
        pytest.param(omi("C101", patient=""), "101", "PID^1^3", id="101-required-field-missing"),
        pytest.param(omi("C102", birth_date="2026-12-01"), "102", "PID^1^7", id="102-data-type"),
        pytest.param(
            omi("C103", control="SC", order_status="ZZ"), "103", "ORC^1^1", id="103-table-value"
        ),
        pytest.param(
            hl7(
                "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261201093155||OMI^O23^OMI_O23|"
                "C100|P|2.5.1",
                "PID|1||PATC100^^^HOSPITAL^MR||ROE^RICHARD||19610615|M",
                "TQ1|1||||||20261208151000||R",
                "OBR|1|PLC100|FLC100|24627-2^CT Chest^LN",
                "IPC|ACC-C100|RPC100|1.2.3.100|SPSC100|CT",
            ),
            "100",
            "ORC",
            id="100-no-ORC-segment",
        ),
        pytest.param(
            hl7(
                "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261201093155||SIU^S12^SIU_S12|"
                "C200|P|2.5.1",
                "SCH|PA1|APT1||||||||||^^^20261208151000|||||||||||||||Booked",
                "PID|1||PATC200^^^HOSPITAL^MR||ROE^RICHARD||19610615|M",
                "RGS|1",
                "AIS|1||74177^CT abdomen^C4|20261208151000|||20|min",
            ),
            "200",
            "MSH",
            id="200-type-mapped-for-other-senders-only",
        ),
    ],
)
def test_each_failure_names_its_table_0357_code(broker, message, code, location):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(message)
    assert msa(ack)[1] in ("AE", "AR"), ack
    [err] = errs(ack)
    assert field(err, 3).startswith(f"{code}^"), err
    assert field(err, 2).startswith(location), err
    assert field(err, 4) == "E"


def test_an_empty_order_control_is_101_at_orc_1(broker):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(omi("C101B", control=""))
    [err] = errs(ack)
    assert field(err, 2) == "ORC^1^1" and field(err, 3).startswith("101^"), err


def test_a_second_mrg_in_a_merge_is_100(broker):
    with Peer(broker.hl7.port) as peer:
        ack = peer.send(
            hl7(
                "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261201093155||ADT^A40^ADT_A39|"
                "C100M|P|2.5.1",
                "EVN|A40|20261201093155",
                "PID|1||PATM1^^^HOSPITAL^MR||ROE^RICHARD||19610615|M",
                "MRG|PATM2^^^HOSPITAL^MR",
                "MRG|PATM3^^^HOSPITAL^MR",
            )
        )
    assert msa(ack)[1] == "AE"
    [err] = errs(ack)
    assert field(err, 2) == "MRG^1" and field(err, 3).startswith("100^"), err


@pytest.mark.parametrize("version", ["2.5", "2.6", "2.7", "2.8"])
def test_a_warning_err_has_the_layout_of_the_versions_err(version):
    # v2.7+ senders (where hl7.accepted_versions takes them): ERR-1 stays an empty first field.
    header = read_header(
        f"MSH|^~\\&|RIS|HOSP|MWL|RAD|20261127||OMI^O23^OMI_O23|W1|P|{version}".encode()
    )
    warning = MessageWarning("RequestingPhysician cut, see /opt/mwl/mappings/x.yaml:3", "OBR-16")
    ack = build_ack(header, AckCode.ACCEPT, warnings=[warning])
    [err] = errs(ack)
    assert field(err, 1) == ""
    assert (field(err, 2), field(err, 4)) == ("OBR^1^16", "W")
    assert field(err, 3) == "102^Data type error^HL70357"
    assert field(err, 8) == "RequestingPhysician cut, see x.yaml:3"
    assert len(msa(ack)) == (3 if version >= "2.7" else 4)  # MSA-3 withdrawn in v2.7


# -- truncation respects the VR ------------------------------------------------------------------


def test_truncation_cuts_a_person_name_per_component_group():
    alphabetic = "Y" * 50 + "^" + "Z" * 20  # 71: the given name does not fit, so it goes
    ideographic = "山田^太郎"
    assert truncate("PN", f"{alphabetic}={ideographic}") == "Y" * 50 + "=" + ideographic
    assert truncate("PN", "W" * 70) == "W" * 64  # a family name alone is cut itself


def test_truncation_never_splits_a_character_from_its_accents_or_an_escape():
    accented = "e\u0301" * 40  # e + COMBINING ACUTE ACCENT, 80 code points
    cut = truncate("LO", accented)
    assert cut == "e\u0301" * 32 and len(cut) == 64
    assert truncate("LO", "a" * 63 + "e\u0301") == "a" * 63
    escaped = "a" * 62 + "\x1b$)C" + "b"  # ISO 2022 escape across the limit
    assert truncate("LO", escaped) == "a" * 62
    assert truncate("SH", "ABCDEFGHIJKLMNOPQRST") == "ABCDEFGHIJKLMNOP"
    assert truncate("LT", "x" * 10300) == "x" * 10240


def test_the_mapping_reference_lists_every_key_that_is_never_cut():
    reference = (SAMPLES.parent / "mappings" / "README.md").read_text(encoding="utf-8")
    section = reference.split("## `too_long:`", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"\b[A-Z][A-Za-z]+\b", section))
    assert sorted(STRICT_KEYWORDS - listed) == []
