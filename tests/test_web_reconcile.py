"""The reconciliation pages and API through Flask's test client, on a running broker.

The RIS sends orders and ADT over MLLP; a modality reports MPPS (pynetdicom) and sends images
(DCMTK storescu); staff log in through the real login form and act through /reconcile and
/api/reconcile; a modality's C-FIND shows what the worklist says afterwards.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from mwlbroker.domain.accounts import Role
from tests.support.dicom_peers import Modality, ct_image, in_progress, storescu, write_images
from tests.support.hl7_messages import a40, segment_fields, utf8_orm
from tests.support.mllp_peers import RIS
from tests.support.prerequisites import require_tools
from tests.support.web_client import csrf_token, login
from tests.support.workflow import patient_pk, send_accepted, worklist_item

ADMIN, VIEWER, PASSWORD = "alice", "victor", "correct horse battery"

PAGES = [
    "/reconcile/",
    "/reconcile/collisions",
    "/reconcile/duplicates",
    "/reconcile/exams",
    "/reconcile/merges",
]
API = [
    "/api/reconcile/collisions",
    "/api/reconcile/duplicates",
    "/api/reconcile/mpps",
    "/api/reconcile/studies",
    "/api/reconcile/merges",
]
PAGE_ACTIONS = [
    "/reconcile/duplicates/sweep",
    "/reconcile/merge",
    "/reconcile/dismiss",
    "/reconcile/mpps/1/link",
    "/reconcile/studies/1/link",
    "/reconcile/merges/1/undo",
]
API_ACTIONS = [
    "/api/reconcile/duplicates/sweep",
    "/api/reconcile/merge",
    "/api/reconcile/dismiss",
    "/api/reconcile/mpps/1/link",
    "/api/reconcile/studies/1/link",
    "/api/reconcile/merges/1/undo",
]


@pytest.fixture
def web(broker):
    broker.accounts.add_user(ADMIN, PASSWORD, Role.ADMIN)
    broker.accounts.add_user(VIEWER, PASSWORD, Role.VIEWER)
    return broker, broker.build_web_app()


def client_for(app, name: str):
    client = app.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    return client


def text_of(answer) -> str:
    return answer.get_data(as_text=True)


def flashes(page: str) -> list[str]:
    """The flashed messages of a page, as text (entities decoded)."""
    return [
        html.unescape(re.sub(r"\s+", " ", f).strip())
        for f in re.findall(r'<p class="flash[^"]*" role="status">(.*?)</p>', page, re.S)
    ]


def duplicates(broker) -> None:
    """A1 and B2: one person under two IDs (accents and all); C3: same birthday, someone else."""
    send_accepted(
        broker,
        utf8_orm("M1", patient="A1", name="MÜLLER^JÜRGEN", order="O1"),
        utf8_orm("M2", patient="B2", name="MULLER^JURGEN", order="O2"),
        utf8_orm("M3", patient="C3", name="MEIER^HANS", order="O3"),
    )


def unscheduled_mpps(broker, patient_id: str = "A1") -> None:
    modality = Modality(broker.dicom.port)
    try:
        dataset = in_progress(None)
        dataset.PatientID = patient_id
        assert modality.create(dataset, generate_uid())[0].Status == 0x0000
    finally:
        modality.close()


def unmatched_study(broker, tmp_path: Path, patient_id: str = "A1") -> None:
    require_tools("storescu")
    image = ct_image(study_uid=generate_uid(), patient_id=patient_id, accession="NOSUCH")
    sent = storescu(broker.dicom.port, *write_images(tmp_path / "images", [image]))
    assert sent.returncode == 0, sent.stdout + sent.stderr


# -- who may do what --------------------------------------------------------------------------------


def test_nothing_without_a_login(web):
    _, app = web
    client = app.test_client()
    for path in [*PAGES, "/reconcile/merge?prior=1&survivor=2"]:
        answer = client.get(path)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"], path
    for path in API:
        assert client.get(path).status_code == 401, path
    token = csrf_token(client)
    for path in PAGE_ACTIONS + API_ACTIONS:
        answer = client.post(path, data={"csrf_token": token}, headers={"X-CSRFToken": token})
        assert answer.status_code == 401, path
    refused = client.get("/api/reconcile/duplicates", headers={"Authorization": "Bearer mwl_no"})
    assert refused.status_code == 401 and "login required" in refused.get_json()["error"]


def test_a_viewer_reads_every_list_but_cannot_act(web, tmp_path):
    broker, app = web
    duplicates(broker)
    unscheduled_mpps(broker)
    broker.reconciliation.sweep_duplicates()
    client = client_for(app, VIEWER)
    for path in PAGES:
        answer = client.get(path, follow_redirects=True)
        assert answer.status_code == 200, path
        page = text_of(answer)
        assert "Run the sweep now" not in page and "Merge…" not in page, path
        assert "Not the same person" not in page and "Link to step" not in page, path
    duplicates_page = text_of(client.get("/reconcile/duplicates"))
    assert "MÜLLER^JÜRGEN" in duplicates_page and "MULLER^JURGEN" in duplicates_page
    for path in API:
        assert client.get(path).status_code == 200, path
    assert client.get("/reconcile/merge?prior=1&survivor=2").status_code == 403
    token = csrf_token(client, "/reconcile/duplicates")
    for path in PAGE_ACTIONS:
        assert client.post(path, data={"csrf_token": token}).status_code == 403, path
    for path in API_ACTIONS:
        refused = client.post(path, json={}, headers={"X-CSRFToken": token})
        assert refused.status_code == 403 and "admin" in refused.get_json()["error"], path
    assert broker.reconciliation.merges() == []


def test_an_admin_without_the_csrf_token_changes_nothing(web):
    broker, app = web
    duplicates(broker)
    first, second = patient_pk(broker, "B2"), patient_pk(broker, "A1")
    client = client_for(app, ADMIN)
    form = {"prior": first, "survivor": second, "confirm": "yes"}
    assert client.post("/reconcile/merge", data=form).status_code == 400
    assert client.post("/reconcile/dismiss", data={"first": 1, "second": 2}).status_code == 400
    refused = client.post("/api/reconcile/merge", json={"prior": first, "survivor": second})
    assert refused.status_code == 400 and "CSRF" in refused.get_json()["error"]
    wrong = client.post(
        "/api/reconcile/merge",
        json={"prior": first, "survivor": second},
        headers={"X-CSRFToken": "not-the-token"},
    )
    assert wrong.status_code == 400
    assert broker.reconciliation.merges() == []
    assert worklist_item(broker, "AO2")[0] == "B2"


# -- the pages --------------------------------------------------------------------------------------


def test_sweep_merge_with_confirmation_and_undo_through_the_pages(web):
    broker, app = web
    duplicates(broker)
    client = client_for(app, ADMIN)
    assert "No likely duplicates" in text_of(client.get("/reconcile/duplicates"))

    token = csrf_token(client, "/reconcile/duplicates")
    swept = client.post("/reconcile/duplicates/sweep", data={"csrf_token": token})
    assert swept.status_code == 302
    page = text_of(client.get("/reconcile/duplicates"))
    [swept_flash] = flashes(page)
    assert "3 patient(s) compared, 1 likely duplicate pair(s)" in swept_flash
    # Side by side: both people, their birth dates, sexes and orders; the score and why.
    assert page.count("19700101") >= 2 and "AO1" in page and "AO2" in page
    assert "score 100" in page and "same birth date 19700101" in page
    assert "MEIER" not in page
    a1, b2 = patient_pk(broker, "A1"), patient_pk(broker, "B2")
    # No outbound destination: no "tell the RIS" box.
    confirm = client.get(f"/reconcile/merge?first={a1}&second={b2}&survivor={a1}")
    assert confirm.status_code == 200
    confirm_page = text_of(confirm)
    assert "Merge B2 into A1" in confirm_page and "Tell the RIS" not in confirm_page
    assert "Survives: patient" in confirm_page and "AO2" in confirm_page
    # Posted without the confirmation: nothing happens.
    unconfirmed = client.post(
        "/reconcile/merge", data={"csrf_token": token, "prior": b2, "survivor": a1}
    )
    assert unconfirmed.status_code == 302 and worklist_item(broker, "AO2")[0] == "B2"
    assert "not confirmed" in flashes(text_of(client.get("/reconcile/duplicates")))[0]

    merged = client.post(
        "/reconcile/merge",
        data={"csrf_token": token, "prior": b2, "survivor": a1, "confirm": "yes"},
    )
    assert merged.status_code == 302 and merged.headers["Location"].endswith("/reconcile/merges")
    page = text_of(client.get("/reconcile/merges"))
    [done] = flashes(page)
    assert "B2^^^HOSPITAL (MULLER^JURGEN) merged into A1^^^HOSPITAL" in done
    assert "1 order(s), 1 step(s) moved" in done
    assert worklist_item(broker, "AO2") == ("A1", "MÜLLER^JÜRGEN")
    assert "No likely duplicates" in text_of(client.get("/reconcile/duplicates"))
    [merge] = broker.reconciliation.merges()
    assert merge.actor == ADMIN

    undone = client.post(f"/reconcile/merges/{merge.id}/undo", data={"csrf_token": token})
    assert undone.status_code == 302
    page = text_of(client.get("/reconcile/merges"))
    assert (
        f"Merge {merge.id} undone: 1 order(s), 1 step(s) back with B2^^^HOSPITAL"
        in (flashes(page)[0])
    )
    assert "undone" in page and f"by {ADMIN}" in page
    assert worklist_item(broker, "AO2") == ("B2", "MULLER^JURGEN")
    # The same undo again is refused, said in the flash.
    again = client.post(f"/reconcile/merges/{merge.id}/undo", data={"csrf_token": token})
    assert again.status_code == 302
    assert "already undone" in " ".join(flashes(text_of(client.get("/reconcile/merges"))))
    assert client.post("/reconcile/merges/999/undo", data={"csrf_token": token}).status_code == 404


def test_not_the_same_person_is_remembered(web):
    broker, app = web
    duplicates(broker)
    broker.reconciliation.sweep_duplicates()
    client = client_for(app, ADMIN)
    token = csrf_token(client, "/reconcile/duplicates")
    a1, b2 = patient_pk(broker, "A1"), patient_pk(broker, "B2")
    answer = client.post(
        "/reconcile/dismiss",
        data={"csrf_token": token, "first": a1, "second": b2, "note": "twins <b>really</b>"},
    )
    assert answer.status_code == 302
    page = text_of(client.get("/reconcile/duplicates"))
    assert "remembered as not the same person" in flashes(page)[0]
    assert "No likely duplicates" in page
    client.post("/reconcile/duplicates/sweep", data={"csrf_token": token})
    assert "No likely duplicates" in text_of(client.get("/reconcile/duplicates"))
    [record] = client.get("/api/audit?entity=patient").get_json()["items"][:1]
    assert record["action"] == "dismiss duplicate" and record["actor"] == ADMIN
    assert record["after"]["note"] == "twins <b>really</b>"
    itself = client.post(
        "/reconcile/dismiss", data={"csrf_token": token, "first": a1, "second": a1}
    )
    assert itself.status_code == 302
    assert (
        "cannot be dismissed against itself"
        in flashes(text_of(client.get("/reconcile/duplicates")))[0]
    )


def test_an_undo_refused_lists_its_reasons(web):
    broker, app = web
    send_accepted(
        broker,
        utf8_orm("M1", patient="P1", order="O1"),
        utf8_orm("M2", patient="P2", order="O2"),
        utf8_orm("M3", patient="P3", order="O3"),
    )
    client = client_for(app, ADMIN)
    token = csrf_token(client, "/reconcile/merges")
    headers = {"X-CSRFToken": token}
    merged = client.post(
        "/api/reconcile/merge", json={"prior": "P2", "survivor": "P1^^^HOSPITAL"}, headers=headers
    )
    assert merged.status_code == 200, merged.get_json()
    first = merged.get_json()["merge_id"]
    send_accepted(broker, a40("M4", survivor="P3", prior="P1"))  # the RIS merges the survivor on

    refused = client.post(f"/api/reconcile/merges/{first}/undo", headers=headers)
    assert refused.status_code == 409
    body = refused.get_json()
    assert len(body["problems"]) == 1 and "undo merge" in body["problems"][0]
    assert body["error"].startswith(f"merge {first} cannot be undone")
    page_refusal = client.post(f"/reconcile/merges/{first}/undo", data={"csrf_token": token})
    assert page_refusal.status_code == 302
    page = text_of(client.get("/reconcile/merges"))
    shown = flashes(page)
    assert shown[0] == f"Merge {first} was not undone, and nothing changed, because:"
    assert shown[1] == body["problems"][0]
    assert 'class="flash error reason"' in page
    assert worklist_item(broker, "AO2")[0] == "P3"  # nothing moved


def test_exams_without_an_order_are_linked_from_the_page(web, tmp_path):
    broker, app = web
    send_accepted(
        broker, utf8_orm("M1", patient="A1", order="O1"), utf8_orm("M2", patient="A1", order="O2")
    )
    unscheduled_mpps(broker, "A1")
    unmatched_study(broker, tmp_path, "A1")
    client = client_for(app, ADMIN)
    page = text_of(client.get("/reconcile/exams"))
    step1 = broker.reconciliation.steps_for_accession("AO1")[0]
    step2 = broker.reconciliation.steps_for_accession("AO2")[0]
    # Both exams name A1: both of A1's steps are offered to each.
    for exam in ("mpps-", "study-"):
        section = page[page.index(f'id="{exam}') :]
        assert f'value="{step1}"' in section and f'value="{step2}"' in section
    mpps = client.get("/api/reconcile/mpps").get_json()
    [performed] = mpps["items"]
    assert mpps["total"] == 1 and {s["id"] for s in performed["candidate_steps"]} == {
        step1,
        step2,
    }
    token = csrf_token(client, "/reconcile/exams")
    nothing = client.post(
        f"/reconcile/mpps/{performed['id']}/link", data={"csrf_token": token, "step_ids": "x1"}
    )
    assert nothing.status_code == 302
    assert "'x1' is not a step id" in flashes(text_of(client.get("/reconcile/exams")))[0]

    linked = client.post(
        f"/reconcile/mpps/{performed['id']}/link", data={"csrf_token": token, "step_id": step1}
    )
    assert linked.status_code == 302
    page = text_of(client.get("/reconcile/exams"))
    assert f"step {step1} SCHEDULED -> STARTED" in flashes(page)[0]
    assert "No unscheduled performed steps" in page

    [study] = client.get("/api/reconcile/studies").get_json()["items"]
    two = client.post(
        f"/reconcile/studies/{study['id']}/link",
        data={"csrf_token": token, "step_id": step1, "step_ids": str(step2)},
    )
    assert two.status_code == 302
    assert "exactly one step" in flashes(text_of(client.get("/reconcile/exams")))[0]
    typed = client.post(
        f"/reconcile/studies/{study['id']}/link", data={"csrf_token": token, "step_ids": step2}
    )
    assert typed.status_code == 302
    page = text_of(client.get("/reconcile/exams"))
    assert f"Study {study['id']} linked to step(s) {step2}" in flashes(page)[0]
    assert "No unmatched studies" in page
    missing = client.post(
        f"/reconcile/studies/{study['id']}/link", data={"csrf_token": token, "step_ids": "999"}
    )
    assert missing.status_code == 302
    assert "already matched" in flashes(text_of(client.get("/reconcile/exams")))[0]


def test_collisions_show_their_evidence_escaped(web):
    broker, app = web
    send_accepted(
        broker,
        utf8_orm("M1", patient="SHARED", name="DOE^JOHN", birth="19700101", sex="M"),
        utf8_orm(
            "M2", patient="SHARED", name="<script>alert(1)</script>^MARY", birth="19850505", sex="F"
        ),
    )
    client = client_for(app, VIEWER)
    page = text_of(client.get("/reconcile/collisions"))
    assert "SHARED^^^HOSPITAL" in page and "birth date" in page
    assert "19700101" in page and "19850505" in page and "PLM1" in page and "PLM2" in page
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;^MARY" in page
    [collision] = client.get("/api/reconcile/collisions").get_json()["items"]
    assert collision["patient"]["patient_id"] == "SHARED"
    assert [e["orders"] for e in collision["evidence"]] == [["PLM1"], ["PLM2"]]


# -- the API ------------------------------------------------------------------------------------------


def test_the_api_with_a_token(web, tmp_path):
    broker, app = web
    duplicates(broker)
    unscheduled_mpps(broker, "C3")
    unmatched_study(broker, tmp_path, "C3")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {broker.accounts.create_token(ADMIN)}"}

    swept = client.post("/api/reconcile/duplicates/sweep", headers=headers).get_json()
    assert swept["patients"] == 3 and swept["candidates"] == 1
    listing = client.get("/api/reconcile/duplicates?limit=10", headers=headers).get_json()
    assert (listing["total"], listing["page"], listing["limit"]) == (1, 1, 10)
    [pair] = listing["items"]
    assert {pair["first"]["patient_id"], pair["second"]["patient_id"]} == {"A1", "B2"}
    assert [s["accession_number"] for s in pair["first"]["steps"]] in (["AO1"], ["AO2"])
    assert client.get("/api/reconcile/duplicates?page=2", headers=headers).get_json()["items"] == []

    for body, status, words in [
        ("not json", 400, "JSON object"),
        ({"prior": "B2"}, 400, '"survivor"'),
        ({"prior": "B2", "survivor": "NOBODY"}, 404, "no patient NOBODY"),
        ({"prior": "B2", "survivor": "A1", "notify_ris": "yes"}, 400, "notify_ris"),
        ({"prior": "B2", "survivor": "A1", "notify_ris": True}, 409, "no outbound destination"),
        ({"prior": "A1", "survivor": "A1"}, 409, "into itself"),
    ]:
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        answer = client.post("/api/reconcile/merge", headers=headers, **kwargs)
        assert answer.status_code == status, (body, answer.get_json())
        assert words in answer.get_json()["error"], (body, answer.get_json())
    merged = client.post(
        "/api/reconcile/merge", headers=headers, json={"prior": "B2", "survivor": "A1"}
    ).get_json()
    assert merged["prior"]["patient_id"] == "B2" and merged["survivor"]["patient_id"] == "A1"
    assert len(merged["orders"]) == 1 and merged["notified"] == []
    assert worklist_item(broker, "AO2")[0] == "A1"
    [merge] = client.get("/api/reconcile/merges", headers=headers).get_json()["items"]
    assert merge["id"] == merged["merge_id"] and merge["actor"] == ADMIN
    undone = client.post(f"/api/reconcile/merges/{merge['id']}/undo", headers=headers)
    assert undone.status_code == 200 and worklist_item(broker, "AO2")[0] == "B2"
    assert client.post("/api/reconcile/merges/999/undo", headers=headers).status_code == 404

    dismissed = client.post(
        "/api/reconcile/dismiss", headers=headers, json={"first": "A1", "second": "B2"}
    )
    assert dismissed.status_code == 200 and dismissed.get_json()["dismissed"] is True
    assert client.get("/api/reconcile/duplicates", headers=headers).get_json()["total"] == 0

    [performed] = client.get("/api/reconcile/mpps", headers=headers).get_json()["items"]
    step = broker.reconciliation.steps_for_accession("AO3")[0]
    assert [s["id"] for s in performed["candidate_steps"]] == [step]
    bad = client.post(
        f"/api/reconcile/mpps/{performed['id']}/link", headers=headers, json={"step_ids": 5}
    )
    assert bad.status_code == 400
    gone = client.post(
        f"/api/reconcile/mpps/{performed['id']}/link", headers=headers, json={"step_ids": [999]}
    )
    assert gone.status_code == 404 and "no scheduled step" in gone.get_json()["error"]
    linked = client.post(
        f"/api/reconcile/mpps/{performed['id']}/link", headers=headers, json={"step_ids": [step]}
    ).get_json()
    assert linked["kind"] == "mpps" and linked["changes"] == [[step, "SCHEDULED", "STARTED"]]
    again = client.post(
        f"/api/reconcile/mpps/{performed['id']}/link", headers=headers, json={"step_ids": [step]}
    )
    assert again.status_code == 409 and "already linked" in again.get_json()["error"]

    [study] = client.get("/api/reconcile/studies", headers=headers).get_json()["items"]
    assert (
        client.post(
            f"/api/reconcile/studies/{study['id']}/link", headers=headers, json={"step_id": "1"}
        ).status_code
        == 400
    )
    matched = client.post(
        f"/api/reconcile/studies/{study['id']}/link", headers=headers, json={"step_id": step}
    )
    assert matched.status_code == 200 and matched.get_json()["step_ids"] == [step]
    assert client.get("/api/reconcile/studies", headers=headers).get_json()["total"] == 0


def test_a_merge_tells_the_ris_when_asked(broker_factory):
    with RIS() as ris:
        destination = {"name": "RIS", "host": "127.0.0.1", "port": ris.port}
        broker = broker_factory(outbound__destinations=[destination])
        broker.accounts.add_user(ADMIN, PASSWORD, Role.ADMIN)
        app = broker.build_web_app()
        send_accepted(
            broker,
            utf8_orm("M1", patient="KEEP", name="DOE^JANE", sex="F"),
            utf8_orm("M2", patient="DROP", name="JANE^DOE", sex="F"),
        )
        keep, drop = patient_pk(broker, "KEEP"), patient_pk(broker, "DROP")
        client = client_for(app, ADMIN)
        page = text_of(client.get(f"/reconcile/merge?prior={drop}&survivor={keep}"))
        assert 'name="notify_ris"' in page and "ADT^A40 to RIS" in page
        token = csrf_token(client, "/reconcile/duplicates")
        form = {"csrf_token": token, "prior": drop, "survivor": keep, "confirm": "yes"}
        answer = client.post("/reconcile/merge", data={**form, "notify_ris": "yes"})
        assert answer.status_code == 302
        assert (
            "ADT^A40 queued for the RIS (1)" in flashes(text_of(client.get("/reconcile/merges")))[0]
        )
        [message] = ris.wait_for(1)
        assert segment_fields(message, "MSH")[9] == "ADT^A40"
        assert segment_fields(message, "MRG")[1] == "DROP^^^HOSPITAL"
