"""Slow and idle MLLP clients cannot hold the listener: the idle timeout frees their slots, the
connection cap holds, and a normal sender is served once slots are free (SQLite and PostgreSQL).
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.hl7_messages import ack_fields, orm
from tests.support.mllp_peers import Peer
from tests.support.polling import wait_until

IDLE = 1.0
SLOTS = 5


def test_idle_and_trickling_clients_are_closed_and_the_cap_holds(broker_factory):
    broker = broker_factory(hl7__idle_timeout=IDLE, hl7__max_connections=SLOTS)
    port = broker.hl7.port
    started = time.monotonic()
    # Fill every slot: some send nothing, some one byte at a time inside a frame that never ends.
    silent = [Peer(port) for _ in range(SLOTS - 2)]
    trickling = [Peer(port) for _ in range(2)]
    try:
        run_slot_checks(broker, silent, trickling, started)
    finally:
        for peer in silent + trickling:
            peer.close()


def run_slot_checks(broker, silent: list[Peer], trickling: list[Peer], started: float) -> None:
    port = broker.hl7.port
    wait_until(lambda: broker.hl7.connection_count == SLOTS)
    closed_at: dict[int, float] = {}
    stop = threading.Event()

    def trickle(index: int, peer: Peer) -> None:
        message = b"\x0b" + orm(f"SLOW{index}")
        for byte in message:
            if stop.is_set():
                return
            try:
                peer.send_raw(bytes([byte]))
            except OSError:
                closed_at[index] = time.monotonic() - started
                return
            # The trickle under test, not a wait for a state: one byte every IDLE / 4 s, always
            # well inside the idle timeout between two bytes, never a complete message.
            time.sleep(IDLE / 4)

    threads = [
        threading.Thread(target=trickle, args=(i, p), daemon=True) for i, p in enumerate(trickling)
    ]
    for thread in threads:
        thread.start()

    # The cap: one more connection is closed at once, without an answer.
    with Peer(port, timeout=5) as extra:
        assert extra.closed_by_server()
    assert broker.hl7.connection_count == SLOTS

    # The timeout frees every slot, the trickling ones included (they never finish a message).
    for peer in silent:
        assert peer.closed_by_server()
    wait_until(lambda: broker.hl7.connection_count == 0, timeout=IDLE * 6)
    freed_after = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(10)
    assert freed_after < IDLE * 6, freed_after

    # A normal sender is served.
    with Peer(port) as peer:
        assert ack_fields(peer.send(orm("NORMAL1")))["MSA"][1:3] == ["AA", "NORMAL1"]


def test_a_slow_sender_that_completes_messages_is_kept(broker_factory):
    broker = broker_factory(hl7__idle_timeout=IDLE)
    with Peer(broker.hl7.port) as peer:
        for number in range(4):  # 4 x 0.6 s: longer than the timeout in all, never idle for it
            time.sleep(IDLE * 0.6)  # the slow sender under test: its pause is the behaviour
            assert ack_fields(peer.send(orm(f"PACED{number}")))["MSA"][1] == "AA"


def test_many_connections_opened_and_dropped_leave_no_slot_taken(broker_factory):
    broker = broker_factory(hl7__idle_timeout=IDLE, hl7__max_connections=SLOTS)
    for _ in range(50):  # opened and dropped at once, or reset mid-frame
        connection = socket.create_connection(("127.0.0.1", broker.hl7.port))
        connection.sendall(b"\x0bMSH|^~\\&|")
        connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        connection.close()  # SO_LINGER 0: a reset, not a clean close

    # A count of 0 right now proves nothing: the dropped connections may still wait in the
    # accept queue, and will hold their slots for a moment once accepted. So the normal sender
    # tries until it is served; a slot that was never freed would keep it out until the deadline.
    def served() -> bool:
        try:
            with Peer(broker.hl7.port) as peer:
                return ack_fields(peer.send(orm("AFTERRESET")))["MSA"][1] == "AA"
        except OSError:  # refused at the cap while the dropped connections held every slot
            return False

    wait_until(served, timeout=10, what="a normal sender served once the slots are free")
    wait_until(lambda: broker.hl7.connection_count == 0, timeout=10)
