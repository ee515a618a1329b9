"""Every setting of the broker, declared once: name, default, type and one line of help.

Settings load in this order, each layer overriding the one before: the defaults below, the TOML
file given with ``--config`` (or ``MWLBROKER_CONFIG``), then ``MWLBROKER_<SECTION>_<KEY>``
environment variables. A bad value stops start-up with a :class:`ConfigError` naming the key,
because a broker that starts on a half-understood configuration loses messages quietly.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from mwlbroker.domain.charsets import RESPONSE_CHARSETS
from mwlbroker.domain.outbound import CHARSETS as OUTBOUND_CHARSETS
from mwlbroker.domain.outbound import VERSIONS as OUTBOUND_VERSIONS
from mwlbroker.domain.schedule import Schedule, parse_schedule

ENV_PREFIX = "MWLBROKER_"


class ConfigError(Exception):
    """A setting is missing, unknown or has a value the broker cannot use."""


# -- value parsers: each takes a raw value (from TOML or a string from the environment) ----------


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _as_int(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, got {value!r}")
        if isinstance(value, str):
            if not re.fullmatch(r"\s*-?\d+\s*", value):
                raise ValueError(f"must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _as_float(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        if not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return float(value)

    return parse


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return parse


def _as_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, got {value!r}")
    return tuple(value)


def _as_ae_title(value: Any) -> str:
    # PS3.5 6.2: AE is at most 16 characters of the default repertoire, no backslash, not all spaces
    text = _as_str(value)
    if not text.strip() or len(text) > 16 or "\\" in text or not text.isascii():
        raise ValueError(f"must be 1 to 16 ASCII characters without a backslash, got {value!r}")
    return text.strip()


def _as_host(value: Any) -> str:
    text = _as_str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _as_database_url(value: Any) -> str:
    text = _as_str(value).strip()
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", text):
        raise ValueError(
            "must be an SQLAlchemy URL starting with sqlite:// or postgresql://, "
            f"got {mask_url(text)!r}"
        )
    return text


def _as_schedule(value: Any) -> Schedule:
    schedule = parse_schedule(_as_str(value))
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


def _as_destinations(value: Any) -> tuple[dict[str, Any], ...]:
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
        if not isinstance(item, dict):
            raise ValueError(f"entry {index + 1} must be a table with name, host and port")
        unknown = set(item) - set(_DESTINATION_KEYS)
        if unknown:
            raise ValueError(f"entry {index + 1} has unknown key {sorted(unknown)[0]!r}")
        try:
            name = _as_str(item["name"]).strip()
            host = _as_host(item["host"])
            port = _as_int(1, 65535)(item["port"])
            version = _as_str(item.get("version", "2.3.1")).strip()
            if version not in OUTBOUND_VERSIONS:
                raise ValueError(
                    f"version must be one of {', '.join(OUTBOUND_VERSIONS)}, got {version!r}"
                )
            charset = _as_str(item.get("charset", "UNICODE UTF-8")).strip().upper()
            if charset not in OUTBOUND_CHARSETS:
                raise ValueError(
                    f"charset must be one of {', '.join(OUTBOUND_CHARSETS)}, got {charset!r}"
                )
            receiving = {
                key: _as_str(item.get(key, "")).strip()
                for key in ("receiving_application", "receiving_facility")
            }
            tls = {"tls": _as_bool(item.get("tls", False))} | {
                key: _as_str(item.get(key, "")).strip() for key in ("tls_ca", "tls_cert", "tls_key")
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


def _as_ae_title_list(value: Any) -> tuple[str, ...]:
    return tuple(_as_ae_title(title) for title in _as_str_list(value))


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


def _as_statuses(value: Any) -> tuple[str, ...]:
    statuses = tuple(s.strip().upper() for s in _as_str_list(value))
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


def _as_profiles(value: Any) -> tuple[dict[str, Any], ...]:
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
    if not isinstance(item, dict):
        raise ValueError(f"entry {index} must be a table with calling_ae")
    unknown = set(item) - set(_PROFILE_KEYS)
    if unknown:
        raise ValueError(f"entry {index} has unknown key {sorted(unknown)[0]!r}")
    try:
        pattern = _as_str(item["calling_ae"]).strip()
        if not pattern or len(pattern) > 64 or not pattern.isascii():
            raise ValueError(f"calling_ae must be a glob of AE titles, got {pattern!r}")
        profile: dict[str, Any] = {
            "calling_ae": pattern,
            "fill_station_ae": _as_bool(item.get("fill_station_ae", False)),
        }
        if "date_window_days" in item:
            profile["date_window_days"] = _as_int(0, 366)(item["date_window_days"])
        if "pn_case_insensitive" in item:
            profile["pn_case_insensitive"] = _as_bool(item["pn_case_insensitive"])
        if "charset" in item:
            charset = _as_str(item["charset"]).strip()
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


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its default, how to read it, and what it is for."""

    section: str
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_var(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database",
        "url",
        "sqlite:///var/mwlbroker.db",
        _as_database_url,
        "SQLAlchemy URL: sqlite:///PATH (embedded) or postgresql://USER@HOST/DB",
        secret=True,
    ),
    Setting(
        "database",
        "pool_size",
        10,
        _as_int(1, 200),
        "connections kept open per process (PostgreSQL)",
    ),
    Setting("hl7", "host", "127.0.0.1", _as_host, "address the MLLP listener binds to"),
    Setting("hl7", "port", 2575, _as_int(0, 65535), "MLLP listener port (0 picks a free one)"),
    Setting(
        "hl7",
        "max_connections",
        200,
        _as_int(1, 10000),
        "concurrent MLLP connections; more are closed at once",
    ),
    Setting(
        "hl7",
        "idle_timeout",
        300.0,
        _as_float(0.1, 86400),
        "seconds an MLLP connection may go without completing a message before it is closed",
    ),
    Setting(
        "hl7",
        "max_message_bytes",
        4 * 1024 * 1024,
        _as_int(1024, 1024**3),
        "largest accepted HL7 message; larger ones are answered AR and not buffered",
    ),
    Setting(
        "hl7",
        "accepted_versions",
        ("2.3", "2.3.1", "2.4", "2.5", "2.5.1"),
        _as_str_list,
        "HL7 versions (MSH-12) accepted; others are answered AR",
    ),
    Setting(
        "hl7",
        "default_charset",
        "8859/1",
        _one_of("ascii", "8859/1", "unicode utf-8"),
        "character set assumed when MSH-18 is empty and the bytes are not valid UTF-8",
    ),
    Setting(
        "hl7",
        "application",
        "MWLBROKER",
        _as_str,
        "our MSH-3 Sending Application in ACKs and outbound messages",
    ),
    Setting(
        "hl7", "facility", "", _as_str, "our MSH-4 Sending Facility in ACKs and outbound messages"
    ),
    Setting(
        "hl7",
        "tls_cert",
        "",
        _as_str,
        "certificate (PEM) the MLLP listener presents; set with tls_key to accept only TLS",
    ),
    Setting("hl7", "tls_key", "", _as_str, "private key (PEM) of hl7.tls_cert"),
    Setting(
        "hl7",
        "tls_ca",
        "",
        _as_str,
        "CA certificates (PEM) that sign the senders' client certificates; set: a sender "
        "without one is refused",
    ),
    Setting(
        "mappings",
        "dir",
        "",
        _as_str,
        "folder of mapping files (*.yaml); empty: the mappings that ship with the broker",
    ),
    Setting("dicom", "host", "127.0.0.1", _as_host, "address the DICOM listener binds to"),
    Setting("dicom", "port", 11112, _as_int(0, 65535), "DICOM listener port"),
    Setting("dicom", "ae_title", "MWLBROKER", _as_ae_title, "the broker's AE title"),
    Setting(
        "dicom",
        "max_associations",
        20,
        _as_int(1, 1000),
        "concurrent DICOM associations; more are rejected (transient, local limit exceeded)",
    ),
    Setting(
        "dicom",
        "acse_timeout",
        30.0,
        _as_float(0.1, 3600),
        "seconds to wait for association negotiation and release messages",
    ),
    Setting(
        "dicom",
        "dimse_timeout",
        30.0,
        _as_float(0.1, 3600),
        "seconds to wait for the next DIMSE message (a C-FIND request, a C-CANCEL)",
    ),
    Setting(
        "dicom",
        "network_timeout",
        60.0,
        _as_float(0.1, 86400),
        "seconds an association may stay silent before it is aborted",
    ),
    Setting(
        "dicom",
        "max_pdu",
        16382,
        _as_int(0, 2**32 - 1),
        "largest PDU the broker receives, in bytes (0: no limit)",
    ),
    Setting(
        "dicom",
        "allowed_calling_aets",
        (),
        _as_ae_title_list,
        "calling AE titles accepted; empty: any (others are rejected: calling AE not recognized)",
    ),
    Setting(
        "dicom",
        "require_called_aet",
        False,
        _as_bool,
        "reject associations whose called AE title is not dicom.ae_title",
    ),
    Setting(
        "dicom",
        "tls_cert",
        "",
        _as_str,
        "certificate (PEM) the DICOM listener presents; set with tls_key to accept only DICOM "
        "over TLS",
    ),
    Setting("dicom", "tls_key", "", _as_str, "private key (PEM) of dicom.tls_cert"),
    Setting(
        "dicom",
        "tls_ca",
        "",
        _as_str,
        "CA certificates (PEM) that sign the modalities' client certificates; set: a modality "
        "without one is refused",
    ),
    Setting(
        "dicom",
        "worklist_statuses",
        ("SCHEDULED",),
        _as_statuses,
        "step statuses the worklist serves",
    ),
    Setting(
        "dicom",
        "max_matches",
        1000,
        _as_int(1, 100000),
        "most items one worklist query may return; more is refused (out of resources)",
    ),
    Setting(
        "dicom",
        "pn_case_insensitive",
        False,
        _as_bool,
        "match Patient's Name insensitive to case and accents",
    ),
    Setting(
        "dicom",
        "query_log_days",
        30,
        _as_int(1, 36500),
        "days a worklist query stays in the query log",
    ),
    Setting(
        "dicom",
        "profiles",
        (),
        _as_profiles,
        "query profiles chosen by calling AE title: [[dicom.profiles]] tables with calling_ae "
        "and fill_station_ae, date_window_days, pn_case_insensitive, charset; "
        "in the environment a JSON list",
    ),
    Setting(
        "progress",
        "complete_on",
        "mpps",
        _one_of("mpps", "images", "both"),
        "what completes a step: its MPPS COMPLETED, its images received, or both",
    ),
    Setting(
        "progress",
        "images_quiet_seconds",
        60.0,
        _as_float(0, 86400),
        "a study's images count as received once none has arrived for this long (0: at the "
        "first), or as soon as every instance its completed MPPS lists is in",
    ),
    Setting(
        "storage",
        "keep_files",
        False,
        _as_bool,
        "keep each received instance as a file under storage.dir; false: index only",
    ),
    Setting(
        "storage",
        "dir",
        "var/instances",
        _as_str,
        "folder of kept instance files (STUDY/SERIES/SOP.dcm), also the spool of forwarding",
    ),
    Setting(
        "forward",
        "host",
        "",
        _as_str,
        "PACS to forward every received instance to (C-STORE); empty: no forwarding",
    ),
    Setting("forward", "port", 104, _as_int(1, 65535), "the PACS's DICOM port"),
    Setting("forward", "ae_title", "PACS", _as_ae_title, "the PACS's AE title (called AE)"),
    Setting(
        "forward",
        "calling_ae",
        "",
        lambda value: _as_ae_title(value) if value else "",
        "our AE title towards the PACS; empty: dicom.ae_title",
    ),
    Setting("forward", "tls", False, _as_bool, "forward to the PACS over TLS"),
    Setting(
        "forward",
        "tls_ca",
        "",
        _as_str,
        "CA certificates (PEM) the PACS's certificate is checked against; empty: the system's CAs",
    ),
    Setting(
        "forward",
        "tls_cert",
        "",
        _as_str,
        "our client certificate (PEM) for a PACS that asks for one; with forward.tls_key",
    ),
    Setting("forward", "tls_key", "", _as_str, "private key (PEM) of forward.tls_cert"),
    Setting(
        "forward",
        "coerce",
        True,
        _as_bool,
        "give a matched study's instances the patient and order attributes of the broker's "
        "record, the old values kept in the Original Attributes Sequence",
    ),
    Setting(
        "forward",
        "retry_seconds",
        5.0,
        _as_float(0.01, 3600),
        "first wait after a failed attempt; it doubles with each failure in a row",
    ),
    Setting(
        "forward",
        "retry_max_seconds",
        300.0,
        _as_float(0.01, 86400),
        "longest wait between attempts",
    ),
    Setting(
        "forward",
        "max_attempts",
        10,
        _as_int(1, 1000),
        "refusals by the PACS before an instance is marked failed; an unreachable PACS is "
        "retried without limit",
    ),
    Setting(
        "jobs",
        "lease_seconds",
        30.0,
        _as_float(2, 3600),
        "the node running the scheduled jobs holds a lease it renews every third of this; "
        "if it dies, another node takes over once the lease has run out",
    ),
    Setting(
        "jobs",
        "expire_steps",
        parse_schedule("every 15m"),
        _as_schedule,
        "when to expire scheduled steps whose start passed retention.expire_steps_hours ago",
    ),
    Setting(
        "jobs",
        "retention",
        parse_schedule("cron 30 2 * * *"),
        _as_schedule,
        "when to purge what is older than the retention.* ages",
    ),
    Setting(
        "jobs",
        "outbound_retry",
        parse_schedule("every 1h"),
        _as_schedule,
        "when to give outbound messages held as failed another round of attempts",
    ),
    Setting(
        "jobs",
        "duplicate_sweep",
        parse_schedule("cron 0 3 * * *"),
        _as_schedule,
        "when to look for likely duplicate patients (the reconciliation list)",
    ),
    Setting(
        "jobs",
        "health_check",
        parse_schedule("every 1m"),
        _as_schedule,
        "when to check the database and record the result",
    ),
    Setting(
        "retention",
        "expire_steps_hours",
        72,
        _as_int(0, 100000),
        "hours after its scheduled start that a step nobody performed leaves the worklist "
        "(status EXPIRED, kept in history); 0: never",
    ),
    Setting(
        "retention",
        "messages_days",
        365,
        _as_int(0, 100000),
        "days an inbound HL7 message is kept; 0: for ever",
    ),
    Setting(
        "retention",
        "outbound_days",
        90,
        _as_int(0, 100000),
        "days a delivered or failed outbound message is kept (pending ones always); 0: for ever",
    ),
    Setting(
        "retention",
        "mpps_days",
        365,
        _as_int(0, 100000),
        "days a finished MPPS is kept (in progress ones always); 0: for ever",
    ),
    Setting(
        "retention",
        "studies_days",
        365,
        _as_int(0, 100000),
        "days the record of a received study (and its kept files) is kept after its last "
        "instance; 0: for ever",
    ),
    Setting(
        "retention",
        "job_runs_days",
        30,
        _as_int(1, 100000),
        "days the record of a scheduled job's run is kept",
    ),
    Setting("web", "host", "127.0.0.1", _as_host, "address the web page and API bind to"),
    Setting("web", "port", 8080, _as_int(0, 65535), "HTTP port of the web page and API"),
    Setting(
        "web",
        "secret_key",
        "",
        _as_str,
        "key that signs session cookies; empty: generated once and kept in var/web-secret-key "
        "(set the same value on every node that shares a database)",
        secret=True,
    ),
    Setting(
        "web",
        "secure_cookies",
        False,
        _as_bool,
        "mark the session cookie Secure (sent over HTTPS only); set it behind a TLS proxy",
    ),
    Setting(
        "web",
        "proxy_hops",
        0,
        _as_int(0, 5),
        "reverse proxies in front of the web page (TLS terminators) whose X-Forwarded-For/-Proto/"
        "-Host headers are believed; 0: none, the headers are ignored",
    ),
    Setting(
        "log",
        "level",
        "info",
        _one_of("debug", "info", "warning", "error"),
        "least severe log level written",
    ),
    Setting(
        "log", "format", "text", _one_of("text", "json"), "text for people, json for log collectors"
    ),
    Setting(
        "outbound",
        "destinations",
        (),
        _as_destinations,
        "HL7 destinations of status messages (the RIS): [[outbound.destinations]] tables with "
        "name, host, port and optionally version, receiving_application, receiving_facility, "
        "charset; in the environment NAME=HOST:PORT[/VERSION],... or a JSON list",
    ),
    Setting(
        "outbound",
        "ack_timeout",
        30.0,
        _as_float(0.1, 3600),
        "seconds to wait for a destination's ACK before the attempt counts as failed",
    ),
    Setting(
        "outbound",
        "retry_seconds",
        5.0,
        _as_float(0.01, 3600),
        "first wait after a failed attempt; it doubles with each failure in a row",
    ),
    Setting(
        "outbound",
        "retry_max_seconds",
        300.0,
        _as_float(0.01, 86400),
        "longest wait between attempts",
    ),
    Setting(
        "outbound",
        "max_attempts",
        10,
        _as_int(1, 1000),
        "attempts a destination may refuse (AE/AR, no ACK) before the message is marked failed; "
        "an unreachable destination is retried without limit",
    ),
)

