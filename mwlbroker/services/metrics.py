"""Prometheus metrics of one broker process: what it did (counters, latencies) and what waits.

Counters and histograms count this process's own work, since the broker started, the way
Prometheus expects (a scrape per node; sums and rates across nodes are the server's job).
Queue depths and job runs are read from the database at scrape time instead: they belong to
the shared database, not to a process, so every node reports the same truth about them.
Nothing here carries patient data, which is why /metrics needs no login.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mwlbroker.store import jobs as job_store
from mwlbroker.store import outbound as outbound_store
from mwlbroker.store.db import Database, DatabaseUnavailable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Milliseconds matter here: a modality waits for its worklist, a RIS for its ACK.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    """The metrics of one broker: edges record into it, /metrics renders it."""

    def __init__(self, db: Database | None = None, *, leader: Callable[[], bool] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hl7_messages = Counter(
            "mwlbroker_hl7_messages",
            "HL7 messages answered, by message type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.hl7_ack_seconds = Histogram(
            "mwlbroker_hl7_ack_seconds",
            "Time from a whole message received to its ACK sent (after the commit)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.hl7_connections = Gauge(
            "mwlbroker_hl7_connections", "MLLP connections open now", registry=r
        )
        self.cfind_queries = Counter(
            "mwlbroker_cfind_queries",
            "Modality Worklist C-FIND queries answered, by final status",
            ["status"],
            registry=r,
        )
        self.cfind_seconds = Histogram(
            "mwlbroker_cfind_seconds",
            "Time from a C-FIND request to its final response",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dicom_associations = Gauge(
            "mwlbroker_dicom_associations", "DICOM associations open now", registry=r
        )
        self.mpps = Counter(
            "mwlbroker_mpps",
            "MPPS requests answered, by operation (N-CREATE, N-SET) and status",
            ["operation", "status"],
            registry=r,
        )
        self.cstore = Counter(
            "mwlbroker_cstore",
            "C-STORE requests answered, by status",
            ["status"],
            registry=r,
        )
        if db is not None:
            r.register(_StoreCollector(db, leader or (lambda: False)))

    def render(self) -> bytes:
        """The Prometheus text exposition of everything above."""
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    """Gauges read from the shared database at each scrape."""

    def __init__(self, db: Database, leader: Callable[[], bool]) -> None:
        self.db = db
        self.leader = leader

    def describe(self) -> list[Metric]:
        return []  # gauges appear as the database has them; nothing to register up front

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "mwlbroker_outbound_messages",
            "Outbound HL7 messages by destination and status (pending is the queue depth)",
            labels=["destination", "status"],
        )
        last_run = GaugeMetricFamily(
            "mwlbroker_job_last_run_timestamp_seconds",
            "When each scheduled job last started (Unix time)",
            labels=["job"],
        )
        last_ok = GaugeMetricFamily(
            "mwlbroker_job_last_run_success",
            "1 if the job's last run succeeded, 0 if it failed",
            labels=["job"],
        )
        last_duration = GaugeMetricFamily(
            "mwlbroker_job_last_run_duration_seconds",
            "How long each job's last finished run took",
            labels=["job"],
        )
        up = GaugeMetricFamily(
            "mwlbroker_database_up", "1 if the database answered this scrape, else 0"
        )
        try:
            with self.db.reading() as session:
                counts = outbound_store.counts(session)
                runs = job_store.last_runs(session)
                for (destination, status), count in sorted(counts.items()):
                    queue.add_metric([destination, status], count)
                for name, run in sorted(runs.items()):
                    last_run.add_metric([name], _unix(run.started_at))
                    if run.ok is not None:
                        last_ok.add_metric([name], 1.0 if run.ok else 0.0)
                        last_duration.add_metric([name], run.milliseconds / 1000)
            up.add_metric([], 1.0)
        except DatabaseUnavailable:  # a scrape must answer even while the database is away
            up.add_metric([], 0.0)
        yield from (queue, last_run, last_ok, last_duration, up)
        yield GaugeMetricFamily(
            "mwlbroker_scheduler_leader",
            "1 if this node holds the scheduler lease (runs the scheduled jobs)",
            value=1.0 if self.leader() else 0.0,
        )


def _unix(moment: datetime) -> float:
    # SQLite gives back naive datetimes; the broker writes them all in UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
