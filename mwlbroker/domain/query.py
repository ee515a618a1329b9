"""Modality Worklist matching as PS3.4 C.2.2.2 and Annex K define it, on DICOM JSON items.

A C-FIND identifier becomes a :class:`WorklistQuery`: a tree of requested :class:`Key` objects,
each with the condition its value asks for (universal, single value, wild card, range, list of
UIDs, sequence). The store narrows the candidates with SQL; the final word on whether an item
matches, and what a response holds, is said here, on the item as stored (the DICOM JSON model
of PS3.18 F.2, keyed by tags such as ``"00100010"``). Pure Python: no pydicom, no SQL.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from mwlbroker.domain.charsets import fold

# Tags in the DICOM JSON form, the keys of stored items.
SPECIFIC_CHARACTER_SET = "00080005"  # (0008,0005) Specific Character Set | CS
QUERY_RETRIEVE_LEVEL = "00080052"  # (0008,0052) Query/Retrieve Level | CS
ACCESSION_NUMBER = "00080050"  # (0008,0050) Accession Number | SH
MODALITY = "00080060"  # (0008,0060) Modality | CS
PATIENT_NAME = "00100010"  # (0010,0010) Patient's Name | PN
PATIENT_ID = "00100020"  # (0010,0020) Patient ID | LO
ISSUER_OF_PATIENT_ID = "00100021"  # (0010,0021) Issuer of Patient ID | LO
STUDY_INSTANCE_UID = "0020000D"  # (0020,000D) Study Instance UID | UI
SCHEDULED_STATION_AE_TITLE = "00400001"  # (0040,0001) Scheduled Station AE Title | AE
SPS_START_DATE = "00400002"  # (0040,0002) Scheduled Procedure Step Start Date | DA
SPS_START_TIME = "00400003"  # (0040,0003) Scheduled Procedure Step Start Time | TM
SPS_ID = "00400009"  # (0040,0009) Scheduled Procedure Step ID | SH
SCHEDULED_STATION_NAME = "00400010"  # (0040,0010) Scheduled Station Name | SH
SPS_STATUS = "00400020"  # (0040,0020) Scheduled Procedure Step Status | CS
SPS_SEQUENCE = "00400100"  # (0040,0100) Scheduled Procedure Step Sequence | SQ
REQUESTED_PROCEDURE_ID = "00401001"  # (0040,1001) Requested Procedure ID | SH

# PS3.4 C.2.2.2.4: wild card matching applies to these VRs only.
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
# PS3.4 C.2.2.2.5: range matching applies to these VRs.
RANGE_VRS = frozenset({"DA", "TM", "DT"})
# PS3.5 6.2: trailing spaces are not significant for these; leading ones are for the others.
_TEXT_KEEPS_LEADING = frozenset({"LT", "ST", "UT", "UR"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT"})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")  # PS3.18 F.2.2 PN component groups
# Numbers: stored as JSON numbers (PS3.18 F.2.3), so "92" asks for the weight stored as 92.0.
_NUMBER_VRS = frozenset({"DS", "IS", "US", "UL", "SS", "SL", "UV", "SV", "FL", "FD"})


class FindStatus(enum.IntEnum):
    """C-FIND response statuses of Basic Worklist Management (PS3.4 K.4.1.1.4)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00  # matches are continuing, current match supplied
    CANCEL = 0xFE00  # matching terminated due to cancel request
    OUT_OF_RESOURCES = 0xA700  # refused: out of resources
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # failed: identifier does not match SOP class
    UNABLE_TO_PROCESS = 0xC000  # failed: unable to process

    @property
    def is_failure(self) -> bool:
        return self >= 0xA000 and self != FindStatus.CANCEL and self != FindStatus.PENDING


class QueryError(Exception):
    """An identifier this SOP class cannot answer: the failure status and its error comment."""

    def __init__(
        self,
        comment: str,
        status: FindStatus = FindStatus.UNABLE_TO_PROCESS,
        tag: str | None = None,
    ) -> None:
        super().__init__(comment)
        self.comment = comment
        self.status = status
        self.tag = tag  # the offending element, as "00400002"


