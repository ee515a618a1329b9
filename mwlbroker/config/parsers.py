"""Value parsers: each turns a raw value (from TOML, or a string from the environment) into
the typed value a setting holds, or raises :class:`ValueError` saying what was expected.

The loader adds the key and where the value came from to the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from mwlbroker.domain.charsets import RESPONSE_CHARSETS
from mwlbroker.domain.masking import mask_url
from mwlbroker.domain.outbound import CHARSETS as OUTBOUND_CHARSETS
from mwlbroker.domain.outbound import VERSIONS as OUTBOUND_VERSIONS
from mwlbroker.domain.schedule import Schedule, parse_schedule


def as_str(value: Any) -> str:
    """A string, as given."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def as_int(low: int, high: int) -> Callable[[Any], int]:
    """A parser of whole numbers between ``low`` and ``high``, inclusive."""

    def parse(value: Any) -> int:
        if isinstance(value, str):
            if not re.fullmatch(r"\s*-?\d+\s*", value):
                raise ValueError(f"must be an integer, got {value!r}")
            value = int(value)
        return _between(_number(value, int, "an integer"), low, high)

    return parse


def as_float(low: float, high: float) -> Callable[[Any], float]:
    """A parser of numbers between ``low`` and ``high``, inclusive."""

    def parse(value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        return float(_between(_number(value, int | float, "a number"), low, high))

    return parse


def _number(value: Any, kind: Any, expected: str) -> Any:
    """``value`` if it is of ``kind``; a bool is refused, although Python counts it an int."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"must be {expected}, got {value!r}")
    return value


def _between(value: Any, low: float, high: float) -> Any:
    """``value`` if it lies between ``low`` and ``high``, inclusive."""
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}, got {value}")
    return value


def as_bool(value: Any) -> bool:
    """true/false, or in the environment 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def one_of(*choices: str) -> Callable[[Any], str]:
    """A parser of one of ``choices``, case-insensitive, returned in lower case."""

    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return parse


def as_str_list(value: Any) -> tuple[str, ...]:
    """A list of strings; in the environment, comma-separated."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, got {value!r}")
    return tuple(value)


def as_ae_title(value: Any) -> str:
    """An Application Entity title, surrounding spaces removed."""
    # PS3.5 6.2: AE is at most 16 characters of the default repertoire, no backslash, not all spaces
    text = as_str(value)
    if not text.strip() or len(text) > 16 or "\\" in text or not text.isascii():
        raise ValueError(f"must be 1 to 16 ASCII characters without a backslash, got {value!r}")
    return text.strip()


def as_host(value: Any) -> str:
    """A host name or address to bind to or reach."""
    text = as_str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def as_database_url(value: Any) -> str:
    """An SQLAlchemy URL of a database the broker supports (SQLite, PostgreSQL)."""
    text = as_str(value).strip()
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", text):
        raise ValueError(
            "must be an SQLAlchemy URL starting with sqlite:// or postgresql://, "
            f"got {mask_url(text)!r}"
        )
    return text


def as_schedule(value: Any) -> Schedule:
    """A job schedule: ``every 15m`` or ``cron M H DOM MON DOW``."""
    schedule = parse_schedule(as_str(value))
    if schedule.kind == "cron":
        try:
            CronTrigger.from_crontab(schedule.cron)
        except ValueError as error:
            raise ValueError(f"cron {schedule.cron!r}: {error}") from None
    return schedule


_DESTINATION_KEYS = (
    "name",
    "host",
    "port",
    "version",
    "receiving_application",
    "receiving_facility",
    "charset",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
)


def as_destinations(value: Any) -> tuple[dict[str, Any], ...]:
    """The outbound HL7 destinations, every key checked and defaulted."""
    if isinstance(value, str):
        if value.strip().startswith("["):
            # Environment form with every key: a JSON list of objects.
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"must be a JSON list of objects: {error.msg}") from None
        else:
            # Short environment form: "RIS=ris.example.org:2575/2.5.1,BILLING=10.1.2.3:6661"
            value = [_destination_from_text(part) for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(
            "must be a list of tables with name, host and port ([[outbound.destinations]])"
        )
    destinations = []
    names: set[str] = set()
    for index, item in enumerate(value):
        _check_entry(index + 1, item, _DESTINATION_KEYS, needs="name, host and port")
        try:
            name = as_str(item["name"]).strip()
            host = as_host(item["host"])
            port = as_int(1, 65535)(item["port"])
            version = as_str(item.get("version", "2.3.1")).strip()
            if version not in OUTBOUND_VERSIONS:
                raise ValueError(
                    f"version must be one of {', '.join(OUTBOUND_VERSIONS)}, got {version!r}"
                )
            charset = as_str(item.get("charset", "UNICODE UTF-8")).strip().upper()
            if charset not in OUTBOUND_CHARSETS:
                raise ValueError(
                    f"charset must be one of {', '.join(OUTBOUND_CHARSETS)}, got {charset!r}"
                )
            receiving = {
                key: as_str(item.get(key, "")).strip()
                for key in ("receiving_application", "receiving_facility")
            }
            tls = {"tls": as_bool(item.get("tls", False))} | {
                key: as_str(item.get(key, "")).strip() for key in ("tls_ca", "tls_cert", "tls_key")
            }
        except KeyError as missing:
            raise ValueError(f"entry {index + 1} is missing {missing.args[0]!r}") from None
        except ValueError as error:
            raise ValueError(f"entry {index + 1}: {error}") from None
        if not name or name in names:
            raise ValueError(f"entry {index + 1}: name {name!r} is empty or used twice")
        names.add(name)
        destinations.append(
            {
                "name": name,
                "host": host,
                "port": port,
                "version": version,
                **receiving,
                "charset": charset,
                **tls,
            }
        )
    return tuple(destinations)


def as_ae_title_list(value: Any) -> tuple[str, ...]:
    """A list of AE titles; in the environment, comma-separated."""
    return tuple(as_ae_title(title) for title in as_str_list(value))


# (0040,0020) Scheduled Procedure Step Status values a worklist may serve.
_SERVABLE_STATUSES = (
    "SCHEDULED",
    "ARRIVED",
    "READY",
    "STARTED",
    "COMPLETED",
    "DISCONTINUED",
    "CANCELED",
)


def as_statuses(value: Any) -> tuple[str, ...]:
    """A non-empty list of Scheduled Procedure Step statuses a worklist may serve."""
    statuses = tuple(s.strip().upper() for s in as_str_list(value))
    if not statuses:
        raise ValueError("must name at least one status")
    for status in statuses:
        if status not in _SERVABLE_STATUSES:
            raise ValueError(f"{status!r} is not one of {', '.join(_SERVABLE_STATUSES)}")
    return statuses


_PROFILE_KEYS = {
    "calling_ae": "glob of the calling AE titles it applies to",
    "fill_station_ae": "fill an empty Scheduled Station AE Title with the caller's AE title",
    "date_window_days": "with no start date asked: today plus and minus this many days",
    "pn_case_insensitive": "overrides dicom.pn_case_insensitive",
    "charset": "Specific Character Set to answer in",
}


def _check_entry(index: int, item: Any, keys: Iterable[str], *, needs: str) -> None:
    """Entry ``index`` (from 1) of a list of tables is a table, with none but ``keys``."""
    if not isinstance(item, dict):
        raise ValueError(f"entry {index} must be a table with {needs}")
    unknown = set(item) - set(keys)
    if unknown:
        raise ValueError(f"entry {index} has unknown key {sorted(unknown)[0]!r}")


def as_profiles(value: Any) -> tuple[dict[str, Any], ...]:
    """The query profiles ([[dicom.profiles]]); in the environment a JSON list."""
    if isinstance(value, str):
        # Environment form: the list of tables as JSON.
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as error:
            raise ValueError(f"must be a JSON list of objects: {error.msg}") from None
    if not isinstance(value, list):
        raise ValueError("must be a list of tables ([[dicom.profiles]]) with calling_ae")
    return tuple(_as_profile(index, item) for index, item in enumerate(value, start=1))


def _as_profile(index: int, item: Any) -> dict[str, Any]:
    _check_entry(index, item, _PROFILE_KEYS, needs="calling_ae")
    try:
        pattern = as_str(item["calling_ae"]).strip()
        if not pattern or len(pattern) > 64 or not pattern.isascii():
            raise ValueError(f"calling_ae must be a glob of AE titles, got {pattern!r}")
        profile: dict[str, Any] = {
            "calling_ae": pattern,
            "fill_station_ae": as_bool(item.get("fill_station_ae", False)),
        }
        if "date_window_days" in item:
            profile["date_window_days"] = as_int(0, 366)(item["date_window_days"])
        if "pn_case_insensitive" in item:
            profile["pn_case_insensitive"] = as_bool(item["pn_case_insensitive"])
        if "charset" in item:
            charset = as_str(item["charset"]).strip()
            if charset not in RESPONSE_CHARSETS:
                raise ValueError(
                    f"charset must be one of {', '.join(RESPONSE_CHARSETS)}, got {charset!r}"
                )
            profile["charset"] = charset
    except KeyError as missing:
        raise ValueError(f"entry {index} is missing {missing.args[0]!r}") from None
    except ValueError as error:
        raise ValueError(f"entry {index}: {error}") from None
    return profile


def _destination_from_text(text: str) -> dict[str, Any]:
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([^\s/]+):(\d+)(?:/(\S+))?\s*", text)
    if not match:
        raise ValueError(f"{text.strip()!r} is not NAME=HOST:PORT or NAME=HOST:PORT/VERSION")
    destination: dict[str, Any] = {"name": match[1], "host": match[2], "port": int(match[3])}
    if match[4]:
        destination["version"] = match[4]
    return destination
