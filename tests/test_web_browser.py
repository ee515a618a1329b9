"""The web page in headless Chromium against a real ``mwlbroker serve``: log in, find an order,
reprocess a failed message, explain a worklist query, merge two duplicate patients (then ask the
worklist with DCMTK's findscu). Screenshots of the main pages go to test-artifacts/screenshots/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.support.dicom_peers import (
    Modality,
    ct_image,
    findscu,
    in_progress,
    storescu,
    write_images,
)
from tests.support.hl7_messages import ack_fields, orm, utf8_orm
from tests.support.mllp_peers import Peer
from tests.support.polling import wait_until
from tests.support.prerequisites import require_tools
from tests.support.processes import cli_env, run_cli, start_serve
from tests.support.samples import ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "browser test password"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = "Debian's chromium is not installed at /usr/bin/chromium (./run-tests installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def served(database_url, tmp_path):
    env = cli_env(database_url)
    added = run_cli(
        "user", "add", "admin", "--role", "admin", "--password-stdin",
        env=env, cwd=tmp_path, input=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    process = start_serve(database_url, tmp_path)
    yield process
    process.terminate()


def test_log_in_find_an_order_and_reprocess_a_failed_message(served, database_url, request):
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with Peer(served.hl7_port) as peer:
        # A change for an order not yet known fails; once the order arrives it can be reprocessed.
        assert ack_fields(peer.send(orm("B1", control="XO", order="BROWSER1")))["MSA"][1] == "AE"
        assert ack_fields(peer.send(orm("B2", order="BROWSER1")))["MSA"][1] == "AA"
        assert ack_fields(peer.send(orm("B3", order="OTHER1")))["MSA"][1] == "AA"
    base = f"http://127.0.0.1:{served.web_port}"

    def shot(page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{kind}-{name}.png"), full_page=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base + "/worklist")
            expect(page).to_have_url(f"{base}/login?next=/worklist")
            shot(page, "login")
            page.fill("input[name=name]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/worklist")
            page.goto(base + "/")
            expect(page.locator("h1")).to_have_text("Dashboard")
            shot(page, "dashboard")

            page.goto(base + "/worklist")
            page.fill("input[name=q]", "ABROWSER1")
            page.click("form.filters button")
            rows = page.locator("main table tbody tr")
            expect(rows).to_have_count(1)
            shot(page, "worklist")
            rows.first.locator("a").click()
            expect(page.locator("h1")).to_contain_text("Order")
            expect(page.locator(".timeline")).to_contain_text("ORM^O01 received")
            shot(page, "order")

            page.goto(base + "/messages?status=failed")
            rows = page.locator("main table tbody tr")
            expect(rows).to_have_count(1)
            shot(page, "messages")
            rows.first.locator("a").first.click()
            expect(page.locator("h1")).to_contain_text("failed")
            expect(page.locator("main")).to_contain_text("Placer Order Number")
            shot(page, "message")
            page.click("button[name=reprocess]")
            expect(page.locator(".flash")).to_contain_text("Reprocessed: processed (AA)")
            expect(page.locator("h1")).to_contain_text("processed")
            shot(page, "reprocessed")

            page.goto(base + "/audit")
            expect(page.locator("main table")).to_contain_text("message reprocess")
            shot(page, "audit")

            # A modality asks for its worklist; the query log explains why an item came back.
            modality = Modality(served.dicom_port, ae_title="CT1")
            try:
                assert len(modality.worklist(accession="ABROWSER1")) == 1
            finally:
                modality.close()
            page.goto(base + "/queries")
            rows = page.locator("main table tbody tr a.explain")

            def logged() -> bool:  # the query log is written off the response path
                page.reload()
                return rows.count() == 1

            wait_until(logged, interval=0.2)
            rows.first.click()
            expect(page.locator("h1")).to_contain_text("from CT1")
            page.locator("table.candidates a.explain").first.click()
            expect(page.locator(".verdict")).to_contain_text("matches every key")
            expect(page.locator("table.explanation")).to_contain_text("AccessionNumber")
            shot(page, "explain")
        finally:
            browser.close()
    request.node.user_properties.append(("screenshots", str(SCREENSHOTS)))


def test_merge_two_duplicate_patients_end_to_end(served, database_url, request, tmp_path):
    """Sweep, pick the survivor, confirm, and the modality's worklist shows the survivor."""
    _require_chromium()
    require_tools("findscu", "storescu")
    from playwright.sync_api import expect, sync_playwright

    kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with Peer(served.hl7_port) as peer:
        for message in (
            utf8_orm("R1", patient="A1", name="MÜLLER^JÜRGEN", order="O1"),
            utf8_orm("R2", patient="B2", name="MULLER^JURGEN", order="O2"),
            utf8_orm("R3", patient="K1", name="KOWALSKI^JAN", birth="19811224", order="O3"),
            utf8_orm("R4", patient="K2", name="JAN^KOWALSKY", birth="19811224", order="O4"),
            # One ID, two people: a collision.
            utf8_orm("R5", patient="SHARED", name="DOE^JOHN", birth="19650302", order="O5"),
            utf8_orm(
                "R6", patient="SHARED", name="SMITH^MARY", birth="19900417", sex="F", order="O6"
            ),
        ):
            assert ack_fields(peer.send(message))["MSA"][1] == "AA"
    # An exam the modality started without a worklist item, and images of a study no one ordered.
    modality = Modality(served.dicom_port)
    try:
        unscheduled = in_progress(None)
        unscheduled.PatientID = "K1"
        assert modality.create(unscheduled, generate_uid())[0].Status == 0x0000
    finally:
        modality.close()
    image = ct_image(study_uid=generate_uid(), patient_id="A1", patient_name="MÜLLER^JÜRGEN")
    sent = storescu(served.dicom_port, *write_images(tmp_path / "images", [image]))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    before = findscu(served.dicom_port, "AccessionNumber=AO2", "PatientID", tmp_path=tmp_path)
    assert before.values("PatientID") == ["B2"]
    base = f"http://127.0.0.1:{served.web_port}"

    def shot(page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{kind}-{name}.png"), full_page=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/reconcile/")
            page.fill("input[name=name]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/reconcile/duplicates")
            expect(page.locator("main")).to_contain_text("No likely duplicates")
            page.click("button[name=sweep]")
            expect(page.locator(".flash")).to_contain_text("2 likely duplicate pair(s)")
            pair = page.locator("article.pair", has_text="MULLER^JURGEN")
            expect(pair).to_contain_text("MÜLLER^JÜRGEN")
            expect(pair).to_contain_text("AO2")
            shot(page, "reconcile-duplicates")

            pair.get_by_label("keep A1").check()
            pair.locator("button[name=merge]").click()
            expect(page.locator("h2")).to_have_text("Confirm the merge")
            expect(page.locator("main")).to_contain_text("Survives: patient")
            shot(page, "reconcile-confirm")
            page.click("button[name=confirm]")
            expect(page).to_have_url(f"{base}/reconcile/merges")
            expect(page.locator(".flash")).to_contain_text(
                "B2^^^HOSPITAL (MULLER^JURGEN) merged into A1^^^HOSPITAL"
            )
            expect(page.locator("main table")).to_contain_text("merged")
            shot(page, "reconcile-merges")

            page.goto(base + "/reconcile/collisions")
            expect(page.locator("article.collision")).to_contain_text("SHARED^^^HOSPITAL")
            shot(page, "reconcile-collisions")
            page.goto(base + "/reconcile/exams")
            expect(page.locator("article.exam")).to_have_count(2)
            shot(page, "reconcile-exams")
        finally:
            browser.close()

    # The modality asks again: the moved order now carries the survivor's Patient ID.
    after = findscu(served.dicom_port, "AccessionNumber=AO2", "PatientID", "PatientName",
                    tmp_path=tmp_path)  # fmt: skip
    assert after.status == "Success" and after.values("PatientID") == ["A1"]
    assert after.values("PatientName") == ["MÜLLER^JÜRGEN"]
    request.node.user_properties.append(("screenshots", str(SCREENSHOTS)))
