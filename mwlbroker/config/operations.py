"""The settings of what the broker does and how it is run: [progress], [storage], [forward],
[jobs], [retention], [web], [log], [outbound]."""

from __future__ import annotations

from mwlbroker.config.parsers import (
    as_ae_title,
    as_bool,
    as_destinations,
    as_float,
    as_host,
    as_int,
    as_schedule,
    as_str,
    one_of,
)
from mwlbroker.config.setting import Setting
from mwlbroker.domain.schedule import parse_schedule

OPERATION_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "progress",
        "complete_on",
        "mpps",
        one_of("mpps", "images", "both"),
        "what completes a step: its MPPS COMPLETED, its images received, or both",
    ),
    Setting(
        "progress",
        "images_quiet_seconds",
        60.0,
        as_float(0, 86400),
        "a study's images count as received once none has arrived for this long (0: at the "
        "first), or as soon as every instance its completed MPPS lists is in",
    ),
    Setting(
        "storage",
        "keep_files",
        False,
        as_bool,
        "keep each received instance as a file under storage.dir; false: index only",
    ),
    Setting(
        "storage",
        "dir",
        "var/instances",
        as_str,
        "folder of kept instance files (STUDY/SERIES/SOP.dcm), also the spool of forwarding",
    ),
    Setting(
        "forward",
        "host",
        "",
        as_str,
        "PACS to forward every received instance to (C-STORE); empty: no forwarding",
    ),
    Setting("forward", "port", 104, as_int(1, 65535), "the PACS's DICOM port"),
    Setting("forward", "ae_title", "PACS", as_ae_title, "the PACS's AE title (called AE)"),
    Setting(
        "forward",
        "calling_ae",
        "",
        lambda value: as_ae_title(value) if value else "",
        "our AE title towards the PACS; empty: dicom.ae_title",
    ),
    Setting("forward", "tls", False, as_bool, "forward to the PACS over TLS"),
    Setting(
        "forward",
        "tls_ca",
        "",
        as_str,
        "CA certificates (PEM) the PACS's certificate is checked against; empty: the system's CAs",
    ),
    Setting(
        "forward",
        "tls_cert",
        "",
        as_str,
        "our client certificate (PEM) for a PACS that asks for one; with forward.tls_key",
    ),
    Setting("forward", "tls_key", "", as_str, "private key (PEM) of forward.tls_cert"),
    Setting(
        "forward",
        "coerce",
        True,
        as_bool,
        "give a matched study's instances the patient and order attributes of the broker's "
        "record, the old values kept in the Original Attributes Sequence",
    ),
    Setting(
        "forward",
        "retry_seconds",
        5.0,
        as_float(0.01, 3600),
        "first wait after a failed attempt; it doubles with each failure in a row",
    ),
    Setting(
        "forward",
        "retry_max_seconds",
        300.0,
        as_float(0.01, 86400),
        "longest wait between attempts",
    ),
    Setting(
        "forward",
        "max_attempts",
        10,
        as_int(1, 1000),
        "refusals by the PACS before an instance is marked failed; an unreachable PACS is "
        "retried without limit",
    ),
    Setting(
        "jobs",
        "lease_seconds",
        30.0,
        as_float(2, 3600),
        "the node running the scheduled jobs holds a lease it renews every third of this; "
        "if it dies, another node takes over once the lease has run out",
    ),
    Setting(
        "jobs",
        "expire_steps",
        parse_schedule("every 15m"),
        as_schedule,
        "when to expire scheduled steps whose start passed retention.expire_steps_hours ago",
    ),
    Setting(
        "jobs",
        "retention",
        parse_schedule("cron 30 2 * * *"),
        as_schedule,
        "when to purge what is older than the retention.* ages",
    ),
    Setting(
        "jobs",
        "outbound_retry",
        parse_schedule("every 1h"),
        as_schedule,
        "when to give outbound messages held as failed another round of attempts",
    ),
    Setting(
        "jobs",
        "duplicate_sweep",
        parse_schedule("cron 0 3 * * *"),
        as_schedule,
        "when to look for likely duplicate patients (the reconciliation list)",
    ),
    Setting(
        "jobs",
        "health_check",
        parse_schedule("every 1m"),
        as_schedule,
        "when to check the database and record the result",
    ),
    Setting(
        "retention",
        "expire_steps_hours",
        72,
        as_int(0, 100000),
        "hours after its scheduled start that a step nobody performed leaves the worklist "
        "(status EXPIRED, kept in history); 0: never",
    ),
    Setting(
        "retention",
        "messages_days",
        365,
        as_int(0, 100000),
        "days an inbound HL7 message is kept; 0: for ever",
    ),
    Setting(
        "retention",
        "outbound_days",
        90,
        as_int(0, 100000),
        "days a delivered or failed outbound message is kept (pending ones always); 0: for ever",
    ),
    Setting(
        "retention",
        "mpps_days",
        365,
        as_int(0, 100000),
        "days a finished MPPS is kept (in progress ones always); 0: for ever",
    ),
    Setting(
        "retention",
        "studies_days",
        365,
        as_int(0, 100000),
        "days the record of a received study (and its kept files) is kept after its last "
        "instance; 0: for ever",
    ),
    Setting(
        "retention",
        "job_runs_days",
        30,
        as_int(1, 100000),
        "days the record of a scheduled job's run is kept",
    ),
    Setting("web", "host", "127.0.0.1", as_host, "address the web page and API bind to"),
    Setting("web", "port", 8080, as_int(0, 65535), "HTTP port of the web page and API"),
    Setting(
        "web",
        "secret_key",
        "",
        as_str,
        "key that signs session cookies; empty: generated once and kept in var/web-secret-key "
        "(set the same value on every node that shares a database)",
        secret=True,
    ),
    Setting(
        "web",
        "secure_cookies",
        False,
        as_bool,
        "mark the session cookie Secure (sent over HTTPS only); set it behind a TLS proxy",
    ),
    Setting(
        "web",
        "proxy_hops",
        0,
        as_int(0, 5),
        "reverse proxies in front of the web page (TLS terminators) whose X-Forwarded-For/-Proto/"
        "-Host headers are believed; 0: none, the headers are ignored",
    ),
    Setting(
        "log",
        "level",
        "info",
        one_of("debug", "info", "warning", "error"),
        "least severe log level written",
    ),
    Setting(
        "log", "format", "text", one_of("text", "json"), "text for people, json for log collectors"
    ),
    Setting(
        "outbound",
        "destinations",
        (),
        as_destinations,
        "HL7 destinations of status messages (the RIS): [[outbound.destinations]] tables with "
        "name, host, port and optionally version, receiving_application, receiving_facility, "
        "charset; in the environment NAME=HOST:PORT[/VERSION],... or a JSON list",
    ),
    Setting(
        "outbound",
        "ack_timeout",
        30.0,
        as_float(0.1, 3600),
        "seconds to wait for a destination's ACK before the attempt counts as failed",
    ),
    Setting(
        "outbound",
        "retry_seconds",
        5.0,
        as_float(0.01, 3600),
        "first wait after a failed attempt; it doubles with each failure in a row",
    ),
    Setting(
        "outbound",
        "retry_max_seconds",
        300.0,
        as_float(0.01, 86400),
        "longest wait between attempts",
    ),
    Setting(
        "outbound",
        "max_attempts",
        10,
        as_int(1, 1000),
        "attempts a destination may refuse (AE/AR, no ACK) before the message is marked failed; "
        "an unreachable destination is retried without limit",
    ),
)
