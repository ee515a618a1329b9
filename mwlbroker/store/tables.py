"""The database tables. Every schema change here comes with an Alembic migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from mwlbroker.domain.charsets import fold

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class MessageRow(Base):
    """One received HL7 message, kept byte for byte with what became of it."""

    __tablename__ = "message"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    peer: Mapped[str] = mapped_column(String(64), default="")
    sending_application: Mapped[str] = mapped_column(String(227), default="")  # MSH-3
    sending_facility: Mapped[str] = mapped_column(String(227), default="")  # MSH-4
    receiving_application: Mapped[str] = mapped_column(String(227), default="")  # MSH-5
    receiving_facility: Mapped[str] = mapped_column(String(227), default="")  # MSH-6
    message_type: Mapped[str] = mapped_column(String(3), default="")  # MSH-9.1
    trigger_event: Mapped[str] = mapped_column(String(3), default="")  # MSH-9.2
    control_id: Mapped[str | None] = mapped_column(String(199))  # MSH-10
    version: Mapped[str] = mapped_column(String(16), default="")  # MSH-12
    charset: Mapped[str] = mapped_column(String(32), default="")  # MSH-18
    # sender + MSH-10; NULL for messages that cannot be told apart (unreadable MSH, reused ID).
    dedup_key: Mapped[str | None] = mapped_column(String(700), unique=True)
    digest: Mapped[str] = mapped_column(String(64), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16))
    ack_code: Mapped[str] = mapped_column(String(2))
    error: Mapped[str | None] = mapped_column(Text)
    error_location: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    # What the broker changed in a message it accepted (values cut to fit their VR): a list of
    # {"text", "location", "code"}, sent again in the ACK of a resend; NULL when nothing was.
    warnings: Mapped[list | None] = mapped_column(JSON)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    last_duplicate_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An edited copy made in the web page points at the message it was made from; the original
    # is kept unchanged. No FK: messages are purged by retention.
    original_id: Mapped[int | None] = mapped_column(Id)
    # Enhanced mode: what became of the application acknowledgment (queued, or why not).
    application_ack: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_message_received_at", "received_at"),
        Index("ix_message_original_id", "original_id"),
        Index("ix_message_status_received_at", "status", "received_at"),
        Index("ix_message_control_id", "control_id"),
    )


class PatientRow(Base):
    """A patient as the RIS identifies them: Patient ID within an issuer."""

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64))  # (0010,0020) Patient ID | LO
    issuer: Mapped[str] = mapped_column(String(64), default="")  # (0010,0021) Issuer of Patient ID
    patient_name: Mapped[str] = mapped_column(String(324), default="")  # (0010,0010) | PN
    birth_date: Mapped[str] = mapped_column(String(64), default="")  # (0010,0030) | DA
    sex: Mapped[str] = mapped_column(String(64), default="")  # (0010,0040) | CS
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)  # every patient-level keyword
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("patient_id", "issuer", name="uq_patient_patient_id_issuer"),
        Index("ix_patient_patient_name", "patient_name"),
    )


class OrderRow(Base):
    """An imaging service request from the RIS (ORC), owning one or more procedure steps."""

    __tablename__ = "imaging_order"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    placer_order_number: Mapped[str | None] = mapped_column(String(199))  # ORC-2
    filler_order_number: Mapped[str | None] = mapped_column(String(199))  # ORC-3
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    profile: Mapped[str] = mapped_column(String(64), default="")
    order_control: Mapped[str] = mapped_column(String(2))  # last ORC-1 applied
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)  # request-level keywords
    created_message_id: Mapped[int | None] = mapped_column(
        Id
    )  # no FK: messages are purged by retention
    updated_message_id: Mapped[int | None] = mapped_column(
        Id
    )  # no FK: messages are purged by retention
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_imaging_order_placer_order_number", "placer_order_number"),
        Index("ix_imaging_order_filler_order_number", "filler_order_number"),
        Index("ix_imaging_order_patient_pk", "patient_pk"),
    )


class StepRow(Base):
    """A scheduled procedure step: one worklist item, with the dataset it answers C-FIND with.

    The columns copy what modalities query on, so each query is one indexed statement; the
    dataset (DICOM JSON) is the whole item, extra site attributes included.
    """

    __tablename__ = "procedure_step"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("imaging_order.id"))
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    patient_id: Mapped[str] = mapped_column(String(64))  # (0010,0020)
    issuer: Mapped[str] = mapped_column(String(64), default="")  # (0010,0021)
    patient_name: Mapped[str] = mapped_column(String(324), default="")  # (0010,0010)
    # The name without case and accents, kept by _fold_patient_name: PS3.4 C.2.2.2.1 lets
    # names match case- and accent-insensitively, and this column lets an index do it.
    patient_name_folded: Mapped[str] = mapped_column(String(324), default="", server_default="")
    accession_number: Mapped[str | None] = mapped_column(String(64))  # (0008,0050) | SH
    requested_procedure_id: Mapped[str | None] = mapped_column(String(64))  # (0040,1001) | SH
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))  # (0020,000D) | UI
    sps_id: Mapped[str | None] = mapped_column(String(64))  # (0040,0009) | SH
    modality: Mapped[str | None] = mapped_column(String(64))  # (0008,0060) | CS
    station_ae: Mapped[str | None] = mapped_column(String(64))  # (0040,0001) | AE
    station_name: Mapped[str | None] = mapped_column(String(64))  # (0040,0010) | SH
    # (0040,0002) + (0040,0003) as YYYYMMDDHHMMSS: ranges on date and time in one comparison.
    start_datetime: Mapped[str | None] = mapped_column(String(14))
    status: Mapped[str] = mapped_column(String(16))  # (0040,0020)
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)  # {"procedure": {}, "step": {}}
    dataset: Mapped[dict] = mapped_column(JSON, default=dict)  # the MWL item, DICOM JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_procedure_step_station_ae_start", "station_ae", "start_datetime"),
        Index("ix_procedure_step_modality_start", "modality", "start_datetime"),
        Index("ix_procedure_step_status_start", "status", "start_datetime"),
        Index("ix_procedure_step_accession_number", "accession_number"),
        Index("ix_procedure_step_patient_id", "patient_id"),
        # Pattern operators let PostgreSQL use the index for LIKE 'DOE%' in any collation.
        Index(
            "ix_procedure_step_patient_name",
            "patient_name",
            postgresql_ops={"patient_name": "varchar_pattern_ops"},
        ),
        Index(
            "ix_procedure_step_patient_name_folded",
            "patient_name_folded",
            postgresql_ops={"patient_name_folded": "varchar_pattern_ops"},
        ),
        Index("ix_procedure_step_study_instance_uid", "study_instance_uid"),
        Index("ix_procedure_step_order_id", "order_id"),
        Index("ix_procedure_step_patient_pk", "patient_pk"),
    )

    @validates("patient_name")
    def _fold_patient_name(self, _key: str, value: str | None) -> str | None:
        self.patient_name_folded = fold(value or "")[:324]
        return value


class QueryLogRow(Base):
    """One Modality Worklist query: who asked, what, what it became, and what came back.

    Enough to explain later why an item was or was not returned: the keys as the modality gave
    them, the conditions actually applied (profile additions included), and the steps returned.
    """

    __tablename__ = "query_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # when the request arrived
    calling_ae: Mapped[str] = mapped_column(String(16))
    called_ae: Mapped[str] = mapped_column(String(16), default="")
    peer: Mapped[str] = mapped_column(String(64), default="")  # address:port
    profile: Mapped[str] = mapped_column(String(64), default="")  # calling_ae glob of the profile
    identifier: Mapped[dict] = mapped_column(JSON, default=dict)  # the keys as given (DICOM JSON)
    conditions: Mapped[list] = mapped_column(JSON, default=list)  # what decided a match
    notes: Mapped[list] = mapped_column(JSON, default=list)  # what the broker added, and why
    status: Mapped[int] = mapped_column(Integer)  # final C-FIND status
    error: Mapped[str | None] = mapped_column(Text)  # error comment of a failure
    candidates: Mapped[int] = mapped_column(Integer, default=0)  # rows the SQL statement gave
    matches: Mapped[int] = mapped_column(Integer, default=0)
    returned: Mapped[int] = mapped_column(Integer, default=0)  # pending responses sent
    step_ids: Mapped[list] = mapped_column(JSON, default=list)  # the matching steps, in order
    milliseconds: Mapped[float] = mapped_column(Float, default=0.0)  # request to final status
    first_response_ms: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_query_log_at", "at"),
        Index("ix_query_log_calling_ae_at", "calling_ae", "at"),
    )


class OrderEventRow(Base):
    """One line of an order's history: which message did what to which step."""

    __tablename__ = "order_event"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("imaging_order.id"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("procedure_step.id"))
    message_id: Mapped[int | None] = mapped_column(Id)  # no FK: messages are purged by retention
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[str] = mapped_column(String(32))
    status_before: Mapped[str | None] = mapped_column(String(16))
    status_after: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_order_event_order_id", "order_id"),)


