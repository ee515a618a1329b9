"""``mwlbroker import FILE...``: load files of many HL7 messages, or HL7 batches, through the intake.

A RIS downtime backlog or a migration arrives as files: messages one after another (LF, CR or
CRLF line ends), MLLP-framed captures, FHS/BHS batch files. Every message goes through the
same intake as one received over MLLP (the same duplicate check, the same store and apply,
the same outcome an ACK would carry), in the order of the files, into the database the
configuration names; a ``serve`` may run on it meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwlbroker.cli.arguments import Commands, command
from mwlbroker.cli.database import with_database
from mwlbroker.cli.output import CommandFailed, print_json

if TYPE_CHECKING:
    from types import TracebackType

    from mwlbroker.config import Config
    from mwlbroker.hl7v2.batch import BatchFile, Part
    from mwlbroker.services.ingest import IngestResult
    from mwlbroker.store.db import Database

PROGRESS_STEP = 10  # percent between the progress lines written when stderr is no terminal


def register(commands: Commands) -> None:
    """Add ``import FILE... [--dry-run] [-q] [--json]``."""
    parser = command(
        commands,
        "import",
        help="load files of HL7 messages or batches (FHS/BHS) through the intake",
        run=run,
        json=True,
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="HL7 file(s): messages one after another, HL7 batches, or MLLP-framed",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read and map every message and say what it would be answered; store nothing",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no progress, only the summary and failures"
    )


@dataclass(frozen=True)
class Loaded:
    """One frame (or the whole file, when it is not MLLP-framed) of an imported file, split."""

    file: str
    frame: int | None  # 1-based, for MLLP-framed files
    batches: BatchFile

    def where(self, part: Part) -> str:
        """Where a message starts, for the list of failures: FILE:LINE (FILE frame N:LINE)."""
        frame = f" frame {self.frame}" if self.frame is not None else ""
        return f"{self.file}{frame}:{part.line}"


@dataclass
class Tally:
    """What the import did, for the summary and ``--json``."""

    files: int
    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    def add(self, loaded: Loaded, part: Part, result: IngestResult) -> None:
        self.counts[str(result.ack_code)] += 1
        self.duplicates += result.duplicate
        if result.ack_code != "AA":
            self.failures.append(
                {
                    "where": loaded.where(part),
                    "control_id": result.control_id,
                    "ack_code": str(result.ack_code),
                    "status": str(result.status) if result.status else "not stored",
                    "message_id": result.message_id,
                    "error": result.error,
                }
            )

    def summary(self) -> str:
        verb = "checked" if self.dry_run else "imported"
        files = f"{self.files} file" + ("" if self.files == 1 else "s")
        codes = ", ".join(f"{self.counts[code]} {code}" for code in ("AA", "AE", "AR"))
        rate = f", {self.messages / self.seconds:.0f} messages/s" if self.seconds > 0 else ""
        line = (
            f"{verb} {self.messages} message{'' if self.messages == 1 else 's'} from {files}: "
            f"{codes} (duplicates: {self.duplicates}) in {self.seconds:.1f} s{rate}"
        )
        return line + (" (dry run: nothing stored)" if self.dry_run else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "files": self.files,
            "messages": self.messages,
            "counts": {code: self.counts[code] for code in ("AA", "AE", "AR")},
            "duplicates": self.duplicates,
            "seconds": round(self.seconds, 3),
            "failures": self.failures,
            "warnings": self.warnings,
        }


@with_database
def run(args: argparse.Namespace, config: Config, db: Database) -> int:
    """Take in every message of every file in order; exit 1 unless each was answered AA."""
    from mwlbroker.app import build_ingest
    from mwlbroker.services.batches import ingest_batch_file

    loaded = [chunk for name in args.files for chunk in load(name)]
    total = sum(len(chunk.batches.parts) for chunk in loaded)
    # Files loaded by an operator: nobody is on the line to answer, so no application ACKs.
    ingest = build_ingest(config, db, acknowledgments=False)
    tally = Tally(files=len(args.files), dry_run=args.dry_run)
    started = time.perf_counter()
    with _progress(total, quiet=args.quiet) as progress:
        for chunk in loaded:
            peer = f"import {Path(chunk.file).name}"
            tally.warnings.extend(f"{chunk.file}: {p}" for p in chunk.batches.all_problems)
            if args.dry_run:
                results = [
                    [ingest.check(part.raw) for part in b.parts] for b in chunk.batches.batches
                ]
                progress.advance(len(chunk.batches.parts))
            else:
                results = ingest_batch_file(
                    ingest, chunk.batches, peer=peer, progress=progress.advance
                )
            for batch, batch_results in zip(chunk.batches.batches, results, strict=True):
                for part, result in zip(batch.parts, batch_results, strict=True):
                    tally.add(chunk, part, result)
    tally.seconds = time.perf_counter() - started
    _report(tally, as_json=args.json)
    return 0 if tally.counts["AA"] == tally.messages else 1


def load(name: str) -> list[Loaded]:
    """The batches of one file: each MLLP frame split on its own, else the whole file."""
    from mwlbroker.hl7v2.batch import split_batch
    from mwlbroker.mllp.framing import START_BLOCK, FrameDecoder

    try:
        content = Path(name).read_bytes()
    except OSError as error:
        raise CommandFailed(f"{name}: {error.strerror}", exit_code=2) from error
    if not content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(START_BLOCK):
        return [Loaded(name, None, split_batch(content))]
    decoder = FrameDecoder(len(content) + 1)
    payloads = [received.payload for received in decoder.feed(content)]
    if decoder.pending:
        payloads.append(decoder.pending)  # a capture cut off inside its last frame
    return [Loaded(name, number, split_batch(p)) for number, p in enumerate(payloads, 1)]


def _report(tally: Tally, *, as_json: bool) -> None:
    if as_json:
        print_json(tally.as_json())
        return
    print(tally.summary())
    if tally.failures:
        print("not accepted:")
        for failure in tally.failures:
            print(
                f"  {failure['where']}  MSH-10 {failure['control_id'] or '(none)'}  "
                f"{failure['ack_code']}  {failure['error'] or ''}"
            )
    if tally.warnings:
        print("warnings:")
        for warning in tally.warnings:
            print(f"  {warning}")


class _Progress:
    """Progress on standard error: a bar on a terminal, else a line every PROGRESS_STEP %."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet or total == 0
        self._bar: Any = None
        self._task: Any = None
        self._next_line = PROGRESS_STEP

    def __enter__(self) -> _Progress:
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task("import", total=self.total)
        return self

    def advance(self, count: int) -> None:
        self.done += count
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.advance(self._task, count)
            return
        percent = self.done * 100 // self.total
        if percent >= self._next_line:
            print(f"import: {self.done} of {self.total} messages ({percent}%)", file=sys.stderr)
            sys.stderr.flush()
            self._next_line = (percent // PROGRESS_STEP + 1) * PROGRESS_STEP

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


def _progress(total: int, *, quiet: bool) -> _Progress:
    return _Progress(total, quiet=quiet)
