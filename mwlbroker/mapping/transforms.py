"""Named value transforms for mapping rules: a registry, like pydicom's hooks.

A mapping file names a transform (``transform: hl7_date``) or gives it arguments
(``transform: {truncate: 64}``). Each transform is registered with its parameters; the loader
checks the arguments and calls the transform's *factory* once, when the mapping is loaded, so
regular expressions are compiled and tables resolved before the first message arrives. The
factory returns the function that runs per value: text in, text out, ``None`` for "no value".

Transforms registered with ``components=True`` (``xpn_to_pn``, ``xcn_to_pn``) read a whole
field repetition: they receive the list of its components and must come first in a chain.
``subcomponents=True`` (``cnn_to_pn``) is the same for the subcomponents of one component.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mwlbroker.domain.messages import HL7ErrorCode

TextFunction = Callable[[str], "str | None"]
PartsFunction = Callable[[list[str]], "str | None"]


class TransformError(ValueError):
    """A value the transform cannot convert (the message is answered AE, naming the field)."""

    error_code = HL7ErrorCode.DATA_TYPE_ERROR  # HL7 table 0357: a date that is not a date...


class NotInTable(TransformError):
    """A code that a strict ``lookup`` does not find in its table."""

    error_code = HL7ErrorCode.TABLE_VALUE_NOT_FOUND


@dataclass(frozen=True)
class Param:
    """One argument of a transform: its type, whether it must be given, and its default."""

    kind: type
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Table:
    """A code table from a profile's ``tables:``: one value per code, or a row of columns."""

    name: str
    rows: Mapping[str, str | Mapping[str, str]]
    where: str = ""  # FILE:LINE of its definition

    @property
    def columns(self) -> frozenset[str] | None:
        """The column names of a table whose rows are mappings; ``None`` for a plain table."""
        names: set[str] = set()
        for row in self.rows.values():
            if not isinstance(row, Mapping):
                return None
            names.update(row)
        return frozenset(names)


@dataclass(frozen=True)
class TransformSetup:
    """What a factory may use besides its arguments: the profile's tables."""

    profile: str
    tables: Mapping[str, Table] = field(default_factory=dict)


@dataclass(frozen=True)
class TransformSpec:
    """A registered transform: how to build it, and what a mapping file may pass to it."""

    name: str
    factory: Callable[..., Callable[[Any], str | None]]
    params: Mapping[str, Param]
    shorthand: str | None  # the parameter a single value fills: {truncate: 64}
    components: bool  # receives a repetition's components instead of one value
    summary: str
    subcomponents: bool = False  # receives one component's subcomponents (a CNN in OBR-34.1)


TRANSFORMS: dict[str, TransformSpec] = {}
"""Every transform a mapping file can name, by name."""


def register_transform(
    name: str,
    *,
    params: Mapping[str, Param] | None = None,
    shorthand: str | None = None,
    components: bool = False,
    subcomponents: bool = False,
) -> Callable[[Callable[..., Callable[[Any], str | None]]], Callable[..., Any]]:
    """Register ``factory(setup, **args)`` under ``name``; its docstring's first line is the help."""

    def decorator(factory: Callable[..., Callable[[Any], str | None]]) -> Callable[..., Any]:
        summary = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        TRANSFORMS[name] = TransformSpec(
            name,
            factory,
            dict(params or {}),
            shorthand,
            components or subcomponents,
            summary,
            subcomponents,
        )
        return factory

    return decorator


def _text_only(function: Callable[[str], str | None]) -> Callable[..., TextFunction]:
    """A factory for a transform without arguments."""

    def factory(_setup: TransformSetup) -> TextFunction:
        return function

    factory.__doc__ = function.__doc__
    return factory


# -- dates and times -------------------------------------------------------------------------

# HL7 DTM / TS: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
_DTM = re.compile(
    r"(\d{4})(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"
)


def _split_dtm(value: str) -> tuple[str, ...]:
    match = _DTM.fullmatch(value.strip())
    if not match:
        raise TransformError(f"{value!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS[.SSSS]]])")
    year, month, day, hour, minute, second, fraction = (part or "" for part in match.groups())
    try:
        if day:
            datetime.date(int(year), int(month), int(day))
        elif month and not 1 <= int(month) <= 12:
            raise ValueError("month must be in 1..12")
        if hour:
            datetime.time(int(hour), int(minute or 0), min(int(second or 0), 59))
    except ValueError as error:
        raise TransformError(f"{value!r} is not a valid date/time: {error}") from None
    return year, month, day, hour, minute, second, fraction


def hl7_date(value: str) -> str | None:
    """HL7 DTM/TS -> DICOM DA ``YYYYMMDD``; no value when the sender gave only year or month."""
    year, month, day, *_ = _split_dtm(value)
    return f"{year}{month}{day}" if day else None


