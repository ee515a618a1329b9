"""MLLP load driver: messages per second and ACK latency, the way a RIS would send them.

Two modes. Throughput: K connections, each sending its next message as soon as the ACK for
the last one arrived, until all are sent. Steady rate: messages sent on a fixed schedule
(100 a second) over one connection; each latency is counted from the moment the message was
due, so an ACK that holds up the ones behind it counts against them too.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mwlbroker.bench.stats import summary
from mwlbroker.mllp.sender import MLLPClient


@dataclass
class IntakeRun:
    """What one run measured."""

    mode: str  # "throughput" or "steady"
    connections: int
    messages: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    ack_codes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    rate: float | None = None  # the steady rate asked for
    cpu_seconds: float | None = None  # the broker's CPU time during the run, when known

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "connections": self.connections,
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "messages_per_second": round(self.per_second, 1),
            "rate_asked": self.rate,
            "ack_latency_ms": summary(self.latencies_ms),
            "broker_cpu_ms_per_message": (
                round(self.cpu_seconds * 1000 / self.messages, 2)
                if self.cpu_seconds is not None and self.messages
                else None
            ),
            "ack_codes": dict(self.ack_codes),
            "errors": self.errors[:10],
        }


def throughput(
    host: str, port: int, messages: Sequence[bytes], connections: int, *, timeout: float = 60.0
) -> IntakeRun:
    """Send every message over ``connections`` connections at once, as fast as ACKs come."""
    clients = [MLLPClient(host, port, timeout=timeout) for _ in range(connections)]
    run = IntakeRun("throughput", connections, len(messages), 0.0)
    numbers = itertools.count()  # shared: next() on a count is atomic under the GIL
    lock = threading.Lock()
    start = threading.Barrier(connections + 1)

    def send(client: MLLPClient) -> None:
        latencies: list[float] = []
        codes: Counter[str] = Counter()
        errors: list[str] = []
        start.wait()
        while (number := next(numbers)) < len(messages):
            sent = time.perf_counter()
            try:
                reply = client.send(messages[number])
            except Exception as error:  # a SendError, or the broker gone
                errors.append(str(error))
                break
            latencies.append((time.perf_counter() - sent) * 1000)
            codes[reply.code or "?"] += 1
        with lock:
            run.latencies_ms.extend(latencies)
            run.ack_codes.update(codes)
            run.errors.extend(errors)

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - began
    for client in clients:
        client.close()
    run.messages = sum(run.ack_codes.values())
    return run


def steady(
    host: str, port: int, messages: Sequence[bytes], rate: float, *, timeout: float = 60.0
) -> IntakeRun:
    """Send the messages on one connection at ``rate`` a second, each on its due time."""
    run = IntakeRun("steady", 1, len(messages), 0.0, rate=rate)
    with MLLPClient(host, port, timeout=timeout) as client:
        began = time.perf_counter()
        for number, message in enumerate(messages):
            due = began + number / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # pacing the sender, not waiting for the broker
            try:
                reply = client.send(message)
            except Exception as error:  # a SendError, or the broker gone
                run.errors.append(str(error))
                break
            run.latencies_ms.append((time.perf_counter() - due) * 1000)
            run.ack_codes[reply.code or "?"] += 1
        run.seconds = time.perf_counter() - began
    run.messages = sum(run.ack_codes.values())
    return run
