"""Run the whole benchmark: intake over MLLP, then worklist queries at each size, then targets.

Each part gets a broker of its own (``mwlbroker serve`` in a child process) on a database of
its own (a new SQLite file, or a new schema in the PostgreSQL database given), so figures
never mix and nothing existing is touched. Everything made is removed at the end.
"""

from __future__ import annotations

import functools
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mwlbroker import __version__
from mwlbroker.bench import machine, queries, targets, wlmscpfs
from mwlbroker.bench.broker import BrokerProcess
from mwlbroker.bench.intake import IntakeRun, steady, throughput
from mwlbroker.bench.loader import GeneratorSpec, Loaded, load, order_rows
from mwlbroker.bench.stats import summary
from mwlbroker.bench.synthetic import MAPPING_PROFILE, PER_DAY, SEED
from mwlbroker.config import mask_url
from mwlbroker.dicom.scu import WorklistSCU
from mwlbroker.hl7v2.reader import parse_message
from mwlbroker.mapping.engine import load_mappings
from mwlbroker.store.bulk import analyze, count_steps, steps_by_accession
from mwlbroker.store.db import Database
from mwlbroker.store.scratch import ScratchDatabases, server_description

DEFAULT_SIZES = (1000, 10000)
FULL_SIZES = (1000, 10000, 100000)
_LOADER_CHECKS = 20  # intake items rebuilt by the bulk loader and compared
# Step columns the loader must fill exactly as the intake does.
_COMPARED = (
    "dataset",
    "attributes",
    "status",
    "patient_id",
    "issuer",
    "patient_name",
    "patient_name_folded",
    "accession_number",
    "requested_procedure_id",
    "study_instance_uid",
    "sps_id",
    "modality",
    "station_ae",
    "station_name",
    "start_datetime",
)


@dataclass(frozen=True)
class BenchOptions:
    """What to measure; the defaults finish in a minute or two on two cores."""

    database_url: str | None = None  # None: a temporary SQLite file
    messages: int = 2000  # per intake throughput run
    connections: int = 8
    steady_rate: float = 100.0
    steady_seconds: float = 10.0
    sizes: tuple[int, ...] = DEFAULT_SIZES
    queries: int = 5  # timed repetitions of each query kind
    wlmscpfs: bool = True
    wlmscpfs_max: int = 10000  # largest size wlmscpfs is timed at (it reads every file)
    target: tuple[str, int] | None = None  # a running broker's MLLP address: intake only
    keep: bool = False


Progress = Callable[[str], None]