def hl7_time(value: str) -> str | None:
    """HL7 DTM/TS -> DICOM TM ``HHMMSS[.FFFFFF]`` (minutes and seconds padded, offset ignored)."""
    *_, hour, minute, second, fraction = _split_dtm(value)
    if not hour:
        return None
    return f"{hour}{minute or '00'}{second or '00'}{fraction}"


register_transform("hl7_date")(_text_only(hl7_date))
register_transform("hl7_time")(_text_only(hl7_time))

# Duration units (SIU AIS-8 / AIG-12 / AIL-10, ISO+ or UCUM codes; HL7 TQ letters): seconds.
DURATION_UNITS = {
    **dict.fromkeys(("S", "SEC", "SECOND", "SECONDS"), 1),
    **dict.fromkeys(("M", "MIN", "MINUTE", "MINUTES"), 60),
    **dict.fromkeys(("H", "HR", "HOUR", "HOURS"), 3600),
    **dict.fromkeys(("D", "DAY", "DAYS"), 86400),
}


def end_of(start: str, duration: str, units: str | None = None) -> str | None:
    """``start`` (HL7 DTM) plus ``duration`` ``units`` (minutes when empty), as HL7 DTM.

    The result is ``YYYYMMDDHHMMSS`` in the start's own clock (its offset is ignored, as
    ``hl7_time`` does); no value when the start has no time of day.
    """
    year, month, day, hour, minute, second, _fraction = _split_dtm(start)
    if not day or not hour:
        return None
    try:
        amount = float(duration.strip())
    except ValueError:
        raise TransformError(f"duration {duration!r} is not a number") from None
    if not 0 <= amount < 1e6:
        raise TransformError(f"duration {duration!r} is out of range")
    unit = (units or "").strip().upper() or "MIN"
    factor = DURATION_UNITS.get(unit)
    if factor is None:
        raise TransformError(
            f"duration unit {units!r} is not known (s, min, h, d and their long forms)"
        )
    begin = datetime.datetime(
        int(year), int(month), int(day), int(hour), int(minute or 0), min(int(second or 0), 59)
    )
    return (begin + datetime.timedelta(seconds=amount * factor)).strftime("%Y%m%d%H%M%S")


# -- names -----------------------------------------------------------------------------------

_PN_DELIMITERS = str.maketrans({"^": " ", "=": " ", "\\": " "})


def _person_name(family: str, given: str, middle: str, suffix: str, prefix: str) -> str | None:
    # PS3.5 6.2: family^given^middle^prefix^suffix; a delimiter inside a part would shift the rest.
    parts = [p.translate(_PN_DELIMITERS).strip() for p in (family, given, middle, prefix, suffix)]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts) or None


def _part(parts: list[str], index: int) -> str:
    value = parts[index] if index < len(parts) else ""
    return "" if value == '""' else value


def xpn_to_pn(parts: list[str]) -> str | None:
    """HL7 XPN family^given^middle^suffix^prefix -> DICOM PN family^given^middle^prefix^suffix."""
    return _person_name(*(_part(parts, i) for i in range(5)))


def xcn_to_pn(parts: list[str]) -> str | None:
    """HL7 XCN id^family^given^middle^suffix^prefix -> DICOM PN (the ID is dropped)."""
    return _person_name(*(_part(parts, i) for i in range(1, 6)))


def cnn_to_pn(parts: list[str]) -> str | None:
    """HL7 CNN id&family&given&middle&suffix&prefix (one component, OBR-34.1) -> DICOM PN."""
    return xcn_to_pn(parts)


register_transform("xpn_to_pn", components=True)(_text_only(xpn_to_pn))  # type: ignore[arg-type]
register_transform("xcn_to_pn", components=True)(_text_only(xcn_to_pn))  # type: ignore[arg-type]
register_transform("cnn_to_pn", subcomponents=True)(_text_only(cnn_to_pn))  # type: ignore[arg-type]


# -- codes -----------------------------------------------------------------------------------

# HL7 table 0001 Administrative Sex -> (0010,0040) Patient's Sex M / F / O.
_SEX = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "X": "O"}


def sex(value: str) -> str | None:
    """HL7 administrative sex -> DICOM M / F / O (A, N, X -> O; U and unknown codes -> no value)."""
    return _SEX.get(value.strip().upper())


