"""SIGKILL during MPPS and C-STORE traffic: after a restart on the same database every N-CREATE
and N-SET answered 0x0000 is stored, and every image answered success is indexed."""

from __future__ import annotations

import gc
import os
import signal
import threading
import warnings
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.dicom_traffic import Tally, run_mpps, run_store
from tests.support.polling import wait_until
from tests.support.processes import start_serve

WORKERS = 2  # of each kind


@pytest.mark.slow
def test_sigkill_during_mpps_and_c_store_loses_nothing_answered_success(
    database_url: str, tmp_path: Path
) -> None:
    serve = start_serve(database_url, cwd=tmp_path)
    tally = Tally()
    stop = threading.Event()
    workers = [
        threading.Thread(target=run, args=(serve.dicom_port, stop, tally, f"CT{n}"), daemon=True)
        for n in range(WORKERS)
        for run in (run_mpps, run_store)
    ]
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: len(tally.completed) >= 15 and len(tally.stored) >= 30, timeout=120)
        os.kill(serve.process.pid, signal.SIGKILL)
        assert serve.process.wait(30) == -signal.SIGKILL
        stop.set()
        for worker in workers:
            worker.join(60)
            assert not worker.is_alive()
        # pynetdicom's client leaves the socket of an association its peer aborted for the
        # garbage collector; collected here, its ResourceWarning is not the broker's doing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        stop.set()
        if serve.process.poll() is None:
            serve.kill()
        serve.close()
    assert tally.errors == []

    # Restart on the same database: it opens, and everything answered success is there.
    again = start_serve(database_url, cwd=tmp_path)
    assert again.terminate() == 0
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
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
    assert sorted(tally.created - set(steps)) == []
    assert sorted(uid for uid in tally.completed if steps.get(uid) != "COMPLETED") == []
    assert sorted(tally.stored - indexed) == []
    print(
        f"\nSIGKILL after {len(tally.created)} N-CREATE, {len(tally.completed)} N-SET and "
        f"{len(tally.stored)} C-STORE answered success: all found after the restart"
    )
