"""Answer Modality Worklist queries: apply the caller's profile, select, build responses, log.

A query runs in a short read-only session that is closed before the first response is built
(style convention 2): the matches are materialised, then each response identifier is built as
the DICOM edge asks for it, in the DICOM JSON model the items are stored in (the edge writes
the bytes for its transfer syntax). Every query, answered or refused, is recorded in the query log by a
background writer, so a modality never waits for a log commit.
"""

from __future__ import annotations

import fnmatch
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from mwlbroker.domain.charsets import DEFAULT_REPERTOIRE, RESPONSE_CHARSETS, transliterate
from mwlbroker.domain.query import (
    SCHEDULED_STATION_AE_TITLE,
    SPECIFIC_CHARACTER_SET,
    SPS_SEQUENCE,
    SPS_START_DATE,
    SPS_START_TIME,
    DateTimeRange,
    Element,
    FindStatus,
    Key,
    QueryError,
    SingleValue,
    WorklistQuery,
    identifier_json,
    parse_query,
)
from mwlbroker.store import worklist_query as store
from mwlbroker.store.db import Database, DatabaseUnavailable

log = logging.getLogger("mwlbroker.worklist")

UTF8 = "ISO_IR 192"
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT"})
T = TypeVar("T")


@dataclass(frozen=True)
class WorklistResponse:
    """One pending response's identifier in the DICOM JSON model, and the codec of its text."""

    elements: dict[str, Any]
    encoding: str  # Python codec of its Specific Character Set (ASCII when it has none)

    def dataset(self) -> Dataset:
        """The identifier as a pydicom Dataset."""
        return Dataset.from_json(self.elements)


