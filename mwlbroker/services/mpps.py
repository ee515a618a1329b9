"""MPPS: a modality's N-CREATE and N-SET become performed steps that move scheduled steps on.

N-CREATE stores the performed step IN PROGRESS and links it, through its Scheduled Step
Attributes Sequence, to the scheduled steps it performs; those become STARTED and leave the
worklist. N-SET ends it COMPLETED or DISCONTINUED. A performed step that matches no scheduled
step is kept, unscheduled, for reconciliation. Each request is one transaction: the performed
step, the scheduled steps, their history and the status messages for the RIS commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mwlbroker.domain import mpps
from mwlbroker.domain.mpps import MPPSRefused, NStatus, PerformedStatus
from mwlbroker.services.follow_up import StepChange, StepFollowUp
from mwlbroker.services.worklist import Context
from mwlbroker.store import progress as store
from mwlbroker.store import worklist
from mwlbroker.store.db import Database, DuplicateKey, Session
from mwlbroker.store.progress import PerformedStepRow
from mwlbroker.store.worklist import StepRow

log = logging.getLogger("mwlbroker.progress")


@dataclass(frozen=True)
class PerformedResult:
    """What became of an N-CREATE or N-SET: the performed step and the scheduled steps moved."""

    sop_instance_uid: str
    status: PerformedStatus
    scheduled: bool  # linked to at least one scheduled step
    step_ids: tuple[int, ...] = ()
    changes: tuple[tuple[int, str, str], ...] = ()  # (step id, before, after)


@dataclass
class MPPSService:
    """Applies MPPS N-CREATE and N-SET to the performed and scheduled steps."""

    db: Database
    follow_up: StepFollowUp
    # Called after a commit that moved a step (wakes the outbound sender).
    after_commit: list[Callable[[], None]] = field(default_factory=list)

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
        self, session: Session, uid: str, dataset: dict[str, Any], calling_ae: str
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
        changes = self.follow_up.follow(
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
        self, session: Session, uid: str, modification: dict[str, Any], calling_ae: str
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
            changes = self.follow_up.follow(
                ctx,
                steps,
                "mpps",
                f"MPPS {uid} {status} from {row.station_ae or calling_ae or '?'}",
                patient_id=row.patient_id,
            )
        return _result(row, steps, changes)

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


def _duplicate(uid: str) -> MPPSRefused:
    return MPPSRefused(
        NStatus.DUPLICATE_SOP_INSTANCE,
        "a Performed Procedure Step with this UID exists",
        detail=f"performed procedure step {uid} was already created; N-CREATE is refused "
        "(0111 duplicate SOP instance)",
    )


def _result(
    row: PerformedStepRow, steps: Iterable[StepRow], changes: Sequence[StepChange]
) -> PerformedResult:
    return PerformedResult(
        sop_instance_uid=row.sop_instance_uid,
        status=PerformedStatus(row.status),
        scheduled=row.scheduled,
        step_ids=tuple(step.id for step in steps),
        changes=tuple((c.step.id, c.before.value, c.after.value) for c in changes),
    )
