"""The query log's explainer: a real C-FIND is logged, then held against steps key by key,
through the page and the JSON API of a running broker, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from mwlbroker.domain import query as q
from mwlbroker.domain.accounts import Role
from mwlbroker.domain.query import Element, parse_query
from mwlbroker.services.query_explain import replay_query
from mwlbroker.services.worklist_query import (
    Caller,
    QueryProfile,
    WorklistQueryOptions,
    WorklistQueryService,
)
from mwlbroker.store.db import Database
from tests.support.hl7_messages import ack_fields, hl7
from tests.support.mllp_peers import Peer
from tests.support.web_client import login

VIEWER, PASSWORD = "victor", "correct horse battery"
TODAY = date.today()


def omi(
    accession: str,
    *,
    station: str = "CT1",
    day: date = TODAY,
    name: str = "DOE^JOHN",
    control: str = "NW",
    order_status: str = "SC",
) -> bytes:
    """An OMI^O23 with one IPC: the order carries its Scheduled Station AE Title (IPC-9)."""
    start = day.strftime("%Y%m%d") + "100000"
    return hl7(
        f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261125140522||OMI^O23^OMI_O23|{accession}{control}|P|2.5.1",
        f"PID|1||P{accession}^^^HOSPITAL^MR||{name}||19780923|M",
        f"ORC|{control}|PL{accession}|FL{accession}||{order_status}",
        f"TQ1|1||||||{start}||R",
        f"OBR|1|PL{accession}|FL{accession}|CT01^CT head^L||||||||||||||||||||CT",
        f"IPC|{accession}|RP{accession}|1.2.3.{len(accession)}.{ord(accession[-1])}|SPS{accession}|CT|||{station}|{station}|{station}",
    )


def send(broker, message: bytes) -> None:
    with Peer(broker.hl7.port) as peer:
        ack = ack_fields(peer.send(message))
    assert ack["MSA"][1] == "AA", ack


def find(broker, *, calling_ae: str, name: str, day: str) -> list[Dataset]:
    """A modality's worklist query over DICOM: a name pattern, CT, one day, station left empty."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", broker.dicom.port, ae_title="MWLBROKER")
    assert assoc.is_established
    query = Dataset()
    query.PatientName = name
    query.AccessionNumber = ""
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = day
    query.ScheduledProcedureStepSequence = [step]
    try:
        found = [
            identifier
            for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind)
            if status is not None and status.Status == 0xFF00
        ]
    finally:
        assoc.release()
    assert broker.dicom.worklist.query_log.flush()
    return found


@pytest.fixture
def logged(broker_factory):
    """A broker whose CT profile fills an empty station, five steps, and one logged C-FIND:
    a viewer's client, the logged query, the steps by accession number, and the broker."""
    broker = broker_factory(dicom__profiles=[{"calling_ae": "CT*", "fill_station_ae": True}])
    broker.accounts.add_user(VIEWER, PASSWORD, Role.VIEWER)
    send(broker, omi("EXP-A"))  # matches
    send(broker, omi("EXP-B", station="CT2"))  # another station
    send(broker, omi("EXP-C", day=TODAY + timedelta(days=3)))  # another day
    send(broker, omi("EXP-D", name="SMITH^ANNA"))  # another name
    send(broker, omi("EXP-E"))
    send(broker, omi("EXP-E", control="CA", order_status="CA"))  # canceled: not served
    found = find(broker, calling_ae="CT1", name="DOE*", day=TODAY.strftime("%Y%m%d"))
    assert [ds.AccessionNumber for ds in found] == ["EXP-A"]
    client = broker.build_web_app().test_client()
    assert login(client, VIEWER, PASSWORD).status_code == 302
    (query,) = client.get("/api/queries").get_json()["items"]
    steps = {s["accession_number"]: s for s in client.get("/api/worklist").get_json()["items"]}
    return client, query, steps, broker


