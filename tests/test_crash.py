"""The broker is killed mid-stream and restarted: no ACKed message is lost, none is applied twice.

While a client streams 2,000 messages over several MLLP connections, ``mwlbroker serve`` is killed
with SIGKILL; it is restarted on the same database and the client resends everything it did not
get an ACK for, plus some messages that were ACKed. The database must then hold each message
exactly once, every ACKed one processed, and the resent ones counted as duplicates.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.processes import ServeProcess, start_serve

TOTAL = 2000
CONNECTIONS = 8  # concurrent senders: their messages share commits (group commit)
KILL_AFTER_ACKS = 600
RESEND_ACKED = 100
ACK_TIMEOUT = 30.0  # seconds a sender waits for one ACK before it gives up on the connection


def control_id(number: int) -> str:
    return f"CRASH{number:05d}"


def message_for(control: str) -> bytes:
    # Distinct patient and order per message, so each one is a real, separate order.
    return orm(control, patient=f"P{control}")


class Stream:
    """Sends messages over several MLLP connections at once and records each ACK received."""

    def __init__(self, port: int, kill_after: int | None = None) -> None:
        self.port = port
        self.kill_after = kill_after
        self.acks: dict[str, str] = {}  # control ID -> MSA-1, only for ACKs actually received
        self.connection_errors: list[str] = []
        self.mismatched: list[str] = []  # ACKs whose MSA-2 is not the MSH-10 just sent
        self.lock = threading.Lock()
        self.threshold = threading.Event()  # set at kill_after ACKs, or when every sender is done

    def run(self, controls: Sequence[str]) -> None:
        """Send ``controls`` split over the connections; returns when every sender has stopped."""
        shares = [controls[i::CONNECTIONS] for i in range(CONNECTIONS)]
        senders = [
            threading.Thread(target=self._send_all, args=(share,), name=f"sender-{i}", daemon=True)
            for i, share in enumerate(shares)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(ACK_TIMEOUT * 4)
            assert not sender.is_alive(), f"{sender.name} is stuck"
        self.threshold.set()

    def _send_all(self, controls: Sequence[str]) -> None:
        try:
            peer = Peer(self.port, timeout=ACK_TIMEOUT)
        except OSError as error:
            with self.lock:
                self.connection_errors.append(f"connect: {error!r}")
            return
        try:
            for control in controls:
                try:
                    ack = peer.send(message_for(control))
                except OSError as error:  # reset, closed, broken pipe, timeout: not ACKed
                    with self.lock:
                        self.connection_errors.append(f"{control}: {error!r}")
                    return
                msa = ack_fields(ack)["MSA"]
                with self.lock:
                    if msa[2] != control:
                        self.mismatched.append(f"{control} answered by an ACK for {msa[2]!r}")
                        return
                    self.acks[control] = msa[1]
                    if self.kill_after is not None and len(self.acks) >= self.kill_after:
                        self.threshold.set()
        finally:
            peer.close()


def kill_when(stream: Stream, serve: ServeProcess, killed: dict[str, int]) -> None:
    """Kill the broker with SIGKILL as soon as the stream has its count of ACKs."""
    if not stream.threshold.wait(ACK_TIMEOUT * 4):
        return
    with stream.lock:
        killed["acks_before_kill"] = len(stream.acks)
    os.kill(serve.process.pid, signal.SIGKILL)
    killed["signal"] = signal.SIGKILL


def stop(servers: Sequence[ServeProcess]) -> None:
    """Kill whatever still runs and close the log pipes."""
    for server in servers:
        if server.process.poll() is None:
            server.kill()
        server.close()


def stored_messages(database_url: str) -> tuple[list[tuple[str, str, str, int]], Counter[str]]:
    """Read straight from the tables: (control_id, status, ack_code, duplicate_count) of every
    stored message, and how many orders exist per placer order number (ORC-2)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT control_id, status, ack_code, duplicate_count FROM message")
            ).all()
            orders: Counter[str] = Counter()
            if inspect(connection).has_table("imaging_order"):
                orders.update(
                    connection.execute(text("SELECT placer_order_number FROM imaging_order"))
                    .scalars()
                    .all()
                )
    finally:
        engine.dispose()
    return [tuple(row) for row in rows], orders


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_mid_stream_loses_no_acked_message_and_applies_none_twice(
    database_url: str, tmp_path: Path
) -> None:
    controls = [control_id(n) for n in range(TOTAL)]
    started = time.monotonic()
    servers: list[ServeProcess] = []
    try:
        # First run: stream everything, kill -9 the broker once enough ACKs came back.
        first = start_serve(database_url, cwd=tmp_path)
        servers.append(first)
        stream = Stream(first.hl7_port, kill_after=KILL_AFTER_ACKS)
        killed: dict[str, int] = {}
        killer = threading.Thread(
            target=kill_when, args=(stream, first, killed), name="killer", daemon=True
        )
        killer.start()
        stream.run(controls)
        killer.join(ACK_TIMEOUT)
        assert killed.get("signal") == signal.SIGKILL, "the broker was never killed"
        assert first.process.wait(30) == -signal.SIGKILL

        assert stream.mismatched == []
        first_acks = dict(stream.acks)
        assert set(first_acks.values()) == {"AA"}, Counter(first_acks.values())
        acked = sorted(first_acks)
        not_acked = [c for c in controls if c not in first_acks]
        assert len(acked) >= KILL_AFTER_ACKS
        assert not_acked, "every message was ACKed before the kill: the crash came too late"
        assert stream.connection_errors, "the kill should have broken the open connections"

        # Second run on the same database: resend what was not ACKed, plus some that were.
        second = start_serve(database_url, cwd=tmp_path)
        servers.append(second)
        resent_acked = acked[:: max(1, len(acked) // RESEND_ACKED)][:RESEND_ACKED]
        resend = sorted(not_acked + resent_acked)
        again = Stream(second.hl7_port)
        again.run(resend)
        assert again.connection_errors == []
        assert again.mismatched == []
        assert sorted(again.acks) == resend
        assert Counter(again.acks.values()) == Counter({"AA": len(resend)})
        assert second.terminate() == 0, "the restarted broker did not stop cleanly"
    finally:
        stop(servers)

    rows, orders = stored_messages(database_url)
    by_control = {row[0]: row for row in rows}
    copies = Counter(row[0] for row in rows)

    # Each message applied exactly once: one row per control ID, no more, no fewer.
    assert len(rows) == TOTAL
    assert [c for c, n in copies.items() if n > 1] == []
    assert set(by_control) == set(controls)
    # Where orders are applied from the messages (the worklist tables), none exists twice.
    assert [order for order, n in orders.items() if n > 1] == []

    # Every message ACKed AA before the crash survived it, processed.
    lost = [c for c in acked if c not in by_control]
    assert lost == []
    not_processed = [c for c in acked if by_control[c][1:3] != ("processed", "AA")]
    assert not_processed == []
    assert {row[1] for row in rows} == {"processed"}

    # The resent, already ACKed messages were recognised as resends and answered AA again.
    not_counted = [c for c in resent_acked if by_control[c][3] < 1]
    assert not_counted == []
    assert all(again.acks[c] == "AA" for c in resent_acked)

    # Not an assertion (it depends on timing), but worth seeing: messages committed by the first
    # run whose ACK never left it, found again on the resend instead of being stored twice.
    committed_unacked = sum(1 for c in not_acked if by_control[c][3] >= 1)
    print(
        f"\n{database_url.split(':')[0]}: {len(acked)} ACKed before SIGKILL "
        f"(kill triggered at {killed['acks_before_kill']}), {len(not_acked)} not ACKed "
        f"({committed_unacked} of them already committed), {len(resend)} resent; "
        f"{time.monotonic() - started:.1f} s"
    )