_BY_KEY = {setting.key: setting for setting in SETTINGS}


def mask_url(url: str) -> str:
    """Hide the password of a URL such as ``postgresql://user:secret@host/db``."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    # libpq also takes the password as a query parameter: ?password=...
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


@dataclass(frozen=True)
class Config:
    """The effective configuration: every setting resolved, with where each value came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with some settings replaced, keyed ``section.name`` (command-line flags, tests)."""
        values = dict(self.values)
        sources = dict(self.sources)
        for key, raw in overrides.items():
            setting = _BY_KEY.get(key)
            if setting is None:
                raise ConfigError(f"{key}: unknown setting")
            values[key] = _parse(setting, raw, "override")
            sources[key] = "override"
        return Config(values, sources)

    def display(self) -> list[tuple[str, str, str]]:
        """(key, value as shown, source) for every setting, secrets masked."""
        rows = []
        for setting in SETTINGS:
            value = self.values[setting.key]
            shown = _toml_value(value)
            if setting.secret:
                shown = mask_url(shown) if "://" in shown else ('"***"' if value else shown)
            rows.append((setting.key, shown, self.sources.get(setting.key, "default")))
        return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, Schedule):
        return _toml_value(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as error:
        where = f" (from {source})" if source != "default" else ""
        raise ConfigError(f"{setting.key}: {error}{where}") from None


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting from defaults, the TOML file and the environment."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(f"{ENV_PREFIX}CONFIG"):
        path = environ[f"{ENV_PREFIX}CONFIG"]
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = {}

    if path is not None:
        for key, raw in _read_toml(Path(path)).items():
            setting = _BY_KEY.get(key)
            if setting is None:
                raise ConfigError(f"{key}: unknown setting (in {path})")
            values[key] = _parse(setting, raw, str(path))
            sources[key] = str(path)

    known_env = {s.env_var: s for s in SETTINGS}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        setting = known_env.get(name)
        if setting is None:
            # A misspelt override would otherwise be ignored without a word.
            raise ConfigError(f"{name}: unknown setting in the environment")
        values[setting.key] = _parse(setting, raw, name)
        sources[setting.key] = name
    return Config(values, sources)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None

    flat: dict[str, Any] = {}
    for section, body in document.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a [{section}] table (in {path})")
        for name, raw in body.items():
            flat[f"{section}.{name}"] = raw
    return flat
