"""``mwlbroker import`` as a user runs it: a subprocess loading files into a real database.

What it stored is checked the way a user would: a broker started on the same database answers
a modality's C-FIND with the imported orders, and ``messages list`` shows their status.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from mwlbroker.mllp.framing import frame
from mwlbroker.store.db import Database
from mwlbroker.store.tables import MessageRow, StepRow
from tests.support.dicom_peers import Modality
from tests.support.hl7_messages import ack_fields, hl7, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import cli_env, run_cli, start_serve
from tests.support.samples import SAMPLES

BATCHES = SAMPLES / "batches"


def counted(database_url: str, *where) -> int:
    db = Database(database_url)
    try:
        with db.reading() as session:
            return int(session.scalar(select(func.count()).select_from(MessageRow).where(*where)))
    finally:
        db.dispose()


def worklist(port: int, **keys: str) -> set[str]:
    modality = Modality(port)
    try:
        return {str(item.AccessionNumber) for item in modality.worklist(**keys)}
    finally:
        modality.close()


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("import: ")]


def test_batch_files_are_imported_and_reach_the_worklist(database_url, broker_factory):
    env = cli_env(database_url)
    files = [BATCHES / "fhs_bhs_three_vendors.hl7", BATCHES / "bhs_adt_and_orders.hl7"]
    done = run_cli("import", *map(str, files), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(
        "imported 6 messages from 2 files: 6 AA, 0 AE, 0 AR (duplicates: 0) in "
    )
    # Not a terminal: plain progress lines on standard error, the last one at 100 %.
    assert progress_lines(done.stderr)[-1] == "import: 6 of 6 messages (100%)"
    broker = broker_factory()
    assert worklist(broker.dicom.port) == {
        "E1001",
        "CRN20261201001",
        "AGACC451",
        "GEACC7788",
        "SMSACC7001",
    }
    listed = json.loads(run_cli("messages", "list", "--json", env=env).stdout)
    assert {m["peer"] for m in listed} == {
        "import fhs_bhs_three_vendors.hl7",
        "import bhs_adt_and_orders.hl7",
    }
    # The same files again: every message is a resend, answered as before and applied once.
    again = run_cli("import", *map(str, files), "--json", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads(again.stdout)
    assert summary["counts"] == {"AA": 6, "AE": 0, "AR": 0}
    assert summary["duplicates"] == 6 and summary["failures"] == []
    assert counted(database_url) == 6


def test_failures_are_listed_with_their_control_id_and_the_exit_code_is_1(database_url, tmp_path):
    backlog = tmp_path / "backlog.hl7"
    hapi_without_control_id = hl7(
        "MSH|^~\\&|HIS|RIH|EKG|EKG|199904140038||ADT^A01||P|2.2",
        "PID|0001|00009874|00001122|A00977|SMITH^JOHN^M|MOM|19581119|F",
    )
    content = b"".join(
        [
            orm("IMP1"),
            orm("IMP2", control="CA", order_status="CA", order="NEVERORDERED"),
            hapi_without_control_id,
            orm("IMP4"),
        ]
    )
    backlog.write_bytes(content.replace(b"\r", b"\r\n"))  # a file written on Windows
    env = cli_env(database_url)

    done = run_cli("import", str(backlog), env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("imported 4 messages from 1 file: 2 AA, 1 AE, 1 AR (duplicates: 0)")
    assert out[1] == "not accepted:"
    assert out[2].startswith(f"  {backlog}:5  MSH-10 IMP2  AE  ORC-1 CA for unknown order")
    assert out[3].startswith(
        f"  {backlog}:9  MSH-10 (none)  AR  MSH-10 Message Control ID is empty"
    )
    assert len(out) == 4
    assert counted(database_url, MessageRow.status == "processed") == 2
    assert counted(database_url, MessageRow.status == "failed") == 1
    assert counted(database_url, MessageRow.status == "rejected") == 1

    shown = json.loads(run_cli("import", str(backlog), "--json", env=env).stdout)
    assert shown["counts"] == {"AA": 2, "AE": 1, "AR": 1}
    assert shown["duplicates"] == 3  # the AR one had no control ID to be recognised by
    assert [(f["where"], f["control_id"], f["ack_code"]) for f in shown["failures"]] == [
        (f"{backlog}:5", "IMP2", "AE"),
        (f"{backlog}:9", "", "AR"),
    ]


def test_an_mllp_framed_capture_with_a_batch_and_a_count_mismatch(database_url, tmp_path):
    capture = tmp_path / "capture.mllp"
    batch = b"".join(
        [
            b"BHS|^~\\&|RIS|HOSPITAL|||20261201100000||||CAPTURED1\r",
            b"garbage before the first message\r",  # line 2: a part of its own
            orm("CAP2"),  # lines 3-6, and line 7 is in it: never applied in part
            b"garbage inside a message\r",
            orm("CAP3"),
            b"BTS|3\r",
        ]
    )
    capture.write_bytes(frame(orm("CAP1")) + frame(batch) + frame(orm("CAP4")))
    env = cli_env(database_url)

    done = run_cli("import", str(capture), "--json", env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"AA": 3, "AE": 0, "AR": 2}
    garbage, broken = summary["failures"]
    assert garbage["where"] == f"{capture} frame 2:2"
    assert "line 2 of the batch is not part of any HL7 message" in garbage["error"]
    assert (broken["where"], broken["control_id"]) == (f"{capture} frame 2:3", "CAP2")
    assert "is not a valid segment ID" in broken["error"]
    assert summary["warnings"] == [
        f"{capture}: batch CAPTURED1: BTS-1 Batch Message Count says 3 but 2 messages were received"
    ]
    assert counted(database_url, MessageRow.status == "processed") == 3


def test_dry_run_says_what_would_be_refused_and_stores_nothing(database_url, tmp_path):
    backlog = tmp_path / "backlog.hl7"
    backlog.write_bytes(orm("DRY1") + orm("DRY2", version="2.9"))
    env = cli_env(database_url)

    done = run_cli("import", "--dry-run", str(backlog), env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("checked 2 messages from 1 file: 1 AA, 0 AE, 1 AR")
    assert "(dry run: nothing stored)" in done.stdout.splitlines()[0]
    assert "MSH-10 DRY2  AR  HL7 version '2.9' in MSH-12 is not accepted" in done.stdout
    assert counted(database_url) == 0


def test_a_missing_file_exits_2_and_imports_nothing(database_url, tmp_path):
    good = tmp_path / "good.hl7"
    good.write_bytes(orm("MISS1"))
    missing = tmp_path / "missing.hl7"

    done = run_cli("import", str(good), str(missing), env=cli_env(database_url))

    assert done.returncode == 2
    assert f"mwlbroker: {missing}: No such file or directory" in done.stderr
    assert counted(database_url) == 0


def test_import_while_serve_takes_messages_on_the_same_database(database_url, tmp_path):
    backlog = tmp_path / "backlog.hl7"
    backlog.write_bytes(
        b"".join(orm(f"BACK{i:04d}", patient=f"BP{i % 50}") for i in range(600)).replace(
            b"\r", b"\n"
        )
    )
    served = start_serve(database_url, tmp_path)
    live: list[list[str]] = []
    try:

        def send_live() -> None:
            with Peer(served.hl7_port, timeout=60) as peer:
                for i in range(100):
                    live.append(ack_fields(peer.send(orm(f"LIVE{i:03d}")))["MSA"][1:3])

        sender = threading.Thread(target=send_live)
        sender.start()
        done = run_cli("import", str(backlog), env=cli_env(database_url), timeout=240)
        sender.join(120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("imported 600 messages from 1 file: 600 AA, 0 AE, 0 AR")
        assert live == [["AA", f"LIVE{i:03d}"] for i in range(100)]
        # serve's own C-FIND sees what the import stored, and what it took in meanwhile.
        assert worklist(served.dicom_port, accession="APLBACK0599") == {"APLBACK0599"}
        assert worklist(served.dicom_port, accession="APLLIVE099") == {"APLLIVE099"}
    finally:
        served.terminate()
    assert counted(database_url, MessageRow.status == "processed") == 700


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ten_thousand_messages_are_imported_with_progress_and_every_one_stored(
    database_url, tmp_path
):
    backlog = tmp_path / "backlog.hl7"
    backlog.write_bytes(
        b"".join(orm(f"TK{i:05d}", patient=f"TP{i % 3000:04d}") for i in range(10_000)).replace(
            b"\r", b"\n"
        )
    )
    started = time.monotonic()
    done = run_cli("import", str(backlog), env=cli_env(database_url), timeout=800)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(
        "imported 10000 messages from 1 file: 10000 AA, 0 AE, 0 AR (duplicates: 0)"
    )
    lines = progress_lines(done.stderr)
    assert 5 <= len(lines) <= 11, lines  # a line every 10 %, not one per message
    assert lines[-1] == "import: 10000 of 10000 messages (100%)"
    assert counted(database_url, MessageRow.status == "processed") == 10_000
    db = Database(database_url)
    try:
        with db.reading() as session:
            items = session.scalar(select(func.count()).select_from(StepRow))
    finally:
        db.dispose()
    assert items == 10_000
    print(f"10,000 messages imported in {elapsed:.1f} s: {done.stdout.splitlines()[0]}")