# -- the identifier as received ----------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    """One key of a C-FIND identifier as received: tag, VR and decoded value, or its items."""

    tag: str  # "00100010"
    vr: str
    keyword: str = ""
    value: str = ""  # decoded text; multiple values stay joined by backslashes
    items: tuple[tuple[Element, ...], ...] | None = None  # for SQ: each item's elements

    def as_json(self) -> dict[str, Any]:
        """The element in the DICOM JSON model, as the modality gave it (for the query log)."""
        if self.items is not None:
            return {"vr": "SQ", "Value": [_elements_json(item) for item in self.items]}
        if not self.value:
            return {"vr": self.vr}
        if self.vr == "PN":
            groups = zip(_PN_GROUPS, self.value.split("="), strict=False)
            return {"vr": "PN", "Value": [{group: text for group, text in groups if text}]}
        return {"vr": self.vr, "Value": self.value.split("\\")}


def _elements_json(elements: Iterable[Element]) -> dict[str, Any]:
    return {element.tag: element.as_json() for element in elements}


def identifier_json(elements: Iterable[Element]) -> dict[str, Any]:
    """The keys as given, in the DICOM JSON model."""
    return _elements_json(elements)


def elements_from_json(
    given: Mapping[str, Any], keyword: Callable[[str], str] = lambda tag: ""
) -> list[Element]:
    """The keys of a logged identifier (:func:`identifier_json`) as elements again, in tag order.

    ``keyword`` names a tag ("00100010" -> "PatientName"); the domain keeps no dictionary.
    """
    elements = []
    for tag in sorted(given):
        element = given[tag] if isinstance(given[tag], Mapping) else {}
        vr = str(element.get("vr") or "UN")
        values = element.get("Value") or []
        if vr == "SQ":
            items = tuple(
                tuple(elements_from_json(item, keyword))
                for item in values
                if isinstance(item, Mapping)
            )
            elements.append(Element(tag, "SQ", keyword(tag), items=items))
        else:
            elements.append(Element(tag, vr, keyword(tag), "\\".join(_text(v) for v in values)))
    return elements


# -- conditions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Universal:
    """PS3.4 C.2.2.2.3 universal matching: an empty value (or a lone "*") matches everything."""

    kind = "universal"

    def matches(self, values: Sequence[Any], vr: str, insensitive: bool) -> bool:
        return True

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class SingleValue:
    """PS3.4 C.2.2.2.1 single value matching: exact, case-sensitive except Person Names."""

    value: str
    kind = "single"

    def matches(self, values: Sequence[Any], vr: str, insensitive: bool) -> bool:
        if vr == "PN":
            return any(_pn_matches(self.value, v, insensitive, wildcard=False) for v in values)
        if vr in _NUMBER_VRS and (number := _number(self.value)) is not None:
            return any(_number(_text(v)) == number for v in values)
        wanted = _normalise(self.value, vr)
        return any(_normalise(_text(v), vr) == wanted for v in values)

    def describe(self) -> str:
        return self.value


@dataclass(frozen=True)
class Wildcard:
    """PS3.4 C.2.2.2.4 wild card matching: "*" any run of characters, "?" any one character."""

    pattern: str
    kind = "wildcard"

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return wildcard_regex(self.pattern)

    def matches(self, values: Sequence[Any], vr: str, insensitive: bool) -> bool:
        if vr == "PN":
            return any(_pn_matches(self.pattern, v, insensitive, wildcard=True) for v in values)
        return any(self._regex.fullmatch(_normalise(_text(v), vr)) for v in values)

    def describe(self) -> str:
        return self.pattern


@dataclass(frozen=True)
class Range:
    """PS3.4 C.2.2.2.5 range matching of a DA, TM or DT value, both ends inclusive.

    Ends are kept in a fixed-width comparable form (DA: YYYYMMDD, TM: HHMMSS,
    DT: YYYYMMDDHHMMSS), the low end padded with zeros and the high end with nines, so that
    "1430" as an upper bound includes 14:30:59. ``None`` is an open end.
    """

    low: str | None
    high: str | None
    given: str = ""
    kind = "range"

    def matches(self, values: Sequence[Any], vr: str, insensitive: bool) -> bool:
        for value in values:
            stored = comparable(_text(value), vr)
            if stored is None:
                continue
            if (self.low is None or stored >= self.low) and (
                self.high is None or stored <= self.high
            ):
                return True
        return False

    def describe(self) -> str:
        return self.given or f"{self.low or ''}-{self.high or ''}"


