"""Follow an exam as it is performed: MPPS and received images move the scheduled step on.

MPPS N-CREATE stores the performed step IN PROGRESS and links it, through its Scheduled Step
Attributes Sequence, to the scheduled steps it performs; those become STARTED and leave the
worklist. N-SET ends it COMPLETED or DISCONTINUED. Each received image is indexed (study,
series, instance) and its study matched to an order by Study Instance UID, else by Accession
Number with the Patient ID. The steps follow by the completion rule (``[progress]
complete_on``: MPPS COMPLETED, images received, or both). What matches nothing is kept:
unscheduled performed steps and unmatched studies wait for reconciliation.

Each use case is one transaction: the performed step or the image index, the scheduled steps,
their history and the status messages for the RIS commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mwlbroker.config import Config
from mwlbroker.domain import mpps
from mwlbroker.domain.images import MatchedBy, ReceivedInstance, StorageRefused, StorageStatus
from mwlbroker.domain.mpps import CompleteOn, Images, MPPSRefused, NStatus, PerformedStatus
from mwlbroker.domain.worklist import StepStatus
from mwlbroker.services.step_status import move_step
from mwlbroker.services.worklist import Context, record
from mwlbroker.store import images as image_store
from mwlbroker.store import progress as store
from mwlbroker.store import worklist
from mwlbroker.store.db import Database, DuplicateKey
from mwlbroker.store.files import InstanceFiles
from mwlbroker.store.images import InstanceRow, SeriesRow, StudyRow
from mwlbroker.store.progress import PerformedStepRow
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow

log = logging.getLogger("mwlbroker.progress")


@dataclass(frozen=True)
class StepChange:
    """A scheduled step whose status changed, for what is told to the RIS."""

    order: OrderRow
    step: StepRow
    patient: PatientRow
    before: StepStatus
    after: StepStatus
    started: str | None = None  # when the exam began, YYYYMMDDHHMMSS
    ended: str | None = None  # when it ended


StatusListener = Callable[[Context, Sequence[StepChange]], None]
"""Called inside the transaction with the steps whose status changed (the outbound queue)."""

InstanceListener = Callable[[Context, StudyRow, InstanceRow], None]
"""Called inside the transaction with each instance stored (the forward queue)."""


@dataclass(frozen=True)
class PerformedResult:
    """What became of an N-CREATE or N-SET: the performed step and the scheduled steps moved."""

    sop_instance_uid: str
    status: PerformedStatus
    scheduled: bool  # linked to at least one scheduled step
    step_ids: tuple[int, ...] = ()
    changes: tuple[tuple[int, str, str], ...] = ()  # (step id, before, after)


@dataclass(frozen=True)
class ReceiptResult:
    """What became of a received instance: its study, whether it was new, the steps moved."""

    study_instance_uid: str
    order_id: int | None  # None: the study matches no order (yet)
    matched_by: str
    new_instance: bool
    changes: tuple[tuple[int, str, str], ...] = ()  # (step id, before, after)


@dataclass
class ProgressService:
    """Applies MPPS N-CREATE and N-SET and received images to the scheduled steps."""

    db: Database
    complete_on: CompleteOn = CompleteOn.MPPS
    # A study's images count as received once it has been quiet this long (0: at once).
    images_quiet_seconds: float = 60.0
    files: InstanceFiles | None = None  # where instance files are kept; None: index only
    keep_files: bool = False
    listeners: list[StatusListener] = field(default_factory=list)
    instance_listeners: list[InstanceListener] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config, db: Database) -> ProgressService:
        return cls(
            db,
            complete_on=CompleteOn(config["progress.complete_on"]),
            images_quiet_seconds=config["progress.images_quiet_seconds"],
            files=InstanceFiles(Path(config["storage.dir"])),
            keep_files=config["storage.keep_files"],
        )

    @property
    def writes_files(self) -> bool:
        """Whether received instances are written to disk (kept, or spooled for forwarding)."""
        return self.files is not None and (self.keep_files or bool(self.instance_listeners))

    # -- N-CREATE ---------------------------------------------------------------------------------

    def create_performed_step(
        self, sop_instance_uid: str, dataset: dict[str, Any], *, calling_ae: str = ""
    ) -> PerformedResult:
        """Store a new performed step IN PROGRESS and start the steps it refers to.

        Raises :class:`MPPSRefused` with the status to answer when the request is not
        acceptable (PS3.4 F.7.2.1), a duplicate SOP Instance UID included.
        """
        mpps.check_create(sop_instance_uid, dataset)
        try:
            with self.db.transaction() as session:
                result = self._create(session, sop_instance_uid, dataset, calling_ae)
        except DuplicateKey:
            # Another association created the same instance a moment ago.
            raise _duplicate(sop_instance_uid) from None
        self._committed(result, "created", calling_ae)
        return result

    def _create(
        self, session: Any, uid: str, dataset: dict[str, Any], calling_ae: str
    ) -> PerformedResult:
        if store.find_performed_step(session, uid) is not None:
            raise _duplicate(uid)
        now = datetime.now(UTC)
        references = mpps.step_references(dataset)
        first = references[0] if references else mpps.StepReference("")
        row = PerformedStepRow(
            sop_instance_uid=uid,
            status=PerformedStatus.IN_PROGRESS.value,
            pps_id=mpps.text(dataset, mpps.PPS_ID)[:64],
            station_ae=mpps.text(dataset, mpps.PERFORMED_STATION_AE_TITLE)[:16],
            calling_ae=calling_ae[:16],
            modality=mpps.text(dataset, mpps.MODALITY)[:16],
            patient_id=mpps.text(dataset, mpps.PATIENT_ID)[:64],
            patient_name=mpps.text(dataset, mpps.PATIENT_NAME)[:324],
            study_instance_uid=first.study_instance_uid[:64],
            accession_number=first.accession_number[:64],
            start_datetime=mpps.start_datetime(dataset),
            end_datetime=mpps.end_datetime(dataset),
            scheduled=False,
            dataset=dataset,
            created_at=now,
            updated_at=now,
        )
        worklist.add(session, row)
        steps: dict[int, StepRow] = {}
        for reference in references:
            for step in store.steps_referred_to(
                session,
                study_instance_uid=reference.study_instance_uid,
                accession_number=reference.accession_number,
                requested_procedure_id=reference.requested_procedure_id,
                sps_id=reference.sps_id,
                patient_id=row.patient_id,
            ):
                steps.setdefault(step.id, step)
        for step_id in steps:
            store.link(session, row.id, step_id)
        row.scheduled = bool(steps)
        ctx = Context(session, now, None, f"dicom {calling_ae or '?'} mpps {uid}"[:200])
        changes = self._follow(
            ctx,
            list(steps.values()),
            "mpps",
            f"MPPS {uid} IN PROGRESS from {row.station_ae or calling_ae or '?'}",
            patient_id=row.patient_id,
        )
        return _result(row, steps.values(), changes)

    # -- N-SET ------------------------------------------------------------------------------------

    def set_performed_step(
        self, sop_instance_uid: str, modification: dict[str, Any], *, calling_ae: str = ""
    ) -> PerformedResult:
        """Apply an N-SET; COMPLETED or DISCONTINUED move the linked steps on.

        Raises :class:`MPPSRefused` for an unknown instance, a final step (which cannot change
        again), or an attribute N-SET may not change (PS3.4 F.7.2.2).
        """
        with self.db.transaction() as session:
            result = self._set(session, sop_instance_uid, modification, calling_ae)
        self._committed(result, "set", calling_ae)
        return result

    def _set(
        self, session: Any, uid: str, modification: dict[str, Any], calling_ae: str
    ) -> PerformedResult:
        row = store.find_performed_step(session, uid, for_update=True)
        if row is None:
            raise MPPSRefused(
                NStatus.NO_SUCH_SOP_INSTANCE,
                "no such Performed Procedure Step",
                detail=f"no performed procedure step {uid} was created (N-CREATE) here",
            )
        status = mpps.check_set(row.dataset, modification)
        now = datetime.now(UTC)
        before = row.status
        row.dataset = mpps.apply_set(row.dataset, modification)
        row.status = status.value
        row.end_datetime = mpps.end_datetime(row.dataset)
        row.updated_at = now
        steps = list(store.steps_of_performed_step(session, row.id))
        changes: list[StepChange] = []
        if row.status != before:
            ctx = Context(session, now, None, f"dicom {calling_ae or '?'} mpps {uid}"[:200])
            changes = self._follow(
                ctx,
                steps,
                "mpps",
                f"MPPS {uid} {status} from {row.station_ae or calling_ae or '?'}",
                patient_id=row.patient_id,
            )
        return _result(row, steps, changes)

    # -- C-STORE --------------------------------------------------------------------------------

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
        self, session: Any, instance: ReceivedInstance, relative: str | None, size: int
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
            changes = self._follow(
                ctx,
                list(image_store.steps_of_study(session, study)),
                "images",
                f"images: study {uid}, {study.instance_count} instance(s) from "
                f"{instance.calling_ae or '?'}",
                patient_id=instance.patient_id,
                quiet=True,
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
                changes = self._follow(
                    ctx,
                    list(image_store.steps_of_study(session, study)),
                    "images",
                    f"images: study {study.study_instance_uid} received, {study.instance_count} "
                    f"instance(s), none for {self.images_quiet_seconds:g} s",
                    quiet=True,
                )
                moved = moved or bool(changes)
        if moved:
            for callback in self.after_commit:
                callback()
        return len(study_ids)

    # -- the scheduled steps follow -------------------------------------------------------------

    def follow(
        self, ctx: Context, steps: list[StepRow], event: str, said: str, *, quiet: bool = False
    ) -> list[StepChange]:
        """Bring steps to the status their performed steps and images call for, inside the
        caller's transaction (a performed step or study linked late, by staff or a new order)."""
        return self._follow(ctx, steps, event, said, quiet=quiet)

    def _follow(
        self,
        ctx: Context,
        steps: list[StepRow],
        event: str,
        said: str,
        *,
        patient_id: str = "",
        quiet: bool = False,
    ) -> list[StepChange]:
        """Bring each step to the status its performed steps and images call for.

        Each change writes a history line; so does each MPPS that changes nothing, unless
        ``quiet`` (a received image that changes nothing is not worth a line).
        """
        changes: list[StepChange] = []
        for step in steps:
            order = worklist.get_order(ctx.session, step.order_id)
            patient = worklist.get_patient(ctx.session, step.patient_pk)
            assert order is not None and patient is not None
            performed_rows = list(store.performed_steps_of(ctx.session, step.id))
            performed = [PerformedStatus(p.status) for p in performed_rows]
            images = self.images_of(ctx.session, step, performed_rows)
            wanted = mpps.performed_step_status(performed, images, self.complete_on)
            current = StepStatus(step.status)
            change = mpps.performed_transition(current, wanted)
            detail = said
            if patient_id and patient_id != step.patient_id:
                detail += f"; it names patient {patient_id}"
            if change is None:
                if quiet:
                    continue
                if current.is_final:
                    detail += f"; the step is already {current.value}"
                elif PerformedStatus.COMPLETED in performed and images is not Images.RECEIVED:
                    detail += f"; the step stays {current.value} until its images are received"
                record(ctx, order, event, step=step, detail=detail)
                continue
            move_step(ctx, order, patient, step, change, event, detail=detail)
            started, ended = _performed_times(
                performed_rows, image_store.studies_of_step(ctx.session, step)
            )
            changes.append(
                StepChange(
                    order,
                    step,
                    patient,
                    change.before,
                    change.after,
                    started=started,
                    ended=ended if change.after.is_final else None,
                )
            )
        if changes:
            for listener in self.listeners:
                listener(ctx, changes)
        return changes

    def images_of(
        self, session: Any, step: StepRow, performed: Sequence[PerformedStepRow]
    ) -> Images:
        """How far the step's images have come: none, arriving, or received.

        Received when a study of the step counts as received (quiet long enough), or when
        every instance its completed MPPS lists has arrived.
        """
        studies = image_store.studies_of_step(session, step)
        if not studies:
            return Images.NONE
        if any(study.images_received_at is not None for study in studies):
            return Images.RECEIVED
        listed = {
            uid
            for row in performed
            if row.status == PerformedStatus.COMPLETED
            for _series, uid in mpps.performed_instances(row.dataset)
        }
        if listed and image_store.count_instances(session, listed) == len(listed):
            return Images.RECEIVED
        return Images.ARRIVING

    def _committed(self, result: PerformedResult, verb: str, calling_ae: str) -> None:
        log.info(
            "mpps %s %s %s from %s: %s",
            result.sop_instance_uid,
            verb,
            result.status,
            calling_ae or "?",
            ", ".join(f"step {i} {b} -> {a}" for i, b, a in result.changes)
            or (
                f"{len(result.step_ids)} step(s) linked"
                if result.scheduled
                else "unscheduled (no step matches)"
            ),
            extra={
                "event": f"mpps_{verb}",
                "sop_instance_uid": result.sop_instance_uid,
                "status": str(result.status),
                "calling_ae": calling_ae,
                "scheduled": result.scheduled,
                "step_ids": list(result.step_ids),
            },
        )
        if result.changes:
            for callback in self.after_commit:
                callback()


