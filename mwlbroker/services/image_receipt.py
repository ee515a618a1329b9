"""Image receipt: index each received instance, match its study to an order, settle studies.

Each instance is indexed (study, series, instance) and its file kept when asked, written and
synced before the index commits. Its study is matched to an order by Study Instance UID, else
by Accession Number with the Patient ID; a study that matches nothing waits for
reconciliation. A study's images count as received once it has been quiet for
``images_quiet_seconds``, and the steps follow by the completion rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mwlbroker.domain.images import MatchedBy, ReceivedInstance, StorageRefused, StorageStatus
from mwlbroker.services.follow_up import StepChange, StepFollowUp
from mwlbroker.services.worklist import Context, record
from mwlbroker.store import images as image_store
from mwlbroker.store import progress as store
from mwlbroker.store import worklist
from mwlbroker.store.db import Database, DuplicateKey, Session
from mwlbroker.store.files import InstanceFiles
from mwlbroker.store.images import InstanceRow, SeriesRow, StudyRow

log = logging.getLogger("mwlbroker.progress")

InstanceListener = Callable[[Context, StudyRow, InstanceRow], None]
"""Called inside the transaction with each instance stored (the forward queue)."""


@dataclass(frozen=True)
class ReceiptResult:
    """What became of a received instance: its study, whether it was new, the steps moved."""

    study_instance_uid: str
    order_id: int | None  # None: the study matches no order (yet)
    matched_by: str
    new_instance: bool
    changes: tuple[tuple[int, str, str], ...] = ()  # (step id, before, after)


@dataclass
class ImageReceiptService:
    """Applies received images to the image index and to the scheduled steps."""

    db: Database
    follow_up: StepFollowUp
    # A study's images count as received once it has been quiet this long (0: at once).
    images_quiet_seconds: float = 60.0
    files: InstanceFiles | None = None  # where instance files are kept; None: index only
    keep_files: bool = False
    instance_listeners: list[InstanceListener] = field(default_factory=list)
    # Called after a commit that moved a step or stored an instance for the listeners.
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def writes_files(self) -> bool:
        """Whether received instances are written to disk (kept, or spooled for forwarding)."""
        return self.files is not None and (self.keep_files or bool(self.instance_listeners))

    def receive_instance(
        self, instance: ReceivedInstance, data: bytes | None = None
    ) -> ReceiptResult:
        """Index a received instance (and keep its file), match its study, move its steps on.

        ``data`` is the instance in the DICOM file format, as received; it is written to disk
        (synced) before the index is committed when files are kept or forwarded. Raises
        :class:`StorageRefused` with the C-STORE status to answer.
        """
        relative: str | None = None
        temporary: Path | None = None
        files = self.files
        if files is not None and data is not None and self.writes_files:
            try:
                relative = files.relative_path(
                    instance.study_instance_uid,
                    instance.series_instance_uid,
                    instance.sop_instance_uid,
                )
            except ValueError as error:
                raise StorageRefused(StorageStatus.CANNOT_UNDERSTAND, str(error)) from None
            try:
                temporary = files.write_temporary(relative, data)
            except OSError as error:
                log.error("instance %s not written: %s", instance.sop_instance_uid, error)
                raise StorageRefused(
                    StorageStatus.OUT_OF_RESOURCES, f"cannot write the file: {error.strerror}"
                ) from None
        try:
            for attempt in range(1, 4):
                try:
                    with self.db.transaction() as session:
                        result = self._receive(session, instance, relative, len(data or b""))
                    break
                except DuplicateKey:
                    # Another association stored the same study or series a moment ago.
                    if attempt == 3:
                        raise
            if temporary is not None and relative is not None and files is not None:
                files.put_in_place(temporary, relative)
                temporary = None
        finally:
            if temporary is not None and files is not None:
                files.discard(temporary)
        if result.changes or self.instance_listeners:
            for callback in self.after_commit:
                callback()
        return result

    def _receive(
        self, session: Session, instance: ReceivedInstance, relative: str | None, size: int
    ) -> ReceiptResult:
        now = datetime.now(UTC)
        uid = instance.study_instance_uid
        ctx = Context(session, now, None, f"dicom {instance.calling_ae or '?'} c-store"[:200])
        study = image_store.find_study(session, uid, for_update=True)
        if study is None:
            study = StudyRow(
                study_instance_uid=uid,
                patient_id=instance.patient_id[:64],
                issuer=instance.issuer[:64],
                patient_name=instance.patient_name[:324],
                accession_number=instance.accession_number[:64],
                study_date=instance.study_date[:8],
                study_description=instance.study_description[:64],
                modalities="",
                matched_by="",
                series_count=0,
                instance_count=0,
                calling_ae=instance.calling_ae[:16],
                first_received_at=now,
                last_received_at=now,
            )
            worklist.add(session, study)
        series = image_store.find_series(session, instance.series_instance_uid)
        if series is None:
            series = SeriesRow(
                study_id=study.id,
                series_instance_uid=instance.series_instance_uid,
                modality=instance.modality[:16],
                series_number=instance.series_number[:12],
                series_description=instance.series_description[:64],
                instance_count=0,
                created_at=now,
            )
            worklist.add(session, series)
            study.series_count += 1
            modalities = [m for m in study.modalities.split("\\") if m]
            if instance.modality and instance.modality not in modalities:
                study.modalities = "\\".join([*modalities, instance.modality])[:64]
        elif series.study_id != study.id:
            raise StorageRefused(
                StorageStatus.CANNOT_UNDERSTAND,
                "Series Instance UID belongs to another study",
            )
        row = image_store.find_instance(session, instance.sop_instance_uid)
        new_instance = row is None
        if row is None:
            row = InstanceRow(
                series_id=series.id,
                study_id=study.id,
                sop_instance_uid=instance.sop_instance_uid,
                sop_class_uid=instance.sop_class_uid,
                transfer_syntax_uid=instance.transfer_syntax_uid,
                instance_number=instance.instance_number[:12],
                size=size,
                path=relative,
                calling_ae=instance.calling_ae[:16],
                received_count=1,
                received_at=now,
            )
            worklist.add(session, row)
            series.instance_count += 1
            study.instance_count += 1
        elif row.series_id != series.id:
            raise StorageRefused(
                StorageStatus.CANNOT_UNDERSTAND, "SOP Instance UID belongs to another series"
            )
        else:
            # Sent again (a modality resending a study): the index counts it once.
            row.received_count += 1
            row.received_at = now
            row.size = size or row.size
            row.path = relative or row.path
            row.transfer_syntax_uid = instance.transfer_syntax_uid or row.transfer_syntax_uid
        study.last_received_at = now
        if study.order_id is None:
            self._match(ctx, study, instance)
        changes: list[StepChange] = []
        if study.order_id is not None:
            if self.images_quiet_seconds <= 0 and study.images_received_at is None:
                study.images_received_at = now
            changes = self._follow_study(
                ctx,
                study,
                f"images: study {uid}, {study.instance_count} instance(s) from "
                f"{instance.calling_ae or '?'}",
                patient_id=instance.patient_id,
            )
        for listener in self.instance_listeners:
            listener(ctx, study, row)
        return ReceiptResult(
            study_instance_uid=uid,
            order_id=study.order_id,
            matched_by=study.matched_by,
            new_instance=new_instance,
            changes=tuple((c.step.id, c.before.value, c.after.value) for c in changes),
        )

    def _match(self, ctx: Context, study: StudyRow, instance: ReceivedInstance) -> None:
        """Match a study to its order: by Study Instance UID, else Accession Number + Patient ID."""
        session = ctx.session
        how = MatchedBy.STUDY_INSTANCE_UID
        steps = store.steps_referred_to(session, study_instance_uid=study.study_instance_uid)
        accession = study.accession_number or instance.accession_number
        patient_id = study.patient_id or instance.patient_id
        if not steps and accession and patient_id:
            how = MatchedBy.ACCESSION_NUMBER
            steps = store.steps_referred_to(
                session, accession_number=accession, patient_id=patient_id
            )
        if not steps:
            return
        study.order_id = steps[0].order_id
        study.matched_by = how.value
        if how is MatchedBy.ACCESSION_NUMBER:
            study.accession_number = accession[:64]
        order = worklist.get_order(session, study.order_id)
        assert order is not None
        record(
            ctx,
            order,
            "images",
            step=steps[0],
            detail=f"study {study.study_instance_uid} from {study.calling_ae or '?'} matched by "
            f"{'Study Instance UID' if how is MatchedBy.STUDY_INSTANCE_UID else 'Accession Number and Patient ID'}",
        )

    def settle_studies(self, now: datetime | None = None) -> int:
        """Count the images of studies quiet for ``images_quiet_seconds`` as received, and move
        their steps on; one transaction per study. Returns how many studies were settled."""
        now = now or datetime.now(UTC)
        before = now - timedelta(seconds=max(self.images_quiet_seconds, 0.0))
        with self.db.reading() as session:
            study_ids = list(image_store.studies_to_settle(session, before))
        moved = False
        for study_id in study_ids:
            with self.db.transaction() as session:
                study = image_store.get_study(session, study_id, for_update=True)
                if study is None or study.images_received_at is not None:
                    continue
                study.images_received_at = now
                ctx = Context(session, now, None, "broker: images quiet")
                changes = self._follow_study(
                    ctx,
                    study,
                    f"images: study {study.study_instance_uid} received, {study.instance_count} "
                    f"instance(s), none for {self.images_quiet_seconds:g} s",
                )
                moved = moved or bool(changes)
        if moved:
            for callback in self.after_commit:
                callback()
        return len(study_ids)

    def _follow_study(
        self, ctx: Context, study: StudyRow, said: str, *, patient_id: str = ""
    ) -> list[StepChange]:
        """Move the steps of a matched study on; an image that changes nothing writes no line."""
        steps = list(image_store.steps_of_study(ctx.session, study))
        return self.follow_up.follow(ctx, steps, "images", said, patient_id=patient_id, quiet=True)