def run_bench(options: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Measure everything the options ask for; returns the result (JSON-ready)."""
    say = progress or (lambda _text: None)
    began = time.perf_counter()
    today = date.today()
    run_tag = "".join(secrets.choice(string.ascii_uppercase) for _ in range(3))
    result: dict[str, Any] = {
        "mwlbroker": __version__,
        "revision": _revision(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "options": _options_dict(options),
        "run_tag": run_tag,
        "today": today.isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix="mwlbench-") as folder:
        work = Path(folder)
        mappings = work / "mappings"
        mappings.mkdir()
        (mappings / "bench.yaml").write_text(MAPPING_PROFILE)
        spec = GeneratorSpec(run_tag, today, PER_DAY, SEED, str(mappings))
        # kept SQLite files must outlive the temporary folder
        files = Path(tempfile.mkdtemp(prefix="mwlbench-kept-")) if options.keep else work
        scratch = ScratchDatabases(options.database_url, files, keep=options.keep)
        try:
            intake_url = None
            if options.target is None:
                intake_url = scratch.new("intake")
                result["database"] = server_description(intake_url)
                result["database_kind"] = "sqlite" if scratch.is_sqlite else "postgresql"
            else:
                result["database"] = "the target broker's (not known to the bench)"
                result["database_kind"] = "target"
            result["dcmtk"] = _dcmtk(options)
            result["intake"] = _intake(options, spec, work, mappings, intake_url, say)
            if options.target is not None:
                result["worklist"] = {"sizes": [], "skipped": "not measured against --target"}
            elif not options.sizes:
                result["worklist"] = {"sizes": [], "skipped": "not measured (--sizes 0)"}
            else:
                result["worklist"] = _worklist(options, spec, work, mappings, scratch, say)
        finally:
            scratch.close()
            if options.keep:
                result["kept"] = scratch.kept()
    result["machine"]["load_average_after"] = machine.load_average()
    result["targets"] = targets.evaluate(result)
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def _revision() -> str | None:
    """The git commit of a source checkout ("+" when it has local changes), else None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None

    def git(*args: str) -> str:
        run = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return run.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+" if dirty else "")


def _options_dict(options: BenchOptions) -> dict[str, Any]:
    values = asdict(options)
    if options.database_url:
        values["database_url"] = mask_url(options.database_url)
    values["target"] = f"{options.target[0]}:{options.target[1]}" if options.target else None
    return values


def _dcmtk(options: BenchOptions) -> dict[str, Any]:
    problem = wlmscpfs.available()
    return {
        "version": None if problem else wlmscpfs.version(),
        "used": options.wlmscpfs and problem is None,
        "why_not": "--no-wlmscpfs" if not options.wlmscpfs else problem,
    }


# -- intake ------------------------------------------------------------------------------------


def _intake(
    options: BenchOptions,
    spec: GeneratorSpec,
    work: Path,
    mappings: Path,
    url: str | None,
    say: Progress,
) -> dict[str, Any]:
    """Throughput over K connections and over one, then latency at a steady rate."""
    orders = spec.orders()
    counts = [options.connections] + ([1] if options.connections != 1 else [])
    steady_count = max(0, round(options.steady_rate * options.steady_seconds))
    total = options.messages * len(counts) + steady_count
    messages = [orders.order(n).hl7() for n in range(total)]
    section: dict[str, Any] = {"runs": []}
    broker: BrokerProcess | None = None
    if url is not None:
        say("intake: starting the broker")
        broker = BrokerProcess(url, mappings=mappings, cwd=work)
        host, port = broker.host, broker.hl7_port
    else:
        assert options.target is not None  # no database URL means a target was given
        host, port = options.target
    try:
        runs: list[IntakeRun] = []
        for index, connections in enumerate(counts):
            batch = messages[index * options.messages : (index + 1) * options.messages]
            say(f"intake: {len(batch)} messages over {connections} connection(s)")
            runs.append(
                _with_cpu(broker, functools.partial(throughput, host, port, batch, connections))
            )
        if steady_count:
            say(f"intake: {steady_count} messages at {options.steady_rate:g} msg/s")
            paced = messages[-steady_count:]
            runs.append(_with_cpu(broker, lambda: steady(host, port, paced, options.steady_rate)))
        section["runs"] = [run.as_dict() for run in runs]
        accepted = sum(run.ack_codes.get("AA", 0) for run in runs)
        section["messages_sent"] = total
        section["messages_accepted"] = accepted
        if broker is not None and url is not None:
            section["memory_mb"] = broker.memory_mb()
            section["broker_errors"] = broker.errors
            db = Database(url, pool_size=1)
            try:
                with db.reading() as session:
                    section["steps_stored"] = count_steps(session)
                section["loader_check"] = _check_loader(db, spec, total)
            finally:
                db.dispose()
    finally:
        if broker is not None:
            broker.stop()
    return section


def _with_cpu(broker: BrokerProcess | None, measure: Callable[[], IntakeRun]) -> IntakeRun:
    """Run ``measure`` and note the broker's CPU time meanwhile (not known for --target)."""
    before = broker.cpu_seconds() if broker is not None else None
    run = measure()
    after = broker.cpu_seconds() if broker is not None else None
    if before is not None and after is not None:
        run.cpu_seconds = after - before
    return run


def _check_loader(db: Database, spec: GeneratorSpec, total: int) -> dict[str, Any]:
    """Rebuild some intake orders with the bulk loader; its rows must equal what intake stored."""
    orders = spec.orders()
    mappings = load_mappings(Path(spec.mappings) if spec.mappings else None)
    step = max(1, total // _LOADER_CHECKS)
    numbers = list(range(0, total, step))[:_LOADER_CHECKS]
    now = datetime.now(UTC)
    built = {}
    for number in numbers:
        rows = order_rows(mappings, parse_message(orders.order(number).hl7()), now)
        for values in rows.steps:
            built[values["accession_number"]] = values
    with db.reading() as session:
        stored = steps_by_accession(session, list(built))
    differences = {}
    for accession, values in built.items():
        row = stored.get(accession)
        if row is None:
            differences[accession] = "not stored by the intake"
            continue
        columns = [c for c in _COMPARED if getattr(row, c) != values[c]]
        if columns:
            differences[accession] = f"{', '.join(columns)} differ"
    return {
        "checked": len(built),
        "equal": len(built) - len(differences),
        "differences": [f"{a}: {text}" for a, text in differences.items()][:10],
    }


# -- worklist queries --------------------------------------------------------------------------


def _worklist(
    options: BenchOptions,
    spec: GeneratorSpec,
    work: Path,
    mappings: Path,
    scratch: ScratchDatabases,
    say: Progress,
) -> dict[str, Any]:
    url = scratch.new("worklist")
    use_wlmscpfs = options.wlmscpfs and wlmscpfs.available() is None
    use_findscu = shutil.which("findscu") is not None
    files = wlmscpfs.prepare_folder(work / "worklist-files") if use_wlmscpfs else None
    sizes = sorted(set(options.sizes))
    section: dict[str, Any] = {"sizes": []}
    scu = WorklistSCU(queries.CALLING_AE)
    loaded = Loaded()
    db = Database(url, pool_size=1)
    say("worklist: starting the broker")
    broker = BrokerProcess(url, mappings=mappings, cwd=work)
    try:
        for size in sizes:
            write_files = files is not None and size <= options.wlmscpfs_max
            say(
                f"worklist: loading {size - loaded.steps:,} items (N = {size:,})"
                + (" and their worklist files" if write_files else "")
            )
            started = time.perf_counter()
            load(
                db,
                spec,
                loaded.steps,
                size - loaded.steps,
                loaded,
                worklist_files=files if write_files else None,
            )
            analyze(db)
            load_seconds = time.perf_counter() - started
            if files is not None and not write_files:
                files = None  # the files stop short of this size: no more wlmscpfs
            with db.reading() as session:
                stored = count_steps(session)
            entry: dict[str, Any] = {
                "size": size,
                "steps_stored": stored,
                "load_seconds": round(load_seconds, 1),
                "wlmscpfs": "run" if files is not None else _why_no_wlmscpfs(options, size),
                "queries": {},
            }
            server = wlmscpfs.Wlmscpfs(files) if files is not None else None
            try:
                for kind, label in queries.KINDS:
                    say(f"worklist: N = {size:,}, {label}")
                    planned = queries.plan(kind, loaded, spec.today, options.queries)
                    entry["queries"][kind] = {
                        "label": label,
                        **_time_kind(scu, broker, server, planned, findscu=use_findscu),
                    }
            finally:
                if server is not None:
                    server.stop()
            entry["memory_mb"] = broker.memory_mb()
            section["sizes"].append(entry)
        section["broker_errors"] = broker.errors
    finally:
        broker.stop()
        db.dispose()
    return section


def _time_kind(
    scu: WorklistSCU,
    broker: BrokerProcess,
    server: wlmscpfs.Wlmscpfs | None,
    planned: list[queries.Query],
    *,
    findscu: bool,
) -> dict[str, Any]:
    """One query kind against the broker and wlmscpfs: pynetdicom timings, findscu wall times."""
    ours = (broker.host, broker.dicom_port, broker.ae_title)
    theirs = (server.host, server.port, wlmscpfs.AE_TITLE) if server is not None else None
    before = broker.cpu_seconds()
    timings = queries.time_scu(scu, *ours, planned, warmup=1)
    after = broker.cpu_seconds()
    figures = timings.as_dict()
    if before is not None and after is not None:
        # every query asked, the untimed warm-up one included
        figures["broker_cpu_ms_per_query"] = round((after - before) * 1000 / (len(planned) + 1), 1)
    return {
        "broker": figures,
        "wlmscpfs": queries.time_scu(scu, *theirs, planned).as_dict() if theirs else None,
        "findscu_ms": {
            "broker": summary(queries.time_findscu(*ours, planned)) if findscu else None,
            "wlmscpfs": (
                summary(queries.time_findscu(*theirs, planned)) if findscu and theirs else None
            ),
        },
    }


def _why_no_wlmscpfs(options: BenchOptions, size: int) -> str:
    if not options.wlmscpfs:
        return "skipped: --no-wlmscpfs"
    problem = wlmscpfs.available()
    if problem:
        return f"skipped: {problem}"
    return f"skipped: above --wlmscpfs-max {options.wlmscpfs_max:,}"


def stderr_progress(text: str) -> None:
    """Progress lines for people, on stderr so that --json output stays clean."""
    print(f"  {text}", file=sys.stderr, flush=True)