def explain(client, query, step) -> dict:
    answer = client.get(f"/api/queries/{query['id']}/explain?step={step['id']}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def by_key(found: dict) -> dict[str, dict]:
    return {k["key"]: k for k in found["explanation"]["keys"]}


STATION = "ScheduledProcedureStepSequence>ScheduledStationAETitle"
WHEN = "ScheduledProcedureStepSequence>date+time"


def test_a_match_key_by_key(logged):
    client, query, steps, _ = logged
    found = explain(client, query, steps["EXP-A"])
    assert found["problem"] is None
    assert found["served_statuses"] == ["SCHEDULED"]
    assert found["query"]["profile"] == "CT*"
    assert any("CT1" in note and "profile CT*" in note for note in found["query"]["notes"])
    sent = {k["key"]: k for k in found["query"]["keys"]}
    assert sent["PatientName"]["value"] == "DOE*" and sent[STATION]["value"] == ""
    explanation = found["explanation"]
    assert explanation["keys_match"] and explanation["status_served"] and explanation["served"]
    assert explanation["returned_then"] and explanation["since"] == ""
    assert "matches every key" in explanation["verdict"]
    keys = by_key(found)
    assert keys["PatientName"] == {
        "key": "PatientName",
        "tag": "00100010",
        "match": "wildcard",
        "query_value": "DOE*",
        "item_value": "DOE^JOHN",
        "matched": True,
        "source": "query",
    }
    assert keys["AccessionNumber"]["match"] == "universal"
    assert keys["ScheduledProcedureStepSequence"]["match"] == "sequence"
    assert keys["ScheduledProcedureStepSequence>Modality"]["match"] == "single"
    station = keys[STATION]
    assert (station["match"], station["query_value"], station["source"]) == (
        "single",
        "CT1",
        "profile CT*",
    )
    day = TODAY.strftime("%Y%m%d")
    assert keys[WHEN]["query_value"] == f"{day}000000-{day}999999"
    assert keys[WHEN]["item_value"] == f"{day}100000" and keys[WHEN]["matched"]
    # the returned step comes first among the candidates
    assert found["candidates"][0]["id"] == steps["EXP-A"]["id"]
    assert found["candidates"][0]["returned"]


def test_a_miss_on_the_station_a_profile_filled(logged):
    client, query, steps, _ = logged
    found = explain(client, query, steps["EXP-B"])
    explanation = found["explanation"]
    assert not explanation["keys_match"] and not explanation["served"]
    assert [k["key"] for k in explanation["keys"] if not k["matched"]] == [
        "ScheduledProcedureStepSequence",
        STATION,
    ]
    station = by_key(found)[STATION]
    assert (station["query_value"], station["item_value"]) == ("CT1", "CT2")
    assert explanation["verdict"] == f"Step {steps['EXP-B']['id']} does not match on {STATION}."


def test_a_miss_on_the_date_range(logged):
    client, query, steps, _ = logged
    found = explain(client, query, steps["EXP-C"])
    missed = [k["key"] for k in found["explanation"]["keys"] if not k["matched"]]
    assert missed == ["ScheduledProcedureStepSequence", WHEN]
    later = (TODAY + timedelta(days=3)).strftime("%Y%m%d")
    assert by_key(found)[WHEN]["item_value"] == later + "100000"


def test_a_miss_on_the_wildcard_name(logged):
    client, query, steps, _ = logged
    found = explain(client, query, steps["EXP-D"])
    name = by_key(found)["PatientName"]
    assert (name["match"], name["item_value"], name["matched"]) == (
        "wildcard",
        "SMITH^ANNA",
        False,
    )
    assert [k["key"] for k in found["explanation"]["keys"] if not k["matched"]] == ["PatientName"]


def test_an_item_in_a_status_not_served(logged):
    client, query, steps, _ = logged
    found = explain(client, query, steps["EXP-E"])
    explanation = found["explanation"]
    assert explanation["keys_match"] and explanation["status"] == "CANCELED"
    assert not explanation["status_served"] and not explanation["served"]
    assert (
        "status CANCELED is not served (the worklist serves SCHEDULED)" in (explanation["verdict"])
    )
    assert not explanation["returned_then"] and explanation["since"] == ""


def test_a_step_changed_since_the_query(logged):
    client, query, steps, broker = logged
    assert explain(client, query, steps["EXP-A"])["explanation"]["since"] == ""
    send(broker, omi("EXP-A", control="CA", order_status="CA"))
    explanation = explain(client, query, steps["EXP-A"])["explanation"]
    assert explanation["returned_then"] and not explanation["served"]
    assert explanation["since"].startswith("The query returned this step when it ran")


def test_the_page_picks_an_item_and_explains_it(logged):
    client, query, steps, _ = logged
    log = client.get("/queries").get_data(as_text=True)
    assert f"/queries/{query['id']}/explain" in log
    page = client.get(f"/queries/{query['id']}/explain").get_data(as_text=True)
    assert "Conditions applied" in page and "profile CT*" in page
    for accession in ("EXP-A", "EXP-B", "EXP-C", "EXP-E"):  # same station, modality or day
        assert accession in page
    # looked up by accession number: one step, explained at once
    page = client.get(f"/queries/{query['id']}/explain?find=EXP-B").get_data(as_text=True)
    assert "does not match on " + STATION.replace(">", "&gt;") in page
    assert "no match" in page
    page = client.get(f"/queries/{query['id']}/explain?step={steps['EXP-A']['id']}")
    assert "matches every key" in page.get_data(as_text=True)
    assert client.get(f"/queries/{query['id']}/explain?step=999999").status_code == 404
    assert client.get("/queries/999999/explain").status_code == 404
    missing = client.get(f"/api/queries/{query['id']}/explain?step=999999")
    assert missing.status_code == 404 and "999999" in missing.get_json()["error"]
    assert client.get("/api/queries/999999/explain").status_code == 404


def test_values_from_dicom_and_hl7_are_escaped(broker_factory):
    broker = broker_factory()
    broker.accounts.add_user(VIEWER, PASSWORD, Role.VIEWER)
    send(broker, omi("EXP-X", name="<script>alert(1)</script>^X"))
    find(broker, calling_ae="<b>CT</b>", name="<i>*", day=TODAY.strftime("%Y%m%d"))
    client = broker.build_web_app().test_client()
    login(client, VIEWER, PASSWORD)
    (query,) = client.get("/api/queries").get_json()["items"]
    (step,) = client.get("/api/worklist").get_json()["items"]
    page = client.get(f"/queries/{query['id']}/explain?step={step['id']}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<b>CT</b>" not in page and "<i>*" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;CT&lt;/b&gt;" in page


def test_the_explainer_needs_a_login(logged):
    client, query, steps, _ = logged
    anonymous = client.application.test_client()
    page = anonymous.get(f"/queries/{query['id']}/explain?step={steps['EXP-A']['id']}")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    api = anonymous.get(f"/api/queries/{query['id']}/explain?step={steps['EXP-A']['id']}")
    assert api.status_code == 401 and "DOE" not in api.get_data(as_text=True)


def test_profile_additions_read_back_from_the_log(tmp_path):
    """Both kinds of profile addition (station fill-in, date window) are rebuilt as applied."""
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    profile = QueryProfile(
        "CT*", fill_station_ae=True, date_window_days=2, pn_case_insensitive=True
    )
    service = WorklistQueryService(
        db, WorklistQueryOptions(profiles=(profile,)), today=lambda: date(2026, 11, 27)
    )
    try:
        elements = [
            Element(q.PATIENT_NAME, "PN", "PatientName", "müller*"),
            Element(q.SPS_SEQUENCE, "SQ", "ScheduledProcedureStepSequence", items=((),)),
        ]
        applied, _ = service._apply_profile(parse_query(elements), Caller("CT1"))
    finally:
        service.close()
        db.dispose()
    logged = applied.describe()
    assert [line.get("source") for line in logged] == [None, "profile CT*", "profile CT*"]
    again = replay_query(q.identifier_json(elements), logged, applied.notes)
    assert again.describe() == logged and again.notes == applied.notes
    stored = {
        q.PATIENT_NAME: {"vr": "PN", "Value": [{"Alphabetic": "MÜLLER^HANS"}]},
        q.SPS_SEQUENCE: {
            "vr": "SQ",
            "Value": [
                {
                    q.SCHEDULED_STATION_AE_TITLE: {"vr": "AE", "Value": ["CT1"]},
                    q.SPS_START_DATE: {"vr": "DA", "Value": ["20261130"]},
                }
            ],
        },
    }
    verdicts = {v.key: v for v in again.explain(stored)}
    assert verdicts["PatientName"].matched  # case/accent-insensitive, as the profile said
    window = verdicts["ScheduledProcedureStepSequence>date+time"]
    assert window.wanted == "20261125000000-20261129999999" and not window.matched
    assert applied.matches(stored) is again.matches(stored) is False


def test_a_refused_query_is_explained_as_refused(broker_factory):
    broker = broker_factory()
    broker.accounts.add_user(VIEWER, PASSWORD, Role.VIEWER)
    send(broker, omi("EXP-R"))
    assert find(broker, calling_ae="CT1", name="DOE*", day="20261128-20261127") == []
    client = broker.build_web_app().test_client()
    login(client, VIEWER, PASSWORD)
    (query,) = client.get("/api/queries").get_json()["items"]
    assert query["status"] == 0xC000 and "ends before it starts" in query["error"]
    (step,) = client.get("/api/worklist").get_json()["items"]
    found = explain(client, query, step)
    assert found["problem"].startswith("the query was refused: ")
    explanation = found["explanation"]
    assert explanation["keys"] == [] and not explanation["served"]
    assert explanation["verdict"].startswith("The query was refused (")
    page = client.get(f"/queries/{query['id']}/explain?step={step['id']}")
    assert "ends before it starts" in page.get_data(as_text=True)