@dataclass(frozen=True)
class UidList:
    """PS3.4 C.2.2.2.2 list of UID matching: any of the UIDs given."""

    uids: tuple[str, ...]
    kind = "uid-list"

    def matches(self, values: Sequence[Any], vr: str, insensitive: bool) -> bool:
        wanted = set(self.uids)
        return any(_text(v).strip() in wanted for v in values)

    def describe(self) -> str:
        return "\\".join(self.uids)


@dataclass(frozen=True)
class DateTimeRange:
    """A DA and a TM attribute range-matched together as one date-time (PS3.4 C.2.2.2.5.1).

    The Scheduled Procedure Step Start Date "20261127-20261128" with Start Time "0800-1200"
    means from 27 November 08:00 to 28 November 12:00, not two mornings. Bounds are
    YYYYMMDDHHMMSS, inclusive; ``None`` is an open end.
    """

    date_tag: str
    time_tag: str
    low: str | None
    high: str | None
    source: str = "query"  # "query", or what added it (a profile's default date window)

    def matches_item(self, item: Mapping[str, Any]) -> bool:
        moment = item_datetime(item, self.date_tag, self.time_tag)
        if moment is None:
            return False
        return (self.low is None or moment >= self.low) and (
            self.high is None or moment <= self.high
        )

    def describe(self) -> str:
        return f"{self.low or ''}-{self.high or ''}"


@dataclass(frozen=True)
class SequenceMatch:
    """PS3.4 C.2.2.2.6 sequence matching: some item of the stored sequence matches every key.

    ``keys`` are the keys of the query's one item; none (an empty sequence or item) means
    universal matching, and the whole stored sequence is returned.
    """

    keys: tuple[Key, ...] = ()
    combined: tuple[DateTimeRange, ...] = ()
    kind = "sequence"

    @property
    def is_universal(self) -> bool:
        return not self.combined and all(k.condition.kind == "universal" for k in self.keys)

    def matches(self, values: Sequence[Any], vr: str, insensitive: bool) -> bool:
        if self.is_universal:
            return True
        return any(
            isinstance(item, Mapping) and self.matches_item(item, insensitive) for item in values
        )

    def matches_item(self, item: Mapping[str, Any], insensitive: bool) -> bool:
        return all(key.matches(item, insensitive) for key in self.keys) and all(
            combined.matches_item(item) for combined in self.combined
        )

    def describe(self) -> str:
        return ""


Condition = Universal | SingleValue | Wildcard | Range | UidList | SequenceMatch
UNIVERSAL = Universal()


@dataclass(frozen=True)
class Key:
    """One requested key: returned in every response, and matched when it has a value.

    ``returned`` is False for conditions a profile added that the modality did not ask for.
    """

    tag: str
    vr: str
    keyword: str = ""
    condition: Condition = UNIVERSAL
    returned: bool = True
    source: str = "query"

    def matches(self, item: Mapping[str, Any], insensitive: bool = False) -> bool:
        if self.condition.kind == "universal":
            return True
        return self.condition.matches(_values(item.get(self.tag)), self.vr, insensitive)

    @property
    def sub_keys(self) -> tuple[Key, ...]:
        return self.condition.keys if isinstance(self.condition, SequenceMatch) else ()


