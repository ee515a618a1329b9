"""The database goes away under a stream of messages and comes back: no AA while it is away,
everything answered AA is stored, and the broker recovers by itself, without a restart.

PostgreSQL is made unreachable by a TCP proxy between the broker and the server that the test
cuts (every open connection dropped, new ones closed at once) and restores. SQLite runs out of
disk on a small tmpfs mounted for the test (root only); where mounting is not allowed, the
database is held at its current size with ``PRAGMA max_page_count``, which fails writes with the
same SQLITE_FULL error a full disk gives.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.polling import wait_until
from tests.support.prerequisites import POSTGRES_URL, postgres_or_skip
from tests.support.processes import start_serve
from tests.support.settings import make_config


class CuttableProxy:
    """A TCP proxy to one upstream address that can be cut (nothing gets through) and restored."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut_off(self) -> None:
        self.cut.set()
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def restore(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.cut_off()
        self.listener.close()


def send_each(port: int, controls: list[str], acks: dict[str, str], pause: float = 0) -> None:
    """Send each message on a fresh connection when needed; record MSA-1, or "closed"."""
    peer: Peer | None = None
    for control in controls:
        time.sleep(pause)  # the sender's pace: a stream spread over time, not a wait for a state
        try:
            if peer is None:
                peer = Peer(port, timeout=60)
            acks[control] = ack_fields(peer.send(orm(control, patient=f"P{control}")))["MSA"][1]
        except OSError:
            acks[control] = "closed"
            if peer is not None:
                peer.close()
            peer = None
    if peer is not None:
        peer.close()


def processed(url: str, controls: list[str]) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT control_id FROM message WHERE status = 'processed'")
            ).scalars()
            found = set(rows)
    finally:
        engine.dispose()
    return found & set(controls)


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield schema
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.mark.slow
def test_postgresql_unreachable_then_back_no_aa_while_away_and_recovery(
    postgres_schema: str, tmp_path: Path
) -> None:
    proxy = CuttableProxy(("127.0.0.1", 5432))
    direct = f"{POSTGRES_URL}?options=-csearch_path%3D{postgres_schema}"
    via_proxy = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert via_proxy != direct
    serve = start_serve(via_proxy, cwd=tmp_path)
    try:
        before = [f"PGUP{n:03d}" for n in range(20)]
        during = [f"PGDOWN{n:03d}" for n in range(20)]
        acks: dict[str, str] = {}
        send_each(serve.hl7_port, before, acks)
        assert {acks[c] for c in before} == {"AA"}

        proxy.cut_off()
        started = time.monotonic()
        send_each(serve.hl7_port, during, acks, pause=0.1)  # a stream over two seconds
        cut_for = time.monotonic() - started
        assert [c for c in during if acks[c] == "AA"] == [], "AA while the database was away"
        assert {acks[c] for c in during} <= {"AR", "closed"}
        assert "AR" in {acks[c] for c in during}

        # Back: the same broker process answers AA again by itself, no restart.
        proxy.restore()
        probes = (f"PGBACK{attempt:03d}" for attempt in itertools.count(1))

        def answers_aa() -> bool:
            probe = next(probes)
            send_each(serve.hl7_port, [probe], acks)
            return acks[probe] == "AA"

        wait_until(answers_aa, timeout=60, what="AA again after the restore", interval=0.2)
        recovered = time.monotonic() - started - cut_for
        assert serve.process.poll() is None
        resent: dict[str, str] = {}
        send_each(serve.hl7_port, during, resent)  # what was refused is sent again
        assert set(resent.values()) == {"AA"}
        assert serve.terminate() == 0
    finally:
        if serve.process.poll() is None:
            serve.kill()
        proxy.close()
    aa = [c for c, code in acks.items() if code == "AA"]
    assert processed(direct, aa + during) == set(aa + during)  # every AA is stored
    print(f"\nPostgreSQL cut for {cut_for:.1f} s: {len(during)} refused (AR), "
          f"AA again {recovered:.2f} s after the restore")  # fmt: skip


# -- SQLite: disk full -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 6 MB tmpfs when this is root and mounting is allowed, else None."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        yield None
        return
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        yield None
        return
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has no space left."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    return filler


def test_sqlite_disk_full_no_aa_service_keeps_running_and_recovers(
    small_disk: Path | None, tmp_path: Path, broker_factory_sqlite
) -> None:
    folder = small_disk or tmp_path
    broker = broker_factory_sqlite(f"sqlite:///{folder / 'broker.db'}")
    limit: dict[str, int | None] = {"pages": None}

    @event.listens_for(broker.db.engine, "connect")
    def _cap(dbapi_connection, _record) -> None:
        if limit["pages"] is not None:
            dbapi_connection.execute(f"PRAGMA max_page_count={limit['pages']}")

    acks: dict[str, str] = {}
    send_each(broker.hl7.port, [f"FULLUP{n:03d}" for n in range(10)], acks)
    assert set(acks.values()) == {"AA"}

    if small_disk is not None:
        how = "a full tmpfs"
        filler = fill(small_disk)
    else:
        how = "PRAGMA max_page_count"
        with broker.db.engine.connect() as connection:
            limit["pages"] = connection.exec_driver_sql("PRAGMA page_count").scalar()
        broker.db.engine.dispose()  # every new connection gets the cap
    during = [f"FULL{n:03d}" for n in range(15)]
    send_each(broker.hl7.port, during, acks)
    assert [c for c in during if acks[c] == "AA"] == [], f"AA with {how}"
    assert {acks[c] for c in during} <= {"AR", "closed"}

    # Space freed: the same broker takes messages again.
    if small_disk is not None:
        filler.unlink()
    else:
        limit["pages"] = None
        broker.db.engine.dispose()
    again: dict[str, str] = {}
    send_each(broker.hl7.port, during, again)
    assert set(again.values()) == {"AA"}, again
    aa = [c for c, code in {**acks, **again}.items() if code == "AA"]
    assert processed(f"sqlite:///{folder / 'broker.db'}", aa) == set(aa)
    print(f"\nSQLite disk full simulated by {how}: {len(during)} refused, then all AA")


@pytest.fixture
def broker_factory_sqlite() -> Iterator:
    from mwlbroker.app import Broker

    started: list[Broker] = []

    def start(url: str) -> Broker:
        broker = Broker(make_config(url))
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()
