"""Step follow-up: bring scheduled steps to the status their performed steps and images call for.

The completion rule (``[progress] complete_on``: MPPS COMPLETED, images received, or both)
decides what a step's performed steps and studies amount to; the domain decides whether the
step may move there (forward only, never back). Every change writes a history line and is
handed to the status listeners (the outbound queue), inside the caller's transaction: MPPS,
image receipt, and staff or a new order linking a performed step or study late.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mwlbroker.domain import mpps
from mwlbroker.domain.mpps import CompleteOn, Images, PerformedStatus
from mwlbroker.domain.worklist import StepStatus
from mwlbroker.services.step_status import move_step
from mwlbroker.services.worklist import Context, record
from mwlbroker.store import images as image_store
from mwlbroker.store import progress as store
from mwlbroker.store import worklist
from mwlbroker.store.db import Session
from mwlbroker.store.images import StudyRow
from mwlbroker.store.progress import PerformedStepRow
from mwlbroker.store.worklist import OrderRow, PatientRow, StepRow


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


@dataclass
class StepFollowUp:
    """Moves scheduled steps on by the completion rule, telling the status listeners."""

    complete_on: CompleteOn = CompleteOn.MPPS
    listeners: list[StatusListener] = field(default_factory=list)

    def follow(
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
        self, session: Session, step: StepRow, performed: Sequence[PerformedStepRow]
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