# -- the query ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistQuery:
    """What a modality asked for: requested keys with conditions, and how names compare."""

    keys: tuple[Key, ...]
    charset_requested: bool = False  # (0008,0005) was among the keys
    pn_insensitive: bool = False  # PS3.4 C.2.2.2.1 allows case/accent-insensitive PN
    notes: tuple[str, ...] = field(default=())  # what the broker changed, for the query log

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether a stored item (DICOM JSON) matches every key."""
        return all(key.matches(item, self.pn_insensitive) for key in self.keys)

    def response(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The response identifier for an item: exactly the requested keys, empty when unknown."""
        return _project(item, self.keys)

    def key(self, *path: str) -> Key | None:
        """The key at a tag path, e.g. ``key(SPS_SEQUENCE, MODALITY)``; None when not asked."""
        keys = self.keys
        found: Key | None = None
        for tag in path:
            found = next((k for k in keys if k.tag == tag), None)
            if found is None:
                return None
            keys = found.sub_keys
        return found

    def combined_ranges(self) -> tuple[DateTimeRange, ...]:
        """The date-time ranges on the Scheduled Procedure Step item."""
        sps = self.key(SPS_SEQUENCE)
        if sps is None or not isinstance(sps.condition, SequenceMatch):
            return ()
        return sps.condition.combined

    def has_start_date_condition(self) -> bool:
        """True when the query already limits the SPS start date (itself or combined)."""
        if self.combined_ranges():
            return True
        date = self.key(SPS_SEQUENCE, SPS_START_DATE)
        return date is not None and date.condition.kind != "universal"

    def with_sps_condition(self, key: Key, note: str) -> WorklistQuery:
        """A copy in which an SPS item key has ``key``'s condition, added unreturned if absent."""
        sps = self.key(SPS_SEQUENCE)
        if sps is None:
            sps = Key(SPS_SEQUENCE, "SQ", "ScheduledProcedureStepSequence", SequenceMatch(), False)
        match = sps.condition if isinstance(sps.condition, SequenceMatch) else SequenceMatch()
        existing = next((k for k in match.keys if k.tag == key.tag), None)
        if existing is not None:
            key = replace(existing, condition=key.condition, source=key.source)
            sub_keys = tuple(key if k.tag == key.tag else k for k in match.keys)
        else:
            sub_keys = (*match.keys, replace(key, returned=False))
        return self._with_sps(replace(sps, condition=replace(match, keys=sub_keys)), note)

    def with_combined_range(self, combined: DateTimeRange, note: str) -> WorklistQuery:
        """A copy with one more date-time range on the SPS item (a default date window)."""
        sps = self.key(SPS_SEQUENCE)
        if sps is None:
            sps = Key(SPS_SEQUENCE, "SQ", "ScheduledProcedureStepSequence", SequenceMatch(), False)
        match = sps.condition if isinstance(sps.condition, SequenceMatch) else SequenceMatch()
        updated = replace(match, combined=(*match.combined, combined))
        return self._with_sps(replace(sps, condition=updated), note)

    def _with_sps(self, sps: Key, note: str) -> WorklistQuery:
        if any(k.tag == SPS_SEQUENCE for k in self.keys):
            keys = tuple(sps if k.tag == SPS_SEQUENCE else k for k in self.keys)
        else:
            keys = (*self.keys, sps)
        return replace(self, keys=keys, notes=(*self.notes, note))

    def describe(self) -> list[dict[str, Any]]:
        """Every condition that decides a match, in words a person can check an item against."""
        lines: list[dict[str, Any]] = []
        _describe(self.keys, "", lines, self.pn_insensitive)
        return lines

    def explain(self, item: Mapping[str, Any]) -> list[KeyVerdict]:
        """Each requested key's verdict on a stored item, depth first: why it matched or not.

        Every verdict comes from the very predicates :meth:`matches` uses, so an item matches
        exactly when every verdict is a match.
        """
        verdicts: list[KeyVerdict] = []
        _explain(self.keys, item, "", "", self.pn_insensitive, verdicts)
        return verdicts


def _describe(keys: Iterable[Key], prefix: str, lines: list[dict[str, Any]], pn_fold: bool) -> None:
    for key in keys:
        name = prefix + (key.keyword or key.tag)
        condition = key.condition
        if isinstance(condition, SequenceMatch):
            _describe(condition.keys, name + ">", lines, pn_fold)
            for combined in condition.combined:
                lines.append(
                    {
                        "key": f"{name}>date+time",
                        "match": "date-time range",
                        "value": combined.describe(),
                        "source": combined.source,
                    }
                )
            continue
        if condition.kind == "universal":
            continue
        line = {"key": name, "match": condition.kind, "value": condition.describe()}
        if key.vr == "PN" and pn_fold:
            line["match"] += " (case/accent-insensitive)"
        if key.source != "query":
            line["source"] = key.source
        lines.append(line)


# -- explaining a match -----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyVerdict:
    """One key of a query held against one item: the matching type, both values, the outcome."""

    key: str  # keyword path: "ScheduledProcedureStepSequence>Modality"
    tag: str  # tag path: "00400100>00080060"
    match: str  # universal, single, wildcard, range, uid-list, sequence, date-time range
    wanted: str  # the query's value
    found: str  # the item's value; "" when it has none
    matched: bool
    source: str = "query"  # or what added the condition (a profile)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "tag": self.tag,
            "match": self.match,
            "query_value": self.wanted,
            "item_value": self.found,
            "matched": self.matched,
            "source": self.source,
        }


