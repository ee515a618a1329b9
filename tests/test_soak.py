"""A bounded soak: MLLP senders, modalities asking for their worklist, MPPS and C-STORE, all at
once against one ``mwlbroker serve``. Zero errors, every message accounted for (ACKed AA ==
stored), resident memory printed at the start, middle and end (a generous bound is asserted).

About 12 s per database by default; ``MWLBROKER_SOAK_SECONDS=300`` for a longer run.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import warnings
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.dicom_traffic import Tally, run_mpps, run_queries, run_store
from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import start_serve

SECONDS = float(os.environ.get("MWLBROKER_SOAK_SECONDS", "12"))
SENDERS = int(os.environ.get("MWLBROKER_SOAK_SENDERS", "4"))
MODALITIES = int(os.environ.get("MWLBROKER_SOAK_MODALITIES", "2"))
RSS_BOUND_MB = 150  # growth from start to end tolerated; memory is reported, not judged finely


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sender(
    port: int, index: int, stop: threading.Event, acks: dict[str, str], errors: list[str]
) -> None:
    number = 0
    with Peer(port, timeout=60) as peer:
        while not stop.is_set():
            number += 1
            control = f"SOAK{index}X{number:06d}"
            message = orm(control, patient=f"P{index}X{number % 500}")
            try:
                code = ack_fields(peer.send(message))["MSA"][1]
            except OSError as error:
                errors.append(f"{control}: {error!r}")
                return
            acks[control] = code


@pytest.mark.slow
@pytest.mark.timeout(max(300, SECONDS * 4))
def test_soak(database_url: str, tmp_path: Path) -> None:
    serve = start_serve(database_url, cwd=tmp_path)
    pid = serve.process.pid
    stop = threading.Event()
    acks: dict[str, str] = {}
    errors: list[str] = []
    tally = Tally()
    threads = [
        threading.Thread(target=sender, args=(serve.hl7_port, i, stop, acks, errors), daemon=True)
        for i in range(SENDERS)
    ]
    threads += [
        threading.Thread(
            target=run_queries, args=(serve.dicom_port, stop, tally, f"WL{i}"), daemon=True
        )
        for i in range(MODALITIES)
    ]
    threads += [
        threading.Thread(target=run_mpps, args=(serve.dicom_port, stop, tally, "CT1"), daemon=True),
        threading.Thread(
            target=run_store, args=(serve.dicom_port, stop, tally, "CT1"), daemon=True
        ),
    ]
    rss = {"start": rss_mb(pid)}
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        # The soak's length is what is under test (load held for SECONDS, memory read at the
        # middle and the end), not a wait for a state: the traffic runs while this thread sleeps.
        time.sleep(SECONDS / 2)
        rss["middle"] = rss_mb(pid)
        time.sleep(SECONDS / 2)
        rss["end"] = rss_mb(pid)
        stop.set()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive(), thread.name
        elapsed = time.monotonic() - started
        assert serve.process.poll() is None, "the broker died"
        assert serve.terminate() == 0
    finally:
        stop.set()
        if serve.process.poll() is None:
            serve.kill()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = dict(
                connection.execute(
                    text("SELECT control_id, status FROM message WHERE control_id LIKE 'SOAK%'")
                ).all()
            )
            steps = dict(
                connection.execute(
                    text("SELECT sop_instance_uid, status FROM performed_step")
                ).all()
            )
            indexed = set(
                connection.execute(text("SELECT sop_instance_uid FROM instance")).scalars()
            )
    finally:
        engine.dispose()
    failures = [r for r in serve.log if r.get("level") in ("error", "critical")]

    print(
        f"\nsoak on {database_url.split(':')[0]} for {elapsed:.0f} s: "
        f"{len(acks)} HL7 messages ({len(acks) / elapsed:.0f}/s over {SENDERS} connections), "
        f"{tally.queries} worklist queries ({tally.matches} matches) from {MODALITIES} modalities, "
        f"{len(tally.completed)} MPPS completed, {len(tally.stored)} images stored; "
        f"RSS start {rss['start']:.0f} MB, middle {rss['middle']:.0f} MB, end {rss['end']:.0f} MB; "
        f"errors: {len(errors) + len(tally.errors)}, error log lines: {len(failures)}"
    )
    assert errors == [] and tally.errors == []
    assert set(acks.values()) == {"AA"}
    assert sorted(set(acks) - set(stored)) == [], "ACKed but not stored"
    assert sorted(set(stored) - set(acks)) == [], "stored but never ACKed"
    assert set(stored.values()) == {"processed"}
    assert sorted(tally.created - set(steps)) == []
    assert sorted(u for u in tally.completed if steps.get(u) != "COMPLETED") == []
    assert sorted(tally.stored - indexed) == []
    assert tally.queries > 0 and len(tally.completed) > 0 and len(tally.stored) > 0
    assert failures == [], failures[:3]
    assert rss["end"] - rss["start"] < RSS_BOUND_MB, rss