@dataclass(frozen=True)
class QueryProfile:
    """How to answer the modalities whose calling AE title matches ``calling_ae`` (a glob)."""

    calling_ae: str = "*"
    fill_station_ae: bool = False  # an empty Scheduled Station AE Title means "mine"
    date_window_days: int | None = None  # no start date asked: today +/- this many days
    pn_case_insensitive: bool | None = None  # None: the global setting
    charset: str | None = None  # Specific Character Set to answer in; None: UTF-8

    @classmethod
    def from_setting(cls, table: Mapping[str, Any]) -> QueryProfile:
        return cls(**{k: v for k, v in table.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class WorklistQueryOptions:
    """The [dicom] settings that decide what a query returns."""

    statuses: tuple[str, ...] = ("SCHEDULED",)
    max_matches: int = 1000
    pn_case_insensitive: bool = False
    profiles: tuple[QueryProfile, ...] = ()
    log_days: int = 30

    def profile_for(self, calling_ae: str) -> QueryProfile | None:
        """The first profile whose calling_ae glob matches the caller (case-sensitive)."""
        for profile in self.profiles:
            if fnmatch.fnmatchcase(calling_ae, profile.calling_ae):
                return profile
        return None


@dataclass(frozen=True)
class Caller:
    """Who is asking: the association's AE titles and the peer's address."""

    calling_ae: str
    called_ae: str = ""
    peer: str = ""


@dataclass(frozen=True)
class FinalStatus:
    """The status that ends a query, with the error comment and offending element of a failure."""

    status: FindStatus
    comment: str | None = None
    offending_tag: str | None = None


Identifier = Sequence[Element] | Callable[[], Sequence[Element]]
"""The identifier's elements, or a function reading them (whose QueryError is answered)."""


class WorklistQueryService:
    """Runs Modality Worklist queries against the store and records each in the query log."""

    def __init__(
        self,
        db: Database,
        options: WorklistQueryOptions | None = None,
        *,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.db = db
        self.options = options or WorklistQueryOptions()
        self._today = today  # local date: DICOM dates are the site's calendar
        self.query_log = QueryLogWriter(db)  # its thread starts with start(), not here

    def find(self, caller: Caller, identifier: Identifier) -> WorklistAnswer:
        """Select the items matching an identifier; stream them from the answer, then finish it.

        Never raises for bad input or an unreadable database: the answer then holds the
        failure status to send, and is logged like any other query when finished.
        """
        answer = WorklistAnswer(self, caller)
        try:
            elements = identifier() if callable(identifier) else identifier
            answer.identifier = identifier_json(elements)
            query = parse_query(elements)
            query, answer.profile = self._apply_profile(query, caller)
            answer.query = query
            with self.db.reading() as session:
                selection = store.select_worklist(
                    session,
                    query,
                    statuses=self.options.statuses,
                    limit=self.options.max_matches,
                )
            answer.candidates = selection.candidates
            if selection.overflow:
                answer.fail(
                    FindStatus.OUT_OF_RESOURCES,
                    f"more than {self.options.max_matches} items match; narrow the query",
                )
            else:
                answer.steps = selection.steps
        except QueryError as error:
            answer.fail(error.status, error.comment, error.tag)
        except DatabaseUnavailable as error:  # the store translated the driver's error
            log.error("worklist query from %s failed: %s", caller.calling_ae, error)
            answer.fail(FindStatus.UNABLE_TO_PROCESS, f"worklist unavailable: {error}")
        return answer

    def _apply_profile(
        self, query: WorklistQuery, caller: Caller
    ) -> tuple[WorklistQuery, QueryProfile | None]:
        options = self.options
        profile = options.profile_for(caller.calling_ae)
        insensitive = options.pn_case_insensitive
        if profile is not None and profile.pn_case_insensitive is not None:
            insensitive = profile.pn_case_insensitive
        query = replace(query, pn_insensitive=insensitive)
        if profile is None:
            return query, None
        source = f"profile {profile.calling_ae}"
        station = query.key(SPS_SEQUENCE, SCHEDULED_STATION_AE_TITLE)
        if profile.fill_station_ae and (station is None or station.condition.kind == "universal"):
            key = Key(
                SCHEDULED_STATION_AE_TITLE,
                "AE",
                "ScheduledStationAETitle",
                SingleValue(caller.calling_ae),
                source=source,
            )
            note = f"Scheduled Station AE Title empty: {caller.calling_ae} ({source})"
            query = query.with_sps_condition(key, note)
        if profile.date_window_days is not None and not query.has_start_date_condition():
            today = self._today()
            days = timedelta(days=profile.date_window_days)
            first, last = (today - days).strftime("%Y%m%d"), (today + days).strftime("%Y%m%d")
            window = DateTimeRange(
                SPS_START_DATE, SPS_START_TIME, first + "000000", last + "999999", source
            )
            note = f"no start date asked: {first} to {last} ({source})"
            query = query.with_combined_range(window, note)
        return query, profile

    def response(
        self, item: Mapping[str, Any], query: WorklistQuery, charset: str
    ) -> WorklistResponse:
        """The response identifier for a stored item, in ``charset`` where it needs one.

        Values the character set cannot hold are transliterated; a response with only ASCII
        text carries no Specific Character Set (or an empty one when it was asked for).
        """
        projected = query.response(item)
        codec = RESPONSE_CHARSETS.get(charset, "utf-8")
        fitted = _fit_item(projected, codec) if codec != "utf-8" else projected
        if charset != DEFAULT_REPERTOIRE and not _is_ascii(fitted):
            # (0008,0005), PS3.3 C.12.1.1.2
            fitted[SPECIFIC_CHARACTER_SET] = {"vr": "CS", "Value": [charset]}
            return WorklistResponse(fitted, codec)
        if query.charset_requested:
            fitted[SPECIFIC_CHARACTER_SET] = {"vr": "CS"}
        return WorklistResponse(fitted, "ascii")

    def purge_log(self, now: datetime | None = None) -> int:
        """Delete query log records older than the retention; returns how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.options.log_days)
        with self.db.transaction() as session:
            return store.purge_query_log(session, cutoff)

    def start(self) -> None:
        """Start the query log's writer; the composition root does, before the first query."""
        self.query_log.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write the query log records still queued, then stop the writer."""
        self.query_log.close(timeout)


class WorklistAnswer:
    """The matches of one query: iterate for the response datasets, then :meth:`finish`."""

    def __init__(self, service: WorklistQueryService, caller: Caller) -> None:
        self._service = service
        self._started = time.perf_counter()
        self.at = datetime.now(UTC)
        self.caller = caller
        self.identifier: dict[str, Any] = {}
        self.query: WorklistQuery | None = None
        self.profile: QueryProfile | None = None
        self.steps: list[tuple[int, dict[str, Any]]] = []
        self.candidates = 0
        self.returned = 0
        self.failure: FinalStatus | None = None
        self.first_response_ms: float | None = None
        self._final: FinalStatus | None = None

    @property
    def charset(self) -> str:
        return (self.profile.charset if self.profile else None) or UTF8

    def fail(self, status: FindStatus, comment: str, tag: str | None = None) -> None:
        self.failure = FinalStatus(status, comment, tag)

    def __iter__(self) -> Iterator[WorklistResponse]:
        """Each match's response identifier, built when asked for; stops early on a failure."""
        return self.responses(lambda response: response)

    def responses(self, build: Callable[[WorklistResponse], T]) -> Iterator[T]:
        """Each match's response identifier passed through ``build`` (the edge's encoder).

        An item that cannot be answered (or built) ends the matches with a failure.
        """
        if self.failure is not None or self.query is None:
            return
        for step_id, item in self.steps:
            try:
                response = build(self._service.response(item, self.query, self.charset))
            except Exception:
                log.exception("worklist item of step %d cannot be answered", step_id)
                self.fail(FindStatus.UNABLE_TO_PROCESS, f"item of step {step_id} is unreadable")
                return
            if self.first_response_ms is None:
                self.first_response_ms = (time.perf_counter() - self._started) * 1000
            yield response
            self.returned += 1  # the caller came back for more: the last one was sent

    def abandon(self) -> None:
        """Record a query whose association ended before its final status; no-op once finished."""
        if self._final is None:
            if self.failure is None:
                self.fail(FindStatus.UNABLE_TO_PROCESS, "association ended before the final status")
            self.finish()

    def finish(self, status: FindStatus | None = None) -> FinalStatus:
        """The final status (the failure, or ``status``, or success); records the query once."""
        if self._final is not None:
            return self._final
        if self.failure is not None:
            final = self.failure
        else:
            final = FinalStatus(status if status is not None else FindStatus.SUCCESS)
        self._final = final
        milliseconds = (time.perf_counter() - self._started) * 1000
        query = self.query
        self._service.query_log.record(
            {
                "at": self.at,
                "calling_ae": self.caller.calling_ae[:16],
                "called_ae": self.caller.called_ae[:16],
                "peer": self.caller.peer[:64],
                "profile": (self.profile.calling_ae if self.profile else "")[:64],
                "identifier": self.identifier,
                "conditions": query.describe() if query is not None else [],
                "notes": list(query.notes) if query is not None else [],
                "status": int(final.status),
                "error": final.comment,
                "candidates": self.candidates,
                "matches": len(self.steps),
                "returned": self.returned,
                "step_ids": [step_id for step_id, _ in self.steps],
                "milliseconds": round(milliseconds, 3),
                "first_response_ms": (
                    None if self.first_response_ms is None else round(self.first_response_ms, 3)
                ),
            }
        )
        log.info(
            "worklist query from %s: %s, %d of %d returned in %.1f ms%s",
            self.caller.calling_ae,
            final.status.name.lower(),
            self.returned,
            len(self.steps),
            milliseconds,
            f" ({final.comment})" if final.comment else "",
            extra={
                "event": "worklist_query",
                "calling_ae": self.caller.calling_ae,
                "status": int(final.status),
                "matches": len(self.steps),
                "returned": self.returned,
                "ms": round(milliseconds, 3),
            },
        )
        return final


# -- answering in a character set --------------------------------------------------------------


def _fit_item(item: Mapping[str, Any], codec: str) -> dict[str, Any]:
    """An item whose text values all fit ``codec``, transliterated where they did not."""
    fitted: dict[str, Any] = {}
    for tag, element in item.items():
        values = element.get("Value")
        vr = element.get("vr")
        if not values:
            fitted[tag] = element
        elif vr == "SQ":
            fitted[tag] = {"vr": "SQ", "Value": [_fit_item(sub, codec) for sub in values]}
        elif vr == "PN":
            fitted[tag] = {"vr": "PN", "Value": [_fit_name(v, codec) for v in values]}
        elif vr in _TEXT_VRS:
            fitted[tag] = {
                "vr": vr,
                "Value": [transliterate(v, codec) if isinstance(v, str) else v for v in values],
            }
        else:
            fitted[tag] = element
    return fitted


def _fit_name(name: Any, codec: str) -> Any:
    if not isinstance(name, Mapping):
        return name
    fitted = {}
    for group, text in name.items():
        if not isinstance(text, str):
            continue
        if group != "Alphabetic":
            # Ideographic and phonetic groups need code extensions a single-byte set lacks;
            # the alphabetic group, transliterated, is what such a modality can show.
            try:
                text.encode(codec)
            except UnicodeEncodeError:
                continue
        fitted[group] = transliterate(text, codec)
    return fitted


def _is_ascii(item: Mapping[str, Any]) -> bool:
    for element in item.values():
        for value in element.get("Value") or ():
            if isinstance(value, str):
                if not value.isascii():
                    return False
            elif isinstance(value, Mapping):
                if element.get("vr") == "SQ":
                    if not _is_ascii(value):
                        return False
                elif not all(not isinstance(t, str) or t.isascii() for t in value.values()):
                    return False
    return True


# -- the query log -----------------------------------------------------------------------------


@dataclass
class _Progress:
    recorded: int = 0
    written: int = 0  # written or given up on
    dropped: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)


class QueryLogWriter:
    """Writes query log records in batches on its own thread, off the response path.

    A failed write is retried a few times (the database may be restarting), then the batch is
    dropped with an error in the log: the query log must never hold modalities up. The thread
    starts with :meth:`start` and ends with :meth:`close`, both called by whoever owns the
    writer, so that building one (in a test, a tool) starts nothing.
    """

    BATCH = 500
    RETRIES = 3
    MAX_QUEUED = 20000

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._progress = _Progress()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start writing on a thread of its own (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="query-log", daemon=True)
            self._thread.start()

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one record (the fields of a QueryLogRow)."""
        progress = self._progress
        with progress.lock:
            if progress.recorded - progress.written >= self.MAX_QUEUED:
                progress.dropped += 1
                log.error("query log backlog full: a query record was dropped")
                return
            progress.recorded += 1
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written; False on timeout."""
        progress = self._progress
        with progress.lock:
            target = progress.recorded
            return progress.lock.wait_for(lambda: progress.written >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread; nothing to do if it never started."""
        if self._thread is None or not self._thread.is_alive():
            return
        self.flush(timeout)
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            batch = [entry]
            while len(batch) < self.BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write(batch)
                    return
                batch.append(more)
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(1, self.RETRIES + 1):
            try:
                with self.db.transaction() as session:
                    store.add_query_logs(session, (store.QueryLogRow(**e) for e in batch))
                break
            except Exception as error:  # database errors arrive in many types
                if attempt == self.RETRIES or self._stopping.is_set():
                    log.error("query log: %d records not written: %s", len(batch), error)
                    break
                self._stopping.wait(0.5 * attempt)  # back off while the database recovers
        progress = self._progress
        with progress.lock:
            progress.written += len(batch)
            progress.lock.notify_all()
