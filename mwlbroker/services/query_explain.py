"""Explain a logged worklist query against one procedure step: key by key, why it matched or not.

The query is rebuilt from its log record (the identifier as the modality sent it, and the
conditions a profile added, as logged) and held against the step's stored item by the domain's
own matching (:meth:`WorklistQuery.explain`, the predicates C-FIND uses). Then the step's status:
the worklist serves only the statuses of ``dicom.worklist_statuses``, whatever the keys say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from mwlbroker.domain.query import (
    MODALITY,
    SCHEDULED_STATION_AE_TITLE,
    SPS_SEQUENCE,
    SPS_START_DATE,
    SPS_START_TIME,
    DateTimeRange,
    Element,
    FindStatus,
    Key,
    KeyVerdict,
    QueryError,
    SingleValue,
    WorklistQuery,
    elements_from_json,
    parse_query,
)
from mwlbroker.services import views
from mwlbroker.store import worklist_query as store
from mwlbroker.store.db import Session
from mwlbroker.store.tables import QueryLogRow, StepRow

CANDIDATES = 25
_SPS = "ScheduledProcedureStepSequence>"
_INSENSITIVE = "(case/accent-insensitive)"


def explain_query(
    session: Session,
    log_id: int,
    *,
    statuses: Sequence[str],
    step_id: int | None = None,
    look_up: str = "",
) -> dict[str, Any] | None:
    """A logged query, the items to pick from, and (given ``step_id``) its verdict on that step.

    None when no query has ``log_id``; raises LookupError when no step has ``step_id``.
    """
    row = store.get_query_log(session, log_id)
    if row is None:
        return None
    query, problem = _replay(row)
    result: dict[str, Any] = {
        "query": {**views.query_log_summary(row), "keys": keys_as_sent(row.identifier)},
        "served_statuses": list(statuses),
        "problem": problem,
        "look_up": look_up,
        "looked_up": [],
        "candidates": [_candidate(s, row) for s in _candidates(session, row, query)],
        "step": None,
        "explanation": None,
    }
    if look_up:
        found = store.look_up_steps(session, look_up, limit=CANDIDATES)
        result["looked_up"] = [_candidate(s, row) for s in found]
        if step_id is None and len(found) == 1:
            step_id = found[0].id
    if step_id is None:
        return result
    step = store.get_step(session, step_id)
    if step is None:
        raise LookupError(f"no step with id {step_id}")
    result["step"] = _candidate(step, row)
    result["explanation"] = explain_step(row, query, step, statuses)
    return result


def explain_step(
    row: QueryLogRow, query: WorklistQuery | None, step: StepRow, statuses: Sequence[str]
) -> dict[str, Any]:
    """Why the query of ``row`` does or does not return ``step``: keys, then status."""
    served_status = step.status in statuses
    returned_then = step.id in (row.step_ids or [])
    verdicts = query.explain(step.dataset or {}) if query is not None else []
    keys_match = query is not None and all(v.matched for v in verdicts)
    served = keys_match and served_status
    return {
        "keys": [v.as_dict() for v in verdicts],
        "keys_match": keys_match,
        "status": step.status,
        "status_served": served_status,
        "served": served,
        "returned_then": returned_then,
        "verdict": _verdict(row, query, step, verdicts, keys_match, served_status, statuses),
        "since": _since(returned_then, served, row.status),
    }


def _verdict(
    row: QueryLogRow,
    query: WorklistQuery | None,
    step: StepRow,
    verdicts: list[KeyVerdict],
    keys_match: bool,
    served_status: bool,
    statuses: Sequence[str],
) -> str:
    name = f"Step {step.id}"
    if query is None:
        return f"The query was refused ({row.error or 'no conditions'}): it returned nothing."
    status = f"its status {step.status} is not served (the worklist serves {', '.join(statuses)})"
    if not keys_match:
        missed = _missed(verdicts)
        text = f"{name} does not match on {', '.join(missed)}"
        return text + (f"; besides, {status}." if not served_status else ".")
    if not served_status:
        return f"{name} matches every key, but {status}: the query does not return it."
    if row.status == int(FindStatus.OUT_OF_RESOURCES):
        return f"{name} matches every key, but the query matched too many items and was refused."
    return f"{name} matches every key and its status {step.status} is served: the query returns it."


def _missed(verdicts: list[KeyVerdict]) -> list[str]:
    """The keys that failed, without a sequence whose own keys say why it failed."""
    failed = [v for v in verdicts if not v.matched]
    return [
        v.key
        for v in failed
        if v.match != "sequence" or not any(f.key.startswith(v.key + ">") for f in failed)
    ]


def _since(returned_then: bool, served: bool, status: int) -> str:
    """What changed between the query and now, when the answer then differs from now."""
    if status != int(FindStatus.SUCCESS) or returned_then == served:
        return ""
    if returned_then:
        return "The query returned this step when it ran: the step (or dicom.worklist_statuses) has changed since."
    return "The query did not return this step when it ran: the step (or dicom.worklist_statuses) has changed since."


# -- the query as it was applied --------------------------------------------------------------


def _replay(row: QueryLogRow) -> tuple[WorklistQuery | None, str | None]:
    try:
        query = replay_query(row.identifier or {}, row.conditions or [], row.notes or [])
    except QueryError as error:  # refused when it came, and for the same reason now
        return None, f"the query was refused: {row.error or error.comment}"
    except (KeyError, TypeError, ValueError) as error:
        return None, f"the logged query cannot be read back: {error}"
    if query.describe() != list(row.conditions or []):
        return query, "the conditions rebuilt from the log differ from those logged"
    return query, None


def replay_query(
    identifier: Mapping[str, Any], conditions: Iterable[Mapping[str, Any]], notes: Iterable[str]
) -> WorklistQuery:
    """The query as it was applied: the identifier as sent, parsed again, with the conditions
    a profile added (WorklistQueryService._apply_profile) taken from the log, not from today's
    settings. Raises :class:`QueryError` for an identifier that was refused."""
    query = parse_query(elements_from_json(identifier, _keyword))
    lines = [line for line in conditions if isinstance(line, Mapping)]
    insensitive = any(str(line.get("match", "")).endswith(_INSENSITIVE) for line in lines)
    query = replace(query, pn_insensitive=insensitive)
    for line in lines:
        source = str(line.get("source") or "query")
        if source == "query":
            continue
        key, value = str(line["key"]), str(line.get("value", ""))
        if line.get("match") == "date-time range":
            low, _, high = value.partition("-")
            window = DateTimeRange(
                SPS_START_DATE, SPS_START_TIME, low or None, high or None, source
            )
            query = query.with_combined_range(window, "")
        elif key.startswith(_SPS) and line.get("match") == "single":
            keyword = key.removeprefix(_SPS)
            number = tag_for_keyword(keyword)
            if number is None:
                raise ValueError(f"unknown key {keyword!r}")
            tag = f"{number:08X}"
            added = Key(tag, dictionary_VR(number), keyword, SingleValue(value), source=source)
            query = query.with_sps_condition(added, "")
        else:
            raise ValueError(f"a condition no profile adds: {key} ({line.get('match')})")
    return replace(query, notes=tuple(notes))


def _keyword(tag: str) -> str:
    try:
        return keyword_for_tag(int(tag, 16)) or ""
    except ValueError:
        return ""


def keys_as_sent(identifier: Mapping[str, Any]) -> list[dict[str, str]]:
    """The identifier as the modality sent it, one line a key, sequence items flattened."""
    lines: list[dict[str, str]] = []
    _flatten(elements_from_json(identifier or {}, _keyword), "", "", lines)
    return lines


def _flatten(
    elements: Iterable[Element], names: str, tags: str, lines: list[dict[str, str]]
) -> None:
    for element in elements:
        name, tag = names + (element.keyword or element.tag), tags + element.tag
        lines.append({"key": name, "tag": tag, "vr": element.vr, "value": element.value})
        for item in element.items or ():
            _flatten(item, name + ">", tag + ">", lines)


# -- items to pick from -----------------------------------------------------------------------


def _candidates(session: Session, row: QueryLogRow, query: WorklistQuery | None) -> list[StepRow]:
    """The steps the query returned, then steps on its station, modality or day."""
    returned = list(store.steps_by_ids(session, list(row.step_ids or [])[:CANDIDATES]))
    station = _single(query, SCHEDULED_STATION_AE_TITLE)
    modality = _single(query, MODALITY)
    day = None
    if query is not None:
        for window in query.combined_ranges():
            day = (window.low or window.high or "")[:8] or None
    alike = store.steps_like(
        session, station_ae=station, modality=modality, day=day, limit=CANDIDATES
    )
    seen = {s.id for s in returned}
    return (returned + [s for s in alike if s.id not in seen])[:CANDIDATES]


def _single(query: WorklistQuery | None, tag: str) -> str | None:
    key = query.key(SPS_SEQUENCE, tag) if query is not None else None
    if key is not None and isinstance(key.condition, SingleValue):
        return key.condition.value
    return None


def _candidate(step: StepRow, row: QueryLogRow) -> dict[str, Any]:
    return {**views.step_summary(step), "returned": step.id in (row.step_ids or [])}
