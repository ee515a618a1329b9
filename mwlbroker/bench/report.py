"""The benchmark's result as tables for people: machine, intake, worklist queries, targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Result = Mapping[str, Any]


def render(result: Result) -> str:
    """The whole report as text."""
    lines = _header(result)
    lines += ["", *_intake(result)]
    worklist = result.get("worklist", {})
    if worklist.get("sizes"):
        lines += ["", *_worklist(result)]
    elif worklist.get("skipped"):
        lines += ["", f"Modality Worklist C-FIND: {worklist['skipped']}"]
    lines += ["", *_targets(result)]
    if result.get("kept"):
        lines += ["", "kept: " + ", ".join(result["kept"])]
    return "\n".join(lines)


def _header(result: Result) -> list[str]:
    box = result["machine"]
    libraries = ", ".join(f"{k} {v}" for k, v in box["libraries"].items())
    memory = f", {box['memory_gib']} GiB" if box.get("memory_gib") else ""
    dcmtk = result.get("dcmtk", {})
    tools = (
        f"{dcmtk['version']} (wlmscpfs, findscu)"
        if dcmtk.get("used")
        else f"not used ({dcmtk.get('why_not')})"
    )
    return [
        f"mwlbroker bench: mwlbroker {result['mwlbroker']}"
        + (f" ({result['revision']})" if result.get("revision") else "")
        + f", {result['started_at']}, "
        f"{result.get('seconds', 0):g} s",
        f"  machine   {box['cpu']}, {box['cores']} cores{memory}, {box['system']}" + _load(box),
        f"  python    {box['python']} ({libraries})",
        f"  database  {result.get('database', '?')}",
        f"  DCMTK     {tools}",
    ]


def _load(box: Mapping[str, Any]) -> str:
    before, after = box.get("load_average_before"), box.get("load_average_after")
    if not before:
        return ""
    return f"; load average {before[0]:g} before, {after[0]:g} after" if after else ""


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _memory(figures: Mapping[str, float] | None) -> str:
    if not figures:
        return "broker memory not measured"
    return f"broker memory {figures['rss']:.0f} MB (peak {figures['peak']:.0f} MB)"


def _target_note(result: Result, name: str) -> str:
    for target in result.get("targets", []):
        if target["name"] == name:
            return f"{target['goal']}: {target['status']}"
    return ""


def _intake(result: Result) -> list[str]:
    intake = result["intake"]
    kind = result.get("database_kind")
    title = "HL7 intake: ORM^O01 v2.3.1 NW, one order and one worklist item each, ACK after commit"
    if kind == "target":
        title += f" (broker at {result['options']['target']})"
    lines = [
        title,
        f"  {'run':28} {'messages':>8} {'msg/s':>8}   {'ACK ms p50':>10} {'p95':>7} {'p99':>7} "
        f"{'max':>7}   {'CPU ms/msg':>10}   target",
    ]
    for run in intake["runs"]:
        latency = run["ack_latency_ms"]
        connections = run["connections"]
        if run["mode"] == "steady":
            label = f"steady {run['rate_asked']:g} msg/s, 1 connection"
            note = _target_note(result, "ack_p99_steady")
        else:
            label = f"throughput, {connections} connection{'s' if connections > 1 else ''}"
            note = ""
            if kind in ("sqlite", "postgresql") and connections in (1, 8):
                note = _target_note(result, f"intake_{kind}_{connections}")
        lines.append(
            f"  {label:28} {run['messages']:>8} {run['messages_per_second']:>8.1f}   "
            f"{_ms(latency['p50']):>10} {_ms(latency['p95']):>7} {_ms(latency['p99']):>7} "
            f"{_ms(latency['max']):>7}   {_ms(run.get('broker_cpu_ms_per_message')):>10}   {note}"
        )
        if run["errors"]:
            lines.append(f"    errors: {run['errors'][0]}")
    accepted, sent = intake.get("messages_accepted", 0), intake.get("messages_sent", 0)
    summary = f"  {accepted} of {sent} answered AA"
    if "steps_stored" in intake:
        summary += f"; {intake['steps_stored']} worklist items stored"
        summary += f"; {_memory(intake.get('memory_mb'))}"
    lines.append(summary)
    check = intake.get("loader_check")
    if check:
        lines.append(
            f"  bulk loader check: {check['equal']} of {check['checked']} items equal to the "
            "intake's"
            + (f" ({'; '.join(check['differences'][:3])})" if check["differences"] else "")
        )
    for error in intake.get("broker_errors", [])[:3]:
        lines.append(f"  broker error: {error[:200]}")
    return lines


def _items(figures: Mapping[str, Any]) -> str:
    items = figures["items"]
    if not items:
        return "-"
    low, high = min(items), max(items)
    shown = str(low) if low == high else f"{low}-{high}"
    return shown if figures["correct"] else f"{shown} WRONG"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or theirs is None:
        return "-"
    return f"{theirs / ours:.1f}x"


def _worklist(result: Result) -> list[str]:
    repetitions = result["options"]["queries"]
    lines = [
        f"Modality Worklist C-FIND: {repetitions} timed queries of each kind, each on a new "
        "association; pynetdicom client; times in ms (CPU: the broker's, per query)",
    ]
    for entry in result["worklist"]["sizes"]:
        lines.append(
            f"N = {entry['size']:,} (loaded in {entry['load_seconds']:g} s, "
            f"{entry['steps_stored']:,} stored; {_memory(entry.get('memory_mb'))}; "
            f"wlmscpfs {entry['wlmscpfs']})"
        )
        lines.append(
            f"  {'query':20} {'items':>7}   {'first p50':>9} {'p95':>6}   {'whole p50':>9} "
            f"{'p95':>6} {'CPU':>5}   {'wlmscpfs':>8} {'p95':>6} {'ratio':>6}   {'findscu':>7} "
            f"{'wlmscpfs':>8} {'ratio':>6}"
        )
        for figures in entry["queries"].values():
            ours = figures["broker"]
            theirs = figures["wlmscpfs"]
            ours_whole, ours_first = ours["whole_query_ms"], ours["first_response_ms"]
            theirs_whole = theirs["whole_query_ms"] if theirs else {"p50": None, "p95": None}
            findscu = figures["findscu_ms"]
            f_ours = findscu["broker"]["p50"] if findscu["broker"] else None
            f_theirs = findscu["wlmscpfs"]["p50"] if findscu["wlmscpfs"] else None
            items = _items(ours)
            if theirs and not theirs["correct"]:
                items += f" (wlmscpfs {_items(theirs)})"
            lines.append(
                f"  {figures['label']:20} {items:>7}   {_ms(ours_first['p50']):>9} "
                f"{_ms(ours_first['p95']):>6}   {_ms(ours_whole['p50']):>9} "
                f"{_ms(ours_whole['p95']):>6} {_ms(ours.get('broker_cpu_ms_per_query')):>5}   "
                f"{_ms(theirs_whole['p50']):>8} "
                f"{_ms(theirs_whole['p95']):>6} {_ratio(ours_whole['p50'], theirs_whole['p50']):>6}"
                f"   {_ms(f_ours):>7} {_ms(f_theirs):>8} {_ratio(f_ours, f_theirs):>6}"
            )
            for failure in ours["failures"][:2]:
                lines.append(f"    broker: {failure}")
            for failure in (theirs or {}).get("failures", [])[:2]:
                lines.append(f"    wlmscpfs: {failure}")
    for error in result["worklist"].get("broker_errors", [])[:3]:
        lines.append(f"  broker error: {error[:200]}")
    return lines


def _targets(result: Result) -> list[str]:
    lines = ["Targets (issue #4: worklist, #5: intake)"]
    for target in result.get("targets", []):
        lines.append(
            f"  #{target['issue']}  {target['what']:58} {target['goal']:16} "
            f"{target['shown']:34} {target['status']}"
        )
    return lines
