"""Translate the configuration into the typed options each part of the broker is handed.

The store and the services never read a :class:`~mwlbroker.config.Config` (an import contract
forbids it): each takes a small frozen options dataclass declared beside it, with defaults of its
own, so that a test or a tool can build one without a configuration file. This module, at the
composition root's layer, is the one place that knows which setting feeds which field.
"""

from __future__ import annotations

from pathlib import Path

from mwlbroker.config import Config
from mwlbroker.dicom.server import DicomOptions
from mwlbroker.domain.mpps import CompleteOn
from mwlbroker.domain.outbound import Destination
from mwlbroker.services.forward import ForwardOptions
from mwlbroker.services.maintenance import RetentionPolicy
from mwlbroker.services.outbound import OutboundOptions
from mwlbroker.services.progress import ProgressOptions
from mwlbroker.services.worklist_query import QueryProfile, WorklistQueryOptions


def outbound_options(config: Config) -> OutboundOptions:
    """The [outbound] destinations and retries, with our MSH-3/MSH-4 from [hl7]."""
    return OutboundOptions(
        destinations=tuple(Destination(**d) for d in config["outbound.destinations"]),
        application=config["hl7.application"],
        facility=config["hl7.facility"],
        ack_timeout=config["outbound.ack_timeout"],
        retry_seconds=config["outbound.retry_seconds"],
        retry_max_seconds=config["outbound.retry_max_seconds"],
        max_attempts=config["outbound.max_attempts"],
    )


def forward_options(config: Config) -> ForwardOptions:
    """The [forward] PACS and retries; our calling AE title defaults to dicom.ae_title."""
    return ForwardOptions(
        host=config["forward.host"],
        port=config["forward.port"],
        ae_title=config["forward.ae_title"],
        calling_ae=config["forward.calling_ae"] or config["dicom.ae_title"],
        coerce=config["forward.coerce"],
        retry_seconds=config["forward.retry_seconds"],
        retry_max_seconds=config["forward.retry_max_seconds"],
        max_attempts=config["forward.max_attempts"],
        timeout=config["dicom.dimse_timeout"],
        tls=config["forward.tls"],
        tls_ca=config["forward.tls_ca"],
        tls_cert=config["forward.tls_cert"],
        tls_key=config["forward.tls_key"],
    )


def retention_policy(config: Config) -> RetentionPolicy:
    """The [retention] ages, and how long the worklist query log is kept ([dicom])."""
    return RetentionPolicy(
        expire_steps_hours=config["retention.expire_steps_hours"],
        messages_days=config["retention.messages_days"],
        outbound_days=config["retention.outbound_days"],
        mpps_days=config["retention.mpps_days"],
        studies_days=config["retention.studies_days"],
        query_log_days=config["dicom.query_log_days"],
        job_runs_days=config["retention.job_runs_days"],
    )


def worklist_query_options(config: Config) -> WorklistQueryOptions:
    """The [dicom] settings that decide what a worklist query returns, profiles included."""
    return WorklistQueryOptions(
        statuses=tuple(config["dicom.worklist_statuses"]),
        max_matches=config["dicom.max_matches"],
        pn_case_insensitive=config["dicom.pn_case_insensitive"],
        profiles=tuple(QueryProfile.from_setting(p) for p in config["dicom.profiles"]),
        log_days=config["dicom.query_log_days"],
    )


def dicom_options(config: Config) -> DicomOptions:
    """The [dicom] settings of the listener itself: address, AE title, limits and timeouts."""
    return DicomOptions(
        host=config["dicom.host"],
        port=config["dicom.port"],
        ae_title=config["dicom.ae_title"],
        max_associations=config["dicom.max_associations"],
        acse_timeout=config["dicom.acse_timeout"],
        dimse_timeout=config["dicom.dimse_timeout"],
        network_timeout=config["dicom.network_timeout"],
        max_pdu=config["dicom.max_pdu"],
        allowed_calling_aets=tuple(config["dicom.allowed_calling_aets"]),
        require_called_aet=config["dicom.require_called_aet"],
    )


def progress_options(config: Config) -> ProgressOptions:
    """The settings exam progress (MPPS, C-STORE) takes: ``[progress]`` and ``[storage]``."""
    return ProgressOptions(
        complete_on=CompleteOn(config["progress.complete_on"]),
        images_quiet_seconds=config["progress.images_quiet_seconds"],
        storage_dir=Path(config["storage.dir"]),
        keep_files=config["storage.keep_files"],
    )