class AuditRow(Base):
    """Who changed a patient, when, and what it was before. Never purged."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(Id)
    message_id: Mapped[int | None] = mapped_column(Id)  # no FK: messages are purged by retention
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)


class PerformedStepRow(Base):
    """A Modality Performed Procedure Step (PS3.4 Annex F) as the modality reported it.

    The columns copy what people look for; the data set (DICOM JSON) is the whole MPPS, every
    N-SET applied. ``scheduled`` is false for a step that matched no scheduled step (the IHE
    unscheduled case, or an order the broker never had): it waits for reconciliation.
    """

    __tablename__ = "performed_step"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)  # (0000,1000) | UI
    status: Mapped[str] = mapped_column(String(16))  # (0040,0252) PPS Status | CS
    pps_id: Mapped[str] = mapped_column(String(64), default="")  # (0040,0253) PPS ID | SH
    station_ae: Mapped[str] = mapped_column(String(16), default="")  # (0040,0241) | AE
    calling_ae: Mapped[str] = mapped_column(String(16), default="")  # association's caller
    modality: Mapped[str] = mapped_column(String(16), default="")  # (0008,0060) | CS
    patient_id: Mapped[str] = mapped_column(String(64), default="")  # (0010,0020) | LO
    patient_name: Mapped[str] = mapped_column(String(324), default="")  # (0010,0010) | PN
    # First item of (0040,0270) Scheduled Step Attributes Sequence.
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")  # (0020,000D)
    accession_number: Mapped[str] = mapped_column(String(64), default="")  # (0008,0050)
    start_datetime: Mapped[str | None] = mapped_column(String(14))  # (0040,0244) + (0040,0245)
    end_datetime: Mapped[str | None] = mapped_column(String(14))  # (0040,0250) + (0040,0251)
    scheduled: Mapped[bool] = mapped_column(default=True)  # linked to at least one step
    dataset: Mapped[dict] = mapped_column(JSON, default=dict)  # the MPPS, DICOM JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_performed_step_study_instance_uid", "study_instance_uid"),
        Index("ix_performed_step_scheduled_created_at", "scheduled", "created_at"),
    )


class PerformedStepLinkRow(Base):
    """Which scheduled step a performed step performed (several in the IHE group case)."""

    __tablename__ = "performed_step_link"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    performed_step_id: Mapped[int] = mapped_column(ForeignKey("performed_step.id"))
    step_id: Mapped[int] = mapped_column(ForeignKey("procedure_step.id"))

    __table_args__ = (
        UniqueConstraint(
            "performed_step_id", "step_id", name="uq_performed_step_link_performed_step_id_step_id"
        ),
        Index("ix_performed_step_link_step_id", "step_id"),
    )


class OutboundRow(Base):
    """One HL7 message for a destination (the RIS), kept until it is acknowledged, and after.

    Written in the transaction that made the change it reports; a sender per destination
    delivers the messages of each order in id order and records every attempt.
    """

    __tablename__ = "outbound_message"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(64))  # [[outbound.destinations]] name
    # None for a patient-level message (ADT^A40 after a merge made here).
    order_id: Mapped[int | None] = mapped_column(ForeignKey("imaging_order.id"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("procedure_step.id"))
    message_type: Mapped[str] = mapped_column(String(16))  # MSH-9, e.g. ORM^O01
    order_status: Mapped[str] = mapped_column(String(2))  # ORC-5: IP, CM, DC
    control_id: Mapped[str] = mapped_column(String(20))  # MSH-10
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the message as sent, CR-separated
    status: Mapped[str] = mapped_column(String(16))  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the sender may next try: after a back-off, or when a claim by a sender lapses.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    ack_code: Mapped[str | None] = mapped_column(String(2))  # MSA-1 of the last answer
    ack: Mapped[str | None] = mapped_column(Text)  # the last answer
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_outbound_message_destination_status", "destination", "status", "id"),
        Index("ix_outbound_message_order_id", "order_id"),
    )


class StudyRow(Base):
    """A study received over C-STORE, matched to its order or kept as unmatched."""

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)  # (0020,000D)
    patient_id: Mapped[str] = mapped_column(String(64), default="")  # (0010,0020) | LO
    issuer: Mapped[str] = mapped_column(String(64), default="")  # (0010,0021) | LO
    patient_name: Mapped[str] = mapped_column(String(324), default="")  # (0010,0010) | PN
    accession_number: Mapped[str] = mapped_column(String(64), default="")  # (0008,0050) | SH
    study_date: Mapped[str] = mapped_column(String(8), default="")  # (0008,0020) | DA
    study_description: Mapped[str] = mapped_column(String(64), default="")  # (0008,1030) | LO
    modalities: Mapped[str] = mapped_column(String(64), default="")  # (0008,0061), from series
    order_id: Mapped[int | None] = mapped_column(ForeignKey("imaging_order.id"))
    matched_by: Mapped[str] = mapped_column(
        String(16), default=""
    )  # "study uid", "accession", "manual"
    # The scheduled step staff linked the study to (matched_by "manual"); None otherwise.
    step_id: Mapped[int | None] = mapped_column(ForeignKey("procedure_step.id"))
    series_count: Mapped[int] = mapped_column(Integer, default=0)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    calling_ae: Mapped[str] = mapped_column(String(16), default="")  # sender of the first one
    first_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When its images counted as received: every listed instance in, or quiet long enough.
    images_received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_study_order_id", "order_id"),
        Index("ix_study_accession_number", "accession_number"),
        Index(
            "ix_study_images_received_at_last_received_at", "images_received_at", "last_received_at"
        ),
    )


class SeriesRow(Base):
    """A series of a received study."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)  # (0020,000E)
    modality: Mapped[str] = mapped_column(String(16), default="")  # (0008,0060) | CS
    series_number: Mapped[str] = mapped_column(String(12), default="")  # (0020,0011) | IS
    series_description: Mapped[str] = mapped_column(String(64), default="")  # (0008,103E)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_series_study_id", "study_id"),)