# HL7 table 0027 (ORC-7.6 / OBR-27.6, up to v2.6) and 0485 (TQ1-9, a CWE from v2.5 on) ->
# (0040,1003) Requested Procedure Priority, whose defined terms are STAT, HIGH, ROUTINE,
# MEDIUM, LOW. C (callback: the result is phoned back) says nothing about when the exam is
# done, so it is routine; PRN (as needed) and P (preoperative, ahead of a planned operation)
# are low.
_PRIORITY = {
    "S": "STAT",
    "A": "HIGH",
    "R": "ROUTINE",
    "C": "ROUTINE",
    "P": "LOW",
    "PRN": "LOW",
    "T": "MEDIUM",
}
_DICOM_PRIORITIES = frozenset({"STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW"})


def priority(value: str) -> str | None:
    """HL7 priority (S, A, R, C, P, T, TS30, PRN...) -> DICOM STAT / HIGH / ROUTINE / LOW / MEDIUM."""
    code = value.strip().upper()
    if code in _DICOM_PRIORITIES:
        return code
    if code in _PRIORITY:
        return _PRIORITY[code]
    if code[:1] == "T" and code[1:2] in {"S", "M", "H", "D", "W", "L"}:
        return "MEDIUM"  # v2.5 timing critical within a given time (TS30, TM15, ...)
    return None


register_transform("sex")(_text_only(sex))
register_transform("priority")(_text_only(priority))


# -- text ------------------------------------------------------------------------------------


def upper(value: str) -> str | None:
    """Upper case."""
    return value.upper()


def lower(value: str) -> str | None:
    """Lower case."""
    return value.lower()


def strip(value: str) -> str | None:
    """Remove leading and trailing spaces."""
    return value.strip() or None


register_transform("upper")(_text_only(upper))
register_transform("lower")(_text_only(lower))
register_transform("strip")(_text_only(strip))


@register_transform("truncate", params={"length": Param(int, required=True)}, shorthand="length")
def _truncate(_setup: TransformSetup, length: int) -> TextFunction:
    """Keep the first LENGTH characters (DICOM limits: SH 16, LO 64, PN 64 per group)."""
    if length < 1:
        raise ValueError("truncate: length must be at least 1")
    return lambda value: value[:length]


_GROUP_REFERENCE = re.compile(r"\\(\d+)|\\g<([^>]*)>")


@register_transform(
    "regex",
    params={"pattern": Param(str, required=True), "replace": Param(str, default="")},
    shorthand="pattern",
)
def _regex(_setup: TransformSetup, pattern: str, replace: str) -> TextFunction:
    """Replace what the regular expression PATTERN matches with REPLACE (\\1 for groups)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"regex: pattern {pattern!r} does not compile: {error}") from None
    for number, name in _GROUP_REFERENCE.findall(replace):
        if number and int(number) > compiled.groups:
            raise ValueError(f"regex: replace refers to group {number}, pattern has fewer")
        known = name in compiled.groupindex or (name.isdigit() and int(name) <= compiled.groups)
        if name and not known:
            raise ValueError(f"regex: replace refers to group {name!r}, pattern has none")

    def apply(value: str) -> str | None:
        return compiled.sub(replace, value) or None

    return apply


@register_transform(
    "lookup",
    params={
        "table": Param(str, required=True),
        "column": Param(str),
        "default": Param(str),
        "strict": Param(bool, default=False),
    },
    shorthand="table",
)
def _lookup(
    setup: TransformSetup, table: str, column: str | None, default: str | None, strict: bool
) -> TextFunction:
    """The value's row in a table of ``tables:`` (a COLUMN of it for tables with columns)."""
    if table not in setup.tables:
        known = ", ".join(sorted(setup.tables)) or "none defined"
        raise ValueError(f"lookup: no table {table!r} in profile {setup.profile} ({known})")
    found = setup.tables[table]
    columns = found.columns
    if column is None and columns is not None:
        raise ValueError(
            f"lookup: table {table!r} has columns ({', '.join(sorted(columns))}): name one "
            f"with column:"
        )
    if column is not None and columns is None:
        raise ValueError(f"lookup: table {table!r} has no columns, remove column: {column}")
    if column is not None and columns is not None and column not in columns:
        raise ValueError(
            f"lookup: table {table!r} has no column {column!r} ({', '.join(sorted(columns))})"
        )
    values: dict[str, str] = {}
    for key, row in found.rows.items():
        cell = row.get(column) if isinstance(row, Mapping) and column else row
        if isinstance(cell, str) and cell:
            values[key] = cell

    def apply(value: str) -> str | None:
        result = values.get(value)
        if result is None:
            result = values.get(value.strip())
        if result is not None:
            return result
        if default is not None:
            return default or None
        if strict:
            where = f" ({found.where})" if found.where else ""
            what = f"column {column!r} of table {table!r}" if column else f"table {table!r}"
            raise NotInTable(f"{value!r} has no entry in {what}{where}")
        return None

    return apply


# -- measurements and codes of the Patient Medical module ---------------------------------------

