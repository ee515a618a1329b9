"""The targets of issues #4 (worklist) and #5 (intake), each judged on a benchmark's figures.

A target is met, not met, or not measured (the run did not include what it needs: another
database, a size, wlmscpfs); each says why in its ``value`` text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Result = Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    """One figure with the bound it must meet."""

    name: str
    issue: int
    what: str
    goal: str
    measure: Callable[[Result], tuple[float | None, str]]  # (value, how it is shown / why not)
    passes: Callable[[float], bool]


def _intake(database: str, connections: int) -> Callable[[Result], tuple[float | None, str]]:
    def measure(result: Result) -> tuple[float | None, str]:
        if result.get("database_kind") != database:
            return None, f"run on {database} to measure"
        run = _intake_run(result, "throughput", connections)
        if run is None:
            return None, f"no run over {connections} connection(s)"
        value = float(run["messages_per_second"])
        return value, f"{value:,.0f} msg/s"

    return measure


def _steady_p99(result: Result) -> tuple[float | None, str]:
    run = _intake_run(result, "steady", 1)
    if run is None or run["ack_latency_ms"]["p99"] is None:
        return None, "no steady-rate run"
    value = float(run["ack_latency_ms"]["p99"])
    return value, f"p99 {value:.1f} ms at {run['rate_asked']:g} msg/s"


def _intake_run(result: Result, mode: str, connections: int) -> Mapping[str, Any] | None:
    for run in result.get("intake", {}).get("runs", []):
        if run["mode"] == mode and run["connections"] == connections:
            return run
    return None


def _size(result: Result, size: int) -> Mapping[str, Any] | None:
    for entry in result.get("worklist", {}).get("sizes", []):
        if entry["size"] == size:
            return entry
    return None


def _first_response(kind: str, size: int) -> Callable[[Result], tuple[float | None, str]]:
    def measure(result: Result) -> tuple[float | None, str]:
        entry = _size(result, size)
        if entry is None:
            return None, f"N = {size:,} not run"
        value = entry["queries"][kind]["broker"]["first_response_ms"]["p50"]
        return value, f"median {value:.1f} ms"

    return measure


def _versus_wlmscpfs(
    kind: str, size: int, how: str
) -> Callable[[Result], tuple[float | None, str]]:
    def measure(result: Result) -> tuple[float | None, str]:
        entry = _size(result, size)
        if entry is None:
            return None, f"N = {size:,} not run"
        figures = entry["queries"][kind]
        if how == "findscu":
            ours, theirs = (
                _p50(figures["findscu_ms"]["broker"]),
                _p50(figures["findscu_ms"]["wlmscpfs"]),
            )
        else:
            ours = _p50(figures["broker"]["whole_query_ms"])
            theirs = _p50((figures["wlmscpfs"] or {}).get("whole_query_ms"))
        if theirs is None or not ours:
            return None, "wlmscpfs not run at this size"
        ratio = theirs / ours
        return ratio, f"{ratio:.1f}x ({ours:.1f} vs {theirs:.1f} ms)"

    return measure


def _p50(figures: Mapping[str, Any] | None) -> float | None:
    return figures.get("p50") if figures else None


def _growth(kind: str) -> Callable[[Result], tuple[float | None, str]]:
    def measure(result: Result) -> tuple[float | None, str]:
        small, large = _size(result, 1000), _size(result, 100000)
        if small is None or large is None:
            return None, "needs N = 1,000 and 100,000 (--full)"
        before = small["queries"][kind]["broker"]["whole_query_ms"]["p50"]
        after = large["queries"][kind]["broker"]["whole_query_ms"]["p50"]
        ratio = after / before
        return ratio, f"{ratio:.2f}x ({before:.1f} -> {after:.1f} ms)"

    return measure


def _memory(result: Result) -> tuple[float | None, str]:
    entry = _size(result, 100000)
    if entry is None:
        return None, "N = 100,000 not run (--full)"
    peak = entry["memory_mb"].get("peak")
    if peak is None:
        return None, "memory not readable on this system"
    return peak, f"peak {peak:.0f} MB (now {entry['memory_mb'].get('rss', 0):.0f} MB)"


def _at_least(bound: float) -> Callable[[float], bool]:
    return lambda value: value >= bound


def _at_most(bound: float) -> Callable[[float], bool]:
    return lambda value: value <= bound


def _below(bound: float) -> Callable[[float], bool]:
    return lambda value: value < bound


TARGETS = (
    Target(
        "intake_sqlite_8",
        5,
        "intake, SQLite, 8 connections",
        ">= 500 msg/s",
        _intake("sqlite", 8),
        _at_least(500),
    ),
    Target(
        "intake_sqlite_1",
        5,
        "intake, SQLite, 1 connection",
        ">= 300 msg/s",
        _intake("sqlite", 1),
        _at_least(300),
    ),
    Target(
        "intake_postgresql_8",
        5,
        "intake, PostgreSQL, 8 connections",
        ">= 400 msg/s",
        _intake("postgresql", 8),
        _at_least(400),
    ),
    Target(
        "ack_p99_steady",
        5,
        "ACK latency at a steady 100 msg/s",
        "p99 < 20 ms",
        _steady_p99,
        _below(20),
    ),
    Target(
        "first_response_station_100k",
        4,
        "station + today, first response, N = 100,000",
        "median <= 10 ms",
        _first_response("station_today", 100000),
        _at_most(10),
    ),
    Target(
        "station_vs_wlmscpfs_10k",
        4,
        "station + today vs wlmscpfs, whole query, N = 10,000",
        ">= 10x faster",
        _versus_wlmscpfs("station_today", 10000, "scu"),
        _at_least(10),
    ),
    Target(
        "accession_vs_wlmscpfs_10k",
        4,
        "accession number vs wlmscpfs, whole query, N = 10,000",
        ">= 10x faster",
        _versus_wlmscpfs("accession", 10000, "scu"),
        _at_least(10),
    ),
    Target(
        "station_vs_wlmscpfs_findscu_10k",
        4,
        "station + today vs wlmscpfs, findscu wall time, N = 10,000",
        ">= 10x faster",
        _versus_wlmscpfs("station_today", 10000, "findscu"),
        _at_least(10),
    ),
    Target(
        "accession_vs_wlmscpfs_findscu_10k",
        4,
        "accession number vs wlmscpfs, findscu wall time, N = 10,000",
        ">= 10x faster",
        _versus_wlmscpfs("accession", 10000, "findscu"),
        _at_least(10),
    ),
    Target(
        "station_growth",
        4,
        "station + today, whole query, N = 100,000 vs 1,000",
        "<= 1.5x slower",
        _growth("station_today"),
        _at_most(1.5),
    ),
    Target(
        "accession_growth",
        4,
        "accession number, whole query, N = 100,000 vs 1,000",
        "<= 1.5x slower",
        _growth("accession"),
        _at_most(1.5),
    ),
    Target(
        "wide_vs_wlmscpfs_10k",
        4,
        "wide query vs wlmscpfs, whole query, N = 10,000",
        ">= 1.5x faster",
        _versus_wlmscpfs("wide", 10000, "scu"),
        _at_least(1.5),
    ),
    Target(
        "memory_100k",
        4,
        "broker resident memory, N = 100,000",
        "< 250 MB",
        _memory,
        _below(250),
    ),
)


def _status(target: Target, value: float | None) -> str:
    if value is None:
        return "not measured"
    return "met" if target.passes(value) else "not met"


def evaluate(result: Result) -> list[dict[str, Any]]:
    """Every target with its value and whether it is met, not met or not measured."""
    judged = []
    for target in TARGETS:
        try:
            value, shown = target.measure(result)
        except (KeyError, TypeError, ZeroDivisionError):
            value, shown = None, "figure missing"
        status = _status(target, value)
        judged.append(
            {
                "name": target.name,
                "issue": target.issue,
                "what": target.what,
                "goal": target.goal,
                "value": value,
                "shown": shown,
                "status": status,
            }
        )
    return judged