class InstanceRow(Base):
    """One received SOP instance: where it is kept (if it is) and how often it came."""

    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"))
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)  # (0008,0018) | UI
    sop_class_uid: Mapped[str] = mapped_column(String(64))  # (0008,0016) | UI
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64), default="")  # (0002,0010)
    instance_number: Mapped[str] = mapped_column(String(12), default="")  # (0020,0013) | IS
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes as received
    path: Mapped[str | None] = mapped_column(String(400))  # under storage.dir; None: index only
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    received_count: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_instance_series_id", "series_id"),
        Index("ix_instance_study_id", "study_id"),
    )


class ForwardRow(Base):
    """A received instance to forward to the PACS, and what became of each attempt."""

    __tablename__ = "forward_task"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"))
    status: Mapped[str] = mapped_column(String(16))  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)  # the PACS's status, what was coerced
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_forward_task_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_forward_task_instance_id", "instance_id"),
    )


class JobRunRow(Base):
    """One run of a scheduled job: where, when, how long, and what it did or why it failed."""

    __tablename__ = "job_run"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(200))  # host:pid of the process that ran it
    trigger: Mapped[str] = mapped_column(String(16))  # "schedule" or "manual"
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    milliseconds: Mapped[float] = mapped_column(Float, default=0.0)
    ok: Mapped[bool | None] = mapped_column()  # None while it runs
    result: Mapped[str] = mapped_column(Text, default="")  # what it did, or the error

    __table_args__ = (Index("ix_job_run_job_started_at", "job", "started_at"),)