def _explain(
    keys: Iterable[Key],
    item: Mapping[str, Any],
    name_prefix: str,
    tag_prefix: str,
    insensitive: bool,
    verdicts: list[KeyVerdict],
) -> None:
    for key in keys:
        name = name_prefix + (key.keyword or key.tag)
        tag = tag_prefix + key.tag
        condition = key.condition
        kind = condition.kind
        if key.vr == "PN" and insensitive and kind in ("single", "wildcard"):
            kind += " (case/accent-insensitive)"
        found = _shown(item.get(key.tag), key.vr)
        matched = key.matches(item, insensitive)  # the C-FIND predicate itself
        verdicts.append(
            KeyVerdict(name, tag, kind, condition.describe(), found, matched, key.source)
        )
        if not isinstance(condition, SequenceMatch):
            continue
        # PS3.4 C.2.2.2.6: one stored item must match every key; show the first that does,
        # else the first there is, so each sub-key's verdict is about one and the same item.
        stored = [i for i in _values(item.get(key.tag)) if isinstance(i, Mapping)]
        chosen = next(
            (i for i in stored if condition.matches_item(i, insensitive)),
            stored[0] if stored else {},
        )
        _explain(condition.keys, chosen, name + ">", tag + ">", insensitive, verdicts)
        for combined in condition.combined:
            verdicts.append(
                KeyVerdict(
                    f"{name}>date+time",
                    f"{tag}>{combined.date_tag}+{combined.time_tag}",
                    "date-time range",
                    combined.describe(),
                    item_datetime(chosen, combined.date_tag, combined.time_tag) or "",
                    combined.matches_item(chosen),
                    combined.source,
                )
            )


def _shown(element: Mapping[str, Any] | None, vr: str) -> str:
    """A stored element's value as text: multiple values joined by backslashes."""
    values = _values(element)
    if vr == "SQ":
        return f"{len(values)} item{'' if len(values) == 1 else 's'}" if values else ""
    return "\\".join(_text(v) for v in values)


# -- building a query from an identifier -------------------------------------------------------


def parse_query(elements: Iterable[Element]) -> WorklistQuery:
    """The query an identifier asks: each key's matching type decided as PS3.4 C.2.2.2 says.

    Raises :class:`QueryError` for what the service cannot answer: a sequence key with more
    than one item (A900), a malformed date, time or range, several values outside a UID list.
    """
    charset_requested = False
    keys: list[Key] = []
    for element in elements:
        if element.tag == SPECIFIC_CHARACTER_SET:
            charset_requested = True  # answered with the response's own character set
            continue
        if element.tag.endswith("0000") or element.tag == QUERY_RETRIEVE_LEVEL:
            # Group lengths are not keys; some SCUs add the Query/Retrieve Level of
            # PS3.4 Annex C, which the worklist information model does not have.
            continue
        keys.append(_parse_key(element))
    return WorklistQuery(tuple(keys), charset_requested=charset_requested)


def _parse_key(element: Element) -> Key:
    if element.items is not None or element.vr == "SQ":
        return Key(element.tag, "SQ", element.keyword, _parse_sequence(element))
    return Key(element.tag, element.vr, element.keyword, _parse_condition(element))


def _parse_sequence(element: Element) -> SequenceMatch:
    items = element.items or ()
    if len(items) > 1:
        # PS3.4 C.2.2.2.6: a sequence key holds at most one item
        raise QueryError(
            f"{element.keyword or element.tag} has {len(items)} items; a key sequence has one",
            FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
            element.tag,
        )
    if not items:
        return SequenceMatch()
    keys = [_parse_key(sub) for sub in items[0] if not sub.tag.endswith("0000")]
    combined: tuple[DateTimeRange, ...] = ()
    if element.tag == SPS_SEQUENCE:
        keys, combined = _combine_start(keys)
    return SequenceMatch(tuple(keys), combined)


def _combine_start(keys: list[Key]) -> tuple[list[Key], tuple[DateTimeRange, ...]]:
    """Join SPS Start Date and Time into one date-time range (PS3.4 C.2.2.2.5.1)."""
    date = next((k for k in keys if k.tag == SPS_START_DATE), None)
    time = next((k for k in keys if k.tag == SPS_START_TIME), None)
    date_range = date.condition if date is not None and isinstance(date.condition, Range) else None
    if date_range is None:
        return keys, ()  # a time alone is a time of day on any date
    time_range = time.condition if time is not None and isinstance(time.condition, Range) else None
    low_time = time_range.low if time_range is not None and time_range.low else "000000"
    high_time = time_range.high if time_range is not None and time_range.high else "999999"
    low = None if date_range.low is None else date_range.low + low_time
    high = None if date_range.high is None else date_range.high + high_time
    combined = DateTimeRange(SPS_START_DATE, SPS_START_TIME, low, high)
    replaced = [
        replace(k, condition=UNIVERSAL) if k.tag in (SPS_START_DATE, SPS_START_TIME) else k
        for k in keys
    ]
    return replaced, (combined,)


