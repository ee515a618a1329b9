"""The settings of what the broker keeps and listens on: [database], [hl7], [mappings], [dicom]."""

from __future__ import annotations

from mwlbroker.config.parsers import (
    as_ae_title,
    as_ae_title_list,
    as_bool,
    as_database_url,
    as_float,
    as_host,
    as_int,
    as_profiles,
    as_statuses,
    as_str,
    as_str_list,
    one_of,
)
from mwlbroker.config.setting import Setting
from mwlbroker.hl7v2.versions import ACCEPTED_VERSIONS

LISTENER_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database",
        "url",
        "sqlite:///var/mwlbroker.db",
        as_database_url,
        "SQLAlchemy URL: sqlite:///PATH (embedded) or postgresql://USER@HOST/DB",
        secret=True,
    ),
    Setting(
        "database",
        "pool_size",
        10,
        as_int(1, 200),
        "connections kept open per process (PostgreSQL)",
    ),
    Setting("hl7", "host", "127.0.0.1", as_host, "address the MLLP listener binds to"),
    Setting("hl7", "port", 2575, as_int(0, 65535), "MLLP listener port (0 picks a free one)"),
    Setting(
        "hl7",
        "max_connections",
        200,
        as_int(1, 10000),
        "concurrent MLLP connections; more are closed at once",
    ),
    Setting(
        "hl7",
        "idle_timeout",
        300.0,
        as_float(0.1, 86400),
        "seconds an MLLP connection may go without completing a message before it is closed",
    ),
    Setting(
        "hl7",
        "max_message_bytes",
        4 * 1024 * 1024,
        as_int(1024, 1024**3),
        "largest accepted HL7 message; larger ones are answered AR and not buffered",
    ),
    Setting(
        "hl7",
        "accepted_versions",
        ACCEPTED_VERSIONS,
        as_str_list,
        "HL7 versions (MSH-12) accepted (by default every version from 2.3 to 2.8.2); a "
        "message in another version is answered AR, error code 203",
    ),
    Setting(
        "hl7",
        "default_charset",
        "8859/1",
        one_of("ascii", "8859/1", "unicode utf-8"),
        "character set assumed when MSH-18 is empty and the bytes are not valid UTF-8",
    ),
    Setting(
        "hl7",
        "application",
        "MWLBROKER",
        as_str,
        "our MSH-3 Sending Application in ACKs and outbound messages",
    ),
    Setting(
        "hl7", "facility", "", as_str, "our MSH-4 Sending Facility in ACKs and outbound messages"
    ),
    Setting(
        "hl7",
        "tls_cert",
        "",
        as_str,
        "certificate (PEM) the MLLP listener presents; set with tls_key to accept only TLS",
    ),
    Setting("hl7", "tls_key", "", as_str, "private key (PEM) of hl7.tls_cert"),
    Setting(
        "hl7",
        "tls_ca",
        "",
        as_str,
        "CA certificates (PEM) that sign the senders' client certificates; set: a sender "
        "without one is refused",
    ),
    Setting(
        "mappings",
        "dir",
        "",
        as_str,
        "folder of mapping files (*.yaml); empty: the mappings that ship with the broker",
    ),
    Setting("dicom", "host", "127.0.0.1", as_host, "address the DICOM listener binds to"),
    Setting("dicom", "port", 11112, as_int(0, 65535), "DICOM listener port"),
    Setting("dicom", "ae_title", "MWLBROKER", as_ae_title, "the broker's AE title"),
    Setting(
        "dicom",
        "max_associations",
        20,
        as_int(1, 1000),
        "concurrent DICOM associations; more are rejected (transient, local limit exceeded)",
    ),
    Setting(
        "dicom",
        "acse_timeout",
        30.0,
        as_float(0.1, 3600),
        "seconds to wait for association negotiation and release messages",
    ),
    Setting(
        "dicom",
        "dimse_timeout",
        30.0,
        as_float(0.1, 3600),
        "seconds to wait for the next DIMSE message (a C-FIND request, a C-CANCEL)",
    ),
    Setting(
        "dicom",
        "network_timeout",
        60.0,
        as_float(0.1, 86400),
        "seconds an association may stay silent before it is aborted",
    ),
    Setting(
        "dicom",
        "max_pdu",
        16382,
        as_int(0, 2**32 - 1),
        "largest PDU the broker receives, in bytes (0: no limit)",
    ),
    Setting(
        "dicom",
        "allowed_calling_aets",
        (),
        as_ae_title_list,
        "calling AE titles accepted; empty: any (others are rejected: calling AE not recognized)",
    ),
    Setting(
        "dicom",
        "require_called_aet",
        False,
        as_bool,
        "reject associations whose called AE title is not dicom.ae_title",
    ),
    Setting(
        "dicom",
        "tls_cert",
        "",
        as_str,
        "certificate (PEM) the DICOM listener presents; set with tls_key to accept only DICOM "
        "over TLS",
    ),
    Setting("dicom", "tls_key", "", as_str, "private key (PEM) of dicom.tls_cert"),
    Setting(
        "dicom",
        "tls_ca",
        "",
        as_str,
        "CA certificates (PEM) that sign the modalities' client certificates; set: a modality "
        "without one is refused",
    ),
    Setting(
        "dicom",
        "worklist_statuses",
        ("SCHEDULED",),
        as_statuses,
        "step statuses the worklist serves",
    ),
    Setting(
        "dicom",
        "max_matches",
        1000,
        as_int(1, 100000),
        "most items one worklist query may return; more is refused (out of resources)",
    ),
    Setting(
        "dicom",
        "pn_case_insensitive",
        False,
        as_bool,
        "match Patient's Name insensitive to case and accents",
    ),
    Setting(
        "dicom",
        "query_log_days",
        30,
        as_int(1, 36500),
        "days a worklist query stays in the query log",
    ),
    Setting(
        "dicom",
        "profiles",
        (),
        as_profiles,
        "query profiles chosen by calling AE title: [[dicom.profiles]] tables with calling_ae "
        "and fill_station_ae, date_window_days, pn_case_insensitive, charset; "
        "in the environment a JSON list",
    ),
)
