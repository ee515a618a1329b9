"""Scheduled jobs on a real database: what each one does, and `mwlbroker jobs list | run`.

Orders arrive over MLLP, modalities query with pynetdicom, the RIS is a real MLLP server; the
jobs run through the command line as an administrator would run them, or through the
maintenance service with a clock moved forward where an age has to pass.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from mwlbroker.domain.accounts import Role
from mwlbroker.services.maintenance import MaintenanceService, RetentionPolicy
from mwlbroker.store import jobs as job_store
from mwlbroker.store import messages, outbound, worklist
from mwlbroker.store.tables import AuditRow, OrderEventRow
from tests.support.dicom_peers import Modality
from tests.support.hl7_messages import ack_fields, hl7, orm, segment_fields
from tests.support.mllp_peers import RIS, Peer
from tests.support.polling import wait_until
from tests.support.processes import cli_env, run_cli
from tests.support.web_client import csrf_token, login
from tests.support.workflow import FAST_RETRIES, destination, order, perform, queue


def _starting(control_id: str, start: datetime) -> bytes:
    """An ORM^O01 NW whose step starts at ``start`` (local time, as a RIS sends it)."""
    return orm(control_id).replace(b"20261127143000", start.strftime("%Y%m%d%H%M%S").encode())


def _send(port: int, *payloads: bytes) -> None:
    with Peer(port) as peer:
        for payload in payloads:
            assert ack_fields(peer.send(payload))["MSA"][1] == "AA"


def test_steps_whose_start_is_long_past_leave_the_worklist_and_stay_in_history(
    broker, database_url
):
    now = datetime.now()
    _send(
        broker.hl7.port,
        _starting("OLD", now - timedelta(hours=5)),
        _starting("NEW", now + timedelta(hours=1)),
    )
    modality = Modality(broker.dicom.port)
    try:
        assert len(modality.worklist()) == 2

        env = cli_env(database_url, MWLBROKER_RETENTION_EXPIRE_STEPS_HOURS="2")
        done = run_cli("jobs", "run", "expire_steps", env=env)
        assert done.returncode == 0, done.stderr
        assert "1 step(s) expired" in done.stdout

        [left] = modality.worklist()
        assert left.AccessionNumber == "APLNEW"
    finally:
        modality.close()
    with broker.db.reading() as session:
        [old] = worklist.search_steps(session, accession_number="APLOLD")
        assert old.status == "EXPIRED"
        assert old.dataset["00400100"]["Value"][0]["00400020"]["Value"] == ["EXPIRED"]
        events = session.query(OrderEventRow).filter_by(order_id=old.order_id).all()
        expired = [e for e in events if e.event == "expired"]
        assert [(e.status_before, e.status_after) for e in expired] == [("SCHEDULED", "EXPIRED")]

    again = run_cli("jobs", "run", "expire_steps", env=env)
    assert "0 step(s) expired" in again.stdout  # nothing left to do: safe to run again

    # The RIS may schedule it again: an order update brings it back to the worklist.
    update = _starting("OLD2", now + timedelta(hours=3)).replace(b"ORC|NW|PLOLD2", b"ORC|XO|PLOLD")
    update = update.replace(b"PLOLD2", b"PLOLD")
    _send(broker.hl7.port, update)
    with broker.db.reading() as session:
        [old] = worklist.search_steps(session, accession_number="APLOLD")
        assert old.status == "SCHEDULED"


def test_retention_purges_by_age_and_keeps_audit_and_unfinished_work(broker_factory):
    with RIS(listening=False) as ris:  # the RIS is down: the status messages stay pending
        broker = broker_factory(outbound__destinations=[destination(ris)], **FAST_RETRIES)
        step = order(broker, "R1")
        perform(broker, step, "COMPLETED")
        adt = hl7(
            "MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ADT^A08|R2|P|2.3.1",
            "EVN|A08|20261127101500",
            "PID|1||PID1^^^HOSPITAL^MR||DOE^JANE||19700101|F",
        )
        _send(broker.hl7.port, adt)
        with broker.db.reading() as session:
            assert len(messages.latest(session)) == 2
            audits = session.query(AuditRow).count()
        assert audits >= 1
        assert {r.status for r in queue(broker)} == {"pending"}

        policy = RetentionPolicy(messages_days=30, outbound_days=30, mpps_days=30)
        service = MaintenanceService(broker.db, policy)
        assert service.purge().startswith(
            "purged messages: 0, outbound messages: 0, MPPS: 0"
        )  # nothing is old yet

        later = datetime.now(UTC) + timedelta(days=31)
        summary = service.purge(now=later)
        assert "messages: 2, outbound messages: 0, MPPS: 1" in summary
        with broker.db.reading() as session:
            assert messages.latest(session) == []
            assert session.query(AuditRow).count() == audits  # never purged
            assert len(outbound.latest(session)) == 2  # pending: still work to do
            [kept] = worklist.search_steps(session, accession_number="APLR1")
            assert kept.status == "COMPLETED"  # orders and steps are not purged

        ris.listen()  # the RIS comes back: the messages go, then age out like the rest
        wait_until(lambda: all(r.status == "sent" for r in queue(broker)), timeout=20)
        summary = service.purge(now=later)
        assert "messages: 0, outbound messages: 2, MPPS: 0" in summary
        with broker.db.reading() as session:
            assert outbound.latest(session) == []


def test_the_outbound_retry_job_releases_what_the_ris_refused(broker_factory, database_url):
    refusing = {"on": True}
    with RIS(lambda _m: "AE" if refusing["on"] else "AA") as ris:
        broker = broker_factory(
            outbound__destinations=[destination(ris)], outbound__max_attempts=1, **FAST_RETRIES
        )
        perform(broker, order(broker, "F1"), "COMPLETED")
        wait_until(lambda: [r.status for r in queue(broker)] == ["failed", "pending"])

        refusing["on"] = False
        env = cli_env(database_url)
        done = run_cli("jobs", "run", "outbound_retry", env=env)
        assert done.returncode == 0, done.stderr
        assert "1 failed message(s) released" in done.stdout
        # Another process released them: the senders find them on their next look.
        wait_until(lambda: [r.status for r in queue(broker)] == ["sent", "sent"], timeout=10)
        assert [segment_fields(m, "ORC")[5] for m in ris.received] == ["IP", "IP", "CM"]


def test_jobs_list_shows_each_job_and_its_last_run(database_url, tmp_path):
    env = cli_env(database_url, MWLBROKER_JOBS_RETENTION="off")
    listed = run_cli("jobs", "list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    jobs = {job["name"]: job for job in json.loads(listed.stdout)["jobs"]}
    assert set(jobs) == {
        "expire_steps",
        "retention",
        "outbound_retry",
        "duplicate_sweep",
        "health_check",
    }
    assert jobs["retention"]["schedule"] == "off"
    assert jobs["expire_steps"]["schedule"] == "every 15m"
    assert all(job["last_run"] is None for job in jobs.values())

    ran = run_cli("jobs", "run", "health_check", "--json", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["result"].startswith("database reachable")

    listed = json.loads(run_cli("jobs", "list", "--json", env=env, cwd=tmp_path).stdout)
    run = {job["name"]: job for job in listed["jobs"]}["health_check"]["last_run"]
    assert (run["ok"], run["trigger"]) == (True, "manual")
    text = run_cli("jobs", "list", env=env, cwd=tmp_path).stdout
    assert "health_check" in text and "database reachable" in text

    unknown = run_cli("jobs", "run", "vacuum", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "no job named 'vacuum'" in unknown.stderr


def test_a_bad_schedule_stops_start_up_naming_the_key(database_url, tmp_path):
    for value, said in [("every now", "every N"), ("cron 61 * * * *", "cron '61 * * * *'")]:
        env = cli_env(database_url, MWLBROKER_JOBS_EXPIRE_STEPS=value)
        done = run_cli("jobs", "list", env=env, cwd=tmp_path)
        assert done.returncode == 2
        assert "jobs.expire_steps" in done.stderr and said in done.stderr


def test_a_job_that_fails_is_recorded_with_its_error(broker):
    runner = broker.jobs
    original = runner.jobs["health_check"]

    def broken() -> str:
        raise RuntimeError("disk on fire")

    runner.jobs["health_check"] = type(original)(
        original.name, original.description, original.schedule, broken
    )
    run = runner.run("health_check")
    assert run.ok is False and "disk on fire" in run.result
    with broker.db.reading() as session:
        [row] = job_store.runs(session, job="health_check")
        assert (row.ok, row.result) == (False, "RuntimeError: disk on fire")


def test_the_dashboard_shows_the_jobs_and_an_admin_runs_one(broker):
    broker.accounts.add_user("alice", "correct horse battery", Role.ADMIN)
    broker.accounts.add_user("victor", "correct horse battery", Role.VIEWER)
    app = broker.build_web_app()

    viewer = app.test_client()
    login(viewer, "victor", "correct horse battery")
    page = viewer.get("/").get_data(as_text=True)
    assert "Scheduled jobs" in page and "expire_steps" in page and "Run now" not in page
    token = csrf_token(viewer, "/")
    assert viewer.post("/jobs/health_check/run", data={"csrf_token": token}).status_code == 403
    assert (
        viewer.post("/api/jobs/health_check/run", headers={"X-CSRFToken": token}).status_code == 403
    )
    listed = viewer.get("/api/jobs").get_json()
    assert {job["name"] for job in listed["jobs"]} >= {"expire_steps", "health_check"}
    assert listed["lease"]["holder"] == broker.jobs.node

    admin = app.test_client()
    login(admin, "alice", "correct horse battery")
    assert admin.post("/jobs/health_check/run").status_code == 400  # no CSRF token
    token = csrf_token(admin, "/")
    done = admin.post("/jobs/health_check/run", data={"csrf_token": token}, follow_redirects=True)
    assert done.status_code == 200
    assert "health_check: done" in done.get_data(as_text=True)
    run = admin.post("/api/jobs/retention/run", headers={"X-CSRFToken": token}).get_json()
    assert run["ok"] is True and run["result"].startswith("purged")
    assert run["trigger"] == "manual: alice"
    assert admin.post("/api/jobs/nothing/run", headers={"X-CSRFToken": token}).status_code == 404
    page = admin.get("/").get_data(as_text=True)
    assert "Run now" in page and "database reachable" in page


def test_the_duplicate_sweep_job_fills_the_reconciliation_list(broker, database_url):
    def adt(control_id: str, patient: str, name: str) -> bytes:
        return hl7(
            f"MSH|^~\\&|RIS|HOSPITAL|MWLBROKER|RADIOLOGY|20261127101500||ADT^A04|{control_id}|P|2.3.1",
            "EVN|A04|20261127101500",
            f"PID|1||{patient}^^^HOSPITAL^MR||{name}||19650412|M",
        )

    _send(
        broker.hl7.port,
        adt("D1", "PID777", "MUELLER^HANS"),
        adt("D2", "PID888", "MULLER^HANS"),  # the same man, registered twice
        adt("D3", "PID999", "SCHMIDT^ANNA"),
    )
    env = cli_env(database_url)
    done = run_cli("jobs", "run", "duplicate_sweep", env=env)
    assert done.returncode == 0, done.stderr
    assert "1 likely duplicate pair(s) among 3 patient(s)" in done.stdout
    listed = run_cli("patients", "duplicates", "--stored", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [pair] = json.loads(listed.stdout)
    assert {pair["first"]["patient_id"], pair["second"]["patient_id"]} == {"PID777", "PID888"}