def _performed_times(
    performed: Sequence[PerformedStepRow], studies: Sequence[StudyRow]
) -> tuple[str | None, str | None]:
    """When the exam began and ended: from its MPPS, else from when its images came."""
    starts = [row.start_datetime for row in performed if row.start_datetime]
    ends = [row.end_datetime for row in performed if row.end_datetime]
    if starts:
        return min(starts), max(ends) if ends else None
    if studies:
        first = min(_aware(study.first_received_at) for study in studies)
        last = max(_aware(study.last_received_at) for study in studies)
        return _local(first), _local(last)
    return None, None


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; the broker stores UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _local(moment: datetime) -> str:
    return _aware(moment).astimezone().strftime("%Y%m%d%H%M%S")


def _duplicate(uid: str) -> MPPSRefused:
    return MPPSRefused(
        NStatus.DUPLICATE_SOP_INSTANCE,
        "a Performed Procedure Step with this UID exists",
        detail=f"performed procedure step {uid} was already created; N-CREATE is refused "
        "(0111 duplicate SOP instance)",
    )


def _result(row: PerformedStepRow, steps: Any, changes: Sequence[StepChange]) -> PerformedResult:
    return PerformedResult(
        sop_instance_uid=row.sop_instance_uid,
        status=PerformedStatus(row.status),
        scheduled=row.scheduled,
        step_ids=tuple(step.id for step in steps),
        changes=tuple((c.step.id, c.before.value, c.after.value) for c in changes),
    )