def _parse_condition(element: Element) -> Condition:
    vr = element.vr
    name = element.keyword or element.tag
    value = element.value
    if vr in _BINARY_VRS or vr == "PN" or vr in _TEXT_KEEPS_LEADING:
        stripped = value.rstrip(" \x00")
    else:
        stripped = value.strip(" \x00")
    if vr in _BINARY_VRS:
        # Binary keys are return keys; a value cannot be matched meaningfully.
        return UNIVERSAL
    if not stripped.strip() or (stripped.strip() == "*" and vr in WILDCARD_VRS):
        return UNIVERSAL  # PS3.4 C.2.2.2.3; a lone "*" is the same (C.2.2.2.4)
    if vr == "UI":
        uids = tuple(u.strip() for u in stripped.split("\\") if u.strip())
        if any("*" in u or "?" in u for u in uids):
            raise QueryError(f"{name}: wild cards are not allowed in a UID", tag=element.tag)
        return UidList(uids) if len(uids) > 1 else SingleValue(uids[0])
    if "\\" in stripped:
        raise QueryError(
            f"{name}: several values are only allowed for a list of UIDs", tag=element.tag
        )
    if vr in RANGE_VRS:
        return parse_range(stripped.strip(), vr, name, element.tag)
    if vr in WILDCARD_VRS and ("*" in stripped or "?" in stripped):
        return Wildcard(stripped if vr == "PN" else stripped.strip())
    return SingleValue(stripped if vr == "PN" else stripped.strip())


_DA = r"\d{8}"
_TM = r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?"
_DT = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"
_FORMS = {"DA": re.compile(_DA), "TM": re.compile(_TM), "DT": re.compile(_DT)}
_WIDTH = {"DA": 8, "TM": 6, "DT": 14}


def parse_range(text: str, vr: str, name: str = "", tag: str | None = None) -> Range:
    """A DA/TM/DT single value or range ("D1-D2", "-D2", "D1-") as a :class:`Range`."""
    form = _FORMS[vr]
    if form.fullmatch(text):  # a single value is the range from itself to itself
        return Range(_bound(text, vr, "0"), _bound(text, vr, "9"), text)
    if text.count("-") == 1 or (vr == "DT" and "-" in text):
        low_text, high_text = _split_range(text, vr)
        if (low_text or high_text) and all(form.fullmatch(t) for t in (low_text, high_text) if t):
            low = _bound(low_text, vr, "0") if low_text else None
            high = _bound(high_text, vr, "9") if high_text else None
            if low is None or high is None or low <= high:
                return Range(low, high, text)
            raise QueryError(f"{name or vr}: range {text!r} ends before it starts", tag=tag)
    kind = {"DA": "date", "TM": "time", "DT": "date-time"}[vr]
    raise QueryError(f"{name or vr}: {text!r} is not a {kind} or {kind} range", tag=tag)


def _split_range(text: str, vr: str) -> tuple[str, str]:
    if vr != "DT":
        low, _, high = text.partition("-")
        return low.strip(), high.strip()
    # A DT may carry a "-HHMM" UTC offset: split at the "-" that leaves two valid ends.
    for index, ch in enumerate(text):
        if ch != "-":
            continue
        low, high = text[:index].strip(), text[index + 1 :].strip()
        if all(_FORMS["DT"].fullmatch(t) for t in (low, high) if t):
            return low, high
    return text, ""


def _bound(text: str, vr: str, pad: str) -> str:
    digits = _digits(text, vr)
    return digits + pad * (_WIDTH[vr] - len(digits))


def _digits(text: str, vr: str) -> str:
    if vr == "DT":
        text = re.split(r"[+-]", text, maxsplit=1)[0]
    text = text.split(".", 1)[0].replace(":", "")
    return text[: _WIDTH[vr]]


def comparable(value: str, vr: str) -> str | None:
    """A stored DA/TM/DT value in the fixed-width form ranges compare with; None if not one."""
    text = value.strip()
    if not text:
        return None
    if vr == "TM" and ":" in text:
        text = text.replace(":", "")  # ACR-NEMA style "14:30:00"
    if not _FORMS[vr].fullmatch(text):
        return None
    return _bound(text, vr, "0")