class LeaseRow(Base):
    """Who runs the scheduled jobs: one row, held by one node and renewed while it lives.

    A lease row rather than a database lock works the same on SQLite and PostgreSQL, and it
    shows on the dashboard who holds it and until when.
    """

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    acquired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserRow(Base):
    """A person who may use the web page and API: viewers read, admins act."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin, viewer
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string
    # Changes when the password does: sessions made before it stop being valid.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiTokenRow(Base):
    """An API token of a user, kept only as a hash; the prefix finds it without a scan."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_api_token_user_id", "user_id"),)


class LoginFailureRow(Base):
    """A failed login, by user name and address: what login throttling counts.

    In the database rather than in memory, so that several broker nodes count together.
    """

    __tablename__ = "login_failure"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_login_failure_name_address_at", "name", "address", "at"),)


class PatientMergeRow(Base):
    """One merge of a patient into another, with the snapshot that lets it be undone.

    ``snapshot`` holds where every moved order and step was, the performed steps and studies
    linked to them, and both patients as they were: undo puts each back, or refuses when what
    it would put back has changed since.
    """

    __tablename__ = "patient_merge"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))  # merged away
    survivor_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(16))  # "staff", or "hl7" for an ADT^A40
    message_id: Mapped[int | None] = mapped_column(Id)  # the A40; no FK: retention purges
    snapshot: Mapped[dict] = mapped_column(JSON, default=dict)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_patient_merge_source_pk", "source_pk"),
        Index("ix_patient_merge_survivor_pk", "survivor_pk"),
    )


class DuplicateCandidateRow(Base):
    """A pair of patients the last sweep found likely to be one person (lower pk first).

    Filled by the duplicate sweep so the reconciliation page reads a short table, not 100,000
    patients.
    """

    __tablename__ = "duplicate_candidate"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    other_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    score: Mapped[float] = mapped_column(Float)  # 0..100
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint(
            "patient_pk", "other_pk", name="uq_duplicate_candidate_patient_pk_other_pk"
        ),
        Index("ix_duplicate_candidate_score", "score"),
    )


class DuplicateDismissalRow(Base):
    """Staff said these two patients are not the same person: the sweep leaves them be."""

    __tablename__ = "duplicate_dismissal"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))  # the lower pk
    other_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        UniqueConstraint(
            "patient_pk", "other_pk", name="uq_duplicate_dismissal_patient_pk_other_pk"
        ),
    )
