"""Exams without an order: unscheduled performed steps and unmatched studies, linked late.

Staff link one to a scheduled step; a new order links them by itself when it names what they
carry (the Study Instance UID, else the Accession Number with the Patient ID, the same rule as
on arrival). Either way the step then goes as if they had matched from the start: its status
follows, the RIS hears of it, and the history and audit say who linked what.
Everything here runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from mwlbroker.domain import mpps
from mwlbroker.domain.images import MatchedBy
from mwlbroker.services.progress import ProgressService, StepChange
from mwlbroker.services.worklist import Context, audit, record
from mwlbroker.store import progress as progress_store
from mwlbroker.store import reconciliation as rec
from mwlbroker.store import worklist as store
from mwlbroker.store.images import StudyRow
from mwlbroker.store.progress import PerformedStepRow
from mwlbroker.store.worklist import StepRow


def link_performed_step(
    ctx: Context,
    progress: ProgressService,
    performed: PerformedStepRow,
    steps: Sequence[StepRow],
    *,
    how: str,
) -> list[StepChange]:
    """Link a performed step to scheduled steps; they take the status it calls for."""
    linked_before = [
        s.id for s in progress_store.steps_of_performed_step(ctx.session, performed.id)
    ]
    before = {"scheduled": performed.scheduled, "step_ids": linked_before}
    for step in steps:
        progress_store.link(ctx.session, performed.id, step.id)
    ctx.session.flush()
    performed.scheduled = True
    performed.updated_at = ctx.now
    changes = progress.follow(
        ctx,
        list(steps),
        "mpps",
        f"MPPS {performed.sop_instance_uid} ({performed.status}) {how}",
    )
    audit(
        ctx,
        "link mpps",
        "performed_step",
        performed.id,
        before=before,
        after={
            "scheduled": True,
            "step_ids": sorted({*linked_before, *(s.id for s in steps)}),
            "how": how,
            "changes": [[c.step.id, c.before.value, c.after.value] for c in changes],
        },
    )
    return changes


def link_study(
    ctx: Context,
    progress: ProgressService,
    study: StudyRow,
    step: StepRow,
    *,
    how: str,
    matched_by: MatchedBy = MatchedBy.MANUAL,
) -> list[StepChange]:
    """Match a study to a scheduled step's order; the step follows its images."""
    before = {
        "order_id": study.order_id,
        "matched_by": study.matched_by,
        "step_id": study.step_id,
        "accession_number": study.accession_number,
    }
    study.order_id = step.order_id
    study.matched_by = matched_by.value
    study.step_id = step.id if matched_by is MatchedBy.MANUAL else None
    if matched_by is MatchedBy.ACCESSION_NUMBER and step.accession_number:
        study.accession_number = step.accession_number[:64]
    if progress.images_quiet_seconds <= 0 and study.images_received_at is None:
        study.images_received_at = ctx.now
    order = store.get_order(ctx.session, step.order_id)
    assert order is not None
    record(
        ctx,
        order,
        "images",
        step=step,
        detail=f"study {study.study_instance_uid} ({study.instance_count} instance(s)) {how}",
    )
    changes = progress.follow(
        ctx, [step], "images", f"images: study {study.study_instance_uid} {how}", quiet=True
    )
    audit(
        ctx,
        "link study",
        "study",
        study.id,
        before=before,
        after={
            "order_id": study.order_id,
            "matched_by": study.matched_by,
            "step_id": step.id,
            "how": how,
            "changes": [[c.step.id, c.before.value, c.after.value] for c in changes],
        },
    )
    return changes


def rematch(ctx: Context, progress: ProgressService, steps: Sequence[StepRow]) -> int:
    """Link the kept unscheduled performed steps and unmatched studies that new steps name.

    Called when an order creates steps. Returns how many were linked.
    """
    if not steps:
        return 0
    keys = [(s.study_instance_uid, s.accession_number, s.patient_id) for s in steps]
    linked = 0
    how = f"matched when order came in ({ctx.actor})"
    for performed in rec.unscheduled_performed_steps_for(ctx.session, keys):
        targets = _referred_to(performed, steps)
        if targets:
            link_performed_step(ctx, progress, performed, targets, how=how)
            linked += 1
    for study in rec.unmatched_studies_for(ctx.session, keys):
        by_uid = [s for s in steps if s.study_instance_uid == study.study_instance_uid]
        by_accession = [
            s
            for s in steps
            if study.accession_number
            and s.accession_number == study.accession_number
            and s.patient_id == study.patient_id
        ]
        if by_uid:
            link_study(
                ctx, progress, study, by_uid[0], how=how, matched_by=MatchedBy.STUDY_INSTANCE_UID
            )
        elif by_accession:
            link_study(
                ctx,
                progress,
                study,
                by_accession[0],
                how=how,
                matched_by=MatchedBy.ACCESSION_NUMBER,
            )
        else:
            continue
        linked += 1
    return linked


def _referred_to(performed: PerformedStepRow, steps: Sequence[StepRow]) -> list[StepRow]:
    """The new steps the performed step's Scheduled Step Attributes Sequence names, by the rule
    used on arrival: Study Instance UID, else Accession Number with the Patient ID; the
    Requested Procedure ID and SPS ID must agree where given."""
    found: dict[int, StepRow] = {}
    for reference in mpps.step_references(performed.dataset):
        named = [
            s
            for s in steps
            if reference.study_instance_uid and s.study_instance_uid == reference.study_instance_uid
        ] or [
            s
            for s in steps
            if reference.accession_number
            and s.accession_number == reference.accession_number
            and (not performed.patient_id or s.patient_id == performed.patient_id)
        ]
        for step in named:
            if (not reference.sps_id or step.sps_id == reference.sps_id) and (
                not reference.requested_procedure_id
                or step.requested_procedure_id == reference.requested_procedure_id
            ):
                found.setdefault(step.id, step)
    return list(found.values())