def item_datetime(item: Mapping[str, Any], date_tag: str, time_tag: str) -> str | None:
    """An item's date and time attributes as one YYYYMMDDHHMMSS value; None without a date."""
    dates = _values(item.get(date_tag))
    date = comparable(_text(dates[0]), "DA") if dates else None
    if date is None:
        return None
    times = _values(item.get(time_tag))
    time = comparable(_text(times[0]), "TM") if times else None
    return date + (time or "000000")


# -- values, normalisation, person names -------------------------------------------------------


def _values(element: Mapping[str, Any] | None) -> list[Any]:
    if not element:
        return []
    values = element.get("Value")
    return list(values) if values else []


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):  # a PN in the JSON model
        return pn_string(value)
    return "" if value is None else str(value)


def _number(text: str) -> float | None:
    """A DS / IS / binary number's value, for single value matching; None when not a number."""
    try:
        return float(text.strip())
    except ValueError:
        return None


def _normalise(text: str, vr: str) -> str:
    return text.rstrip() if vr in _TEXT_KEEPS_LEADING else text.strip()


def pn_string(value: Mapping[str, Any] | str) -> str:
    """A PN from the JSON model as its "alphabetic=ideographic=phonetic" string."""
    if isinstance(value, str):
        return value
    groups = [str(value.get(g) or "") for g in _PN_GROUPS]
    return "=".join(groups).rstrip("=")


def _pn_group(text: str) -> str:
    # PS3.5 6.2.1: trailing spaces and empty trailing components are not significant
    return text.strip().rstrip("^").rstrip()


def _pn_matches(query: str, stored: Any, insensitive: bool, *, wildcard: bool) -> bool:
    """Match a PN group by group: each group the query gives must match the stored one.

    A query without "=" gives only the alphabetic group, the one modalities type.
    """
    stored_groups = _text(stored).split("=")
    query_groups = query.split("=")
    for index, wanted in enumerate(query_groups[:3]):
        wanted = _pn_group(wanted)
        if not wanted or (wildcard and wanted == "*"):
            continue
        have = _pn_group(stored_groups[index]) if index < len(stored_groups) else ""
        if insensitive:
            wanted, have = fold(wanted), fold(have)
        if wildcard:
            if not wildcard_regex(wanted).fullmatch(have):
                return False
        elif wanted != have:
            return False
    return True


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression for a DICOM wild card pattern ("*" and "?")."""
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def wildcard_prefix(pattern: str) -> str:
    """The literal text before the first wild card: what an index can narrow on."""
    match = re.search(r"[*?]", pattern)
    return pattern if match is None else pattern[: match.start()]


def pn_prefix(query: Condition, insensitive: bool) -> str | None:
    """The alphabetic-group prefix every matching Patient's Name starts with, or None."""
    if isinstance(query, SingleValue):
        text = query.value
    elif isinstance(query, Wildcard):
        text = query.pattern
    else:
        return None
    group = _pn_group(text.split("=", 1)[0])
    prefix = wildcard_prefix(group) if isinstance(query, Wildcard) else group
    if not prefix:
        return None
    return fold(prefix) if insensitive else prefix


def _project(item: Mapping[str, Any], keys: Iterable[Key]) -> dict[str, Any]:
    response: dict[str, Any] = {}
    for key in keys:
        if not key.returned:
            continue
        stored = item.get(key.tag)
        if isinstance(key.condition, SequenceMatch):
            response[key.tag] = _project_sequence(stored, key)
        elif stored and stored.get("Value"):
            response[key.tag] = stored
        else:
            # PS3.4 K.2.2.1.2: a requested key the SCP has no value for comes back empty
            response[key.tag] = {"vr": (stored or {}).get("vr") or key.vr}
    return response


def _project_sequence(stored: Mapping[str, Any] | None, key: Key) -> dict[str, Any]:
    items = _values(stored)
    returned = [k for k in key.sub_keys if k.returned]
    if not returned:
        return {"vr": "SQ", "Value": [dict(item) for item in items]}
    return {"vr": "SQ", "Value": [_project(item, returned) for item in items]}


def iter_keys(keys: Iterable[Key]) -> Iterator[Key]:
    """Every key of a key tree, depth first."""
    for key in keys:
        yield key
        yield from iter_keys(key.sub_keys)
