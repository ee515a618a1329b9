"""``mwlbroker bench`` end to end: a small real run, on SQLite and on PostgreSQL.

The run starts its own brokers (``mwlbroker serve`` children), sends real HL7 over MLLP, bulk
loads a worklist, asks it over DICOM (and DCMTK's wlmscpfs, where installed) and must report
every figure, with counts that agree with what the synthetic generator made.
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import pytest

from mwlbroker.bench.queries import KINDS, NARROW_MODALITY, STATION, WIDE_MODALITY
from mwlbroker.bench.synthetic import PER_DAY, SyntheticOrders
from mwlbroker.bench.targets import TARGETS
from tests.support.processes import cli_env, run_cli

MESSAGES = 50
SIZE = 200
STEADY_SECONDS = 1.0  # 100 messages at 100 msg/s
DCMTK = shutil.which("wlmscpfs") is not None and shutil.which("findscu") is not None


def _bench(database_url: str, *args: str) -> dict:
    done = run_cli(
        "bench",
        *args,
        "--json",
        env=cli_env(database_url),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _latency_figures(figures: dict) -> None:
    assert figures["count"] > 0
    for key in ("p50", "p95", "p99", "max"):
        assert figures[key] is not None and figures[key] > 0


@pytest.mark.slow
def test_bench_measures_every_figure(database_url):
    result = _bench(
        database_url,
        "--database-url",
        database_url,
        "--messages",
        str(MESSAGES),
        "--sizes",
        str(SIZE),
        "--queries",
        "2",
        "--steady-seconds",
        str(STEADY_SECONDS),
    )
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    assert result["database_kind"] == kind
    assert result["database"].lower().startswith(kind)
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["machine"]["python"].startswith("CPython 3.")

    # intake: 8 connections, one connection, steady rate; every message answered AA and stored
    intake = result["intake"]
    runs = {(run["mode"], run["connections"]): run for run in intake["runs"]}
    assert set(runs) == {("throughput", 8), ("throughput", 1), ("steady", 1)}
    for run in runs.values():
        assert run["messages_per_second"] > 0
        assert run["errors"] == []
        _latency_figures(run["ack_latency_ms"])
    assert runs[("steady", 1)]["messages"] == 100
    sent = 2 * MESSAGES + 100
    assert intake["messages_sent"] == intake["messages_accepted"] == sent
    assert intake["steps_stored"] == sent
    assert intake["memory_mb"]["rss"] > 0
    assert intake["broker_errors"] == []
    check = intake["loader_check"]
    assert check["checked"] > 0 and check["equal"] == check["checked"], check["differences"]

    # worklist: the loaded items, each query kind answered with what the generator made
    (entry,) = result["worklist"]["sizes"]
    assert entry["size"] == entry["steps_stored"] == SIZE
    assert entry["memory_mb"]["rss"] > 0
    expected = _expected_counts(result["run_tag"], date.fromisoformat(result["today"]))
    assert set(entry["queries"]) == {k for k, _ in KINDS}
    for name, figures in entry["queries"].items():
        ours = figures["broker"]
        assert ours["failures"] == [] and ours["correct"], (name, ours)
        if name in expected:
            assert ours["items"] == [expected[name]] * 2, name
        _latency_figures(ours["first_response_ms"])
        _latency_figures(ours["whole_query_ms"])
        if DCMTK:
            theirs = figures["wlmscpfs"]
            assert theirs["correct"] and theirs["items"] == ours["items"], (name, theirs)
            _latency_figures(theirs["whole_query_ms"])
            _latency_figures(figures["findscu_ms"]["broker"])
            _latency_figures(figures["findscu_ms"]["wlmscpfs"])
    assert result["worklist"]["broker_errors"] == []

    judged = {target["name"]: target for target in result["targets"]}
    assert set(judged) == {target.name for target in TARGETS}
    assert all(t["status"] in ("met", "not met", "not measured") for t in judged.values())
    assert judged["ack_p99_steady"]["status"] != "not measured"


def _expected_counts(run: str, today: date) -> dict[str, int]:
    """What the worklist must hold for the fixed queries, counted from the generator itself."""
    orders = SyntheticOrders(run, today, per_day=PER_DAY).orders(0, SIZE)
    # fewer orders than a day's volume: all of them are for today, so in every query's range
    assert all(o.start_date == f"{today:%Y%m%d}" for o in orders)
    return {
        "station_today": sum(o.station.ae_title == STATION for o in orders),
        "modality_range": sum(o.modality == NARROW_MODALITY for o in orders),
        "wide": sum(o.modality == WIDE_MODALITY for o in orders),
        "accession": 1,
    }


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bench_measures_the_intake_of_a_running_broker(broker, database_url):
    result = _bench(
        database_url,
        "--target",
        f"127.0.0.1:{broker.hl7.port}",
        "--messages",
        "20",
        "--connections",
        "2",
        "--steady-seconds",
        "0.2",
    )
    runs = result["intake"]["runs"]
    assert [(r["mode"], r["connections"]) for r in runs] == [
        ("throughput", 2),
        ("throughput", 1),
        ("steady", 1),
    ]
    assert result["intake"]["messages_accepted"] == 20 + 20 + 20
    assert result["worklist"]["sizes"] == []
    judged = {target["name"]: target["status"] for target in result["targets"]}
    assert judged["intake_sqlite_8"] == "not measured"


def test_bench_refuses_bad_options(tmp_path):
    env = cli_env(f"sqlite:///{tmp_path / 'unused.db'}")
    for args in (["--sizes", "1000,lots"], ["--target", "nowhere"], ["--messages", "0"]):
        done = run_cli("bench", *args, env=env)
        assert done.returncode == 2, args
        assert "mwlbroker:" in done.stderr