# Units a sender writes in OBX-6 (UCUM, ISO+ and the usual plain forms) -> factor to kg / m.
_WEIGHT_UNITS = {
    **dict.fromkeys(("KG", "KGS", "KILOGRAM", "KILOGRAMS"), 1.0),
    **dict.fromkeys(("G", "GR", "GRAM", "GRAMS"), 0.001),
    **dict.fromkeys(("LB", "LBS", "[LB_AV]", "POUND", "POUNDS"), 0.45359237),
    **dict.fromkeys(("OZ", "[OZ_AV]", "OUNCE", "OUNCES"), 0.028349523125),
}
_LENGTH_UNITS = {
    **dict.fromkeys(("M", "METER", "METRE", "METERS", "METRES"), 1.0),
    **dict.fromkeys(("CM", "CENTIMETER", "CENTIMETRE", "CENTIMETERS", "CENTIMETRES"), 0.01),
    **dict.fromkeys(("MM", "MILLIMETER", "MILLIMETRE"), 0.001),
    **dict.fromkeys(("IN", "[IN_I]", "INCH", "INCHES"), 0.0254),
    **dict.fromkeys(("FT", "[FT_I]", "FOOT", "FEET"), 0.3048),
}


# A number and what follows it: "154.3 [lb_av]", "80kg", "62,5 kg" (a decimal comma).
_MEASUREMENT = re.compile(r"\s*([+-]?\d+(?:[.,]\d+)?)\s*(.*)", re.DOTALL)


def _measure(value: str, units: Mapping[str, float], what: str, target: str, places: int) -> str:
    match = _MEASUREMENT.fullmatch(value)
    if match is None:
        raise TransformError(f"{what} {value.split(' ')[0]!r} is not a number")
    number = match[1]
    amount = float(number.replace(",", "."))
    # OBX-5 "80 kg" with OBX-6 "kg" as well: the same unit twice is that unit.
    unit = " ".join(dict.fromkeys(match[2].upper().split()))
    if not unit:
        raise TransformError(
            f"{what} {number!r} has no units (OBX-6): give {target} or another unit "
            f"({', '.join(sorted(k.lower() for k in units if k.isalpha() and len(k) <= 3))})"
        )
    factor = units.get(unit)
    if factor is None:
        known = ", ".join(sorted(k.lower() for k in units if len(k) <= 7))
        raise TransformError(f"{what} unit {unit.lower()!r} is not known ({known})")
    if not 0 <= amount < 1e6:
        raise TransformError(f"{what} {number!r} is out of range")
    # (0010,1030) / (0010,1020) are DS: at most 16 characters.
    text = f"{amount * factor:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def weight_kg(value: str) -> str | None:
    """``VALUE UNITS`` (OBX-5 and OBX-6 joined) -> DICOM Patient's Weight in kg (DS)."""
    return _measure(value, _WEIGHT_UNITS, "weight", "kg", 2)


def height_m(value: str) -> str | None:
    """``VALUE UNITS`` (OBX-5 and OBX-6 joined) -> DICOM Patient's Size in metres (DS)."""
    return _measure(value, _LENGTH_UNITS, "height", "m", 3)


# (0010,21C0) Pregnancy Status | US: 1 not pregnant, 2 possibly pregnant, 3 definitely
# pregnant, 4 unknown. From PV1-15 Ambulatory Status (table 0009: B6 pregnant), HL7 table 0136
# yes/no, LOINC answer codes of 82810-3 / 11449-6, SNOMED CT findings, and plain words.
_PREGNANCY = {
    "B6": "3",
    "Y": "3",
    "N": "1",
    "U": "4",
    "LA15173-0": "3",  # Pregnant
    "LA26683-5": "1",  # Not pregnant
    "LA4489-6": "4",  # Unknown
    "77386006": "3",  # Pregnancy (finding)
    "60001007": "1",  # Not pregnant (finding)
    "102874004": "2",  # Possible pregnancy (finding)
    "PREGNANT": "3",
    "NOT PREGNANT": "1",
    "POSSIBLY PREGNANT": "2",
    "POSSIBLE PREGNANCY": "2",
    "UNKNOWN": "4",
    **{f"000{n}": str(n) for n in range(1, 5)},
    **{str(n): str(n) for n in range(1, 5)},
}


def pregnancy_status(value: str) -> str | None:
    """Pregnancy code (PV1-15 B6, Y/N/U, LOINC LA codes, SNOMED CT) -> DICOM 1-4; else none."""
    return _PREGNANCY.get(value.strip().upper())


register_transform("weight_kg")(_text_only(weight_kg))
register_transform("height_m")(_text_only(height_m))
register_transform("pregnancy_status")(_text_only(pregnancy_status))
