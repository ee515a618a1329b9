"""Patient identity reconciliation: what staff see and do about who is who, one transaction each.

(a) ID collisions: one Patient ID whose messages gave conflicting demographics, with the
evidence. (b) Likely duplicates: one person under two IDs, found by the sweep and kept in a
table the page reads quickly; "not the same person" is remembered. (c) Unscheduled performed
steps and unmatched studies, linked to a step. Actions: merge (optionally told to the RIS as
ADT^A40), undo a merge, dismiss a pair, link an exam. Every action takes ``actor`` (who, for the
audit record) and returns plain dataclasses the command line and the web API print or serialise
(``dataclasses.asdict``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mwlbroker.domain import identity
from mwlbroker.services import merging, unmatched
from mwlbroker.services.merging import ReconciliationRefused, UndoRefused
from mwlbroker.services.outbound import OutboundService
from mwlbroker.services.progress import ProgressService, StepChange
from mwlbroker.services.views import performed_step_summary, study_summary
from mwlbroker.services.worklist import Context, audit
from mwlbroker.store import images as image_store
from mwlbroker.store import messages as message_store
from mwlbroker.store import progress as progress_store
from mwlbroker.store import reconciliation as rec
from mwlbroker.store import worklist as store
from mwlbroker.store.db import Database, Session
from mwlbroker.store.images import StudyRow
from mwlbroker.store.reconciliation import (
    DuplicateDismissalRow,
    PatientMergeRow,
    PerformedStepRow,
)
from mwlbroker.store.rows import get_locked
from mwlbroker.store.worklist import PatientRow, StepRow

__all__ = [
    "Candidate",
    "Collision",
    "Evidence",
    "LinkOutcome",
    "MergeOutcome",
    "MergeView",
    "PatientView",
    "ReconciliationRefused",
    "ReconciliationService",
    "SweepOutcome",
    "UndoRefused",
]

log = logging.getLogger("mwlbroker.reconciliation")


@dataclass(frozen=True)
class PatientView:
    """A patient as the lists show them."""

    pk: int
    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str
    merged_into: int | None = None

    @classmethod
    def of(cls, row: PatientRow) -> PatientView:
        return cls(
            row.id,
            row.patient_id,
            row.issuer,
            row.patient_name,
            row.birth_date,
            row.sex,
            row.merged_into_id,
        )

    @property
    def label(self) -> str:
        """ID^^^ISSUER, the way the RIS writes it."""
        return f"{self.patient_id}^^^{self.issuer}" if self.issuer else self.patient_id


@dataclass(frozen=True)
class Candidate:
    """Two patients likely to be one person."""

    first: PatientView
    second: PatientView
    score: float
    reasons: list[str]
    found_at: str


@dataclass(frozen=True)
class SweepOutcome:
    """What a duplicate sweep did."""

    patients: int
    candidates: int
    seconds: float


@dataclass(frozen=True)
class Evidence:
    """Demographics one message gave for a Patient ID."""

    name: str
    birth_date: str
    sex: str
    source: str  # "message 12 ADT^A08 (MSH-10 M12)", "as first recorded"
    message_id: int | None
    at: str
    orders: list[str] = field(default_factory=list)  # placer numbers of orders it created


@dataclass(frozen=True)
class Collision:
    """A Patient ID that seems to have been given to two people."""

    patient: PatientView
    conflicts: list[str]
    evidence: list[Evidence]


@dataclass(frozen=True)
class MergeOutcome:
    merge_id: int
    prior: PatientView
    survivor: PatientView
    orders: list[int]
    steps: list[int]
    notified: list[int]  # outbound message ids of the ADT^A40s queued
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MergeView:
    id: int
    at: str
    actor: str
    origin: str
    prior: PatientView
    survivor: PatientView
    orders: int
    steps: int
    undone_at: str | None
    undone_by: str | None


@dataclass(frozen=True)
class LinkOutcome:
    kind: str  # "mpps" or "study"
    id: int
    step_ids: list[int]
    changes: list[tuple[int, str, str]]  # (step id, before, after)


class ReconciliationService:
    """Reconciliation use cases over one database."""

    def __init__(
        self,
        db: Database,
        progress: ProgressService,
        outbound: OutboundService | None = None,
    ) -> None:
        self.db = db
        self.progress = progress
        self.outbound = outbound

    # -- patients -------------------------------------------------------------------------------

    def find_patient(self, text: str) -> PatientView:
        """The patient ``ID`` or ``ID^^^ISSUER`` names, as stored (a merged-away one too).

        Raises LookupError when there is none, or several under different issuers.
        """
        patient_id, _, issuer = text.partition("^^^")
        with self.db.reading() as session:
            rows = store.patients_with_id(session, patient_id)
        if issuer or "^^^" in text:
            rows = [r for r in rows if r.issuer == issuer]
        if not rows:
            raise LookupError(f"no patient {text}")
        if len(rows) > 1:
            raise LookupError(
                f"patient ID {patient_id} exists under several issuers ("
                + ", ".join(repr(r.issuer) for r in rows)
                + f"); write it as {patient_id}^^^ISSUER"
            )
        return PatientView.of(rows[0])

    # -- (a) ID collisions ---------------------------------------------------------------------

    def collisions(self, *, limit: int = 100) -> list[Collision]:
        """Patient IDs whose messages gave demographics that cannot all be one person's."""
        found: list[Collision] = []
        with self.db.reading() as session:
            for pk, updates in _grouped(rec.patient_updates(session)):
                observations = _observations(updates)
                conflicts = identity.conflicts(observations)
                if not conflicts:
                    continue
                patient = store.get_patient(session, pk)
                if patient is None:
                    continue
                evidence = self._evidence(session, patient, observations)
                found.append(Collision(PatientView.of(patient), conflicts, evidence))
                if len(found) >= limit:
                    break
        return found

    def _evidence(
        self, session: Session, patient: PatientRow, observations: list[identity.Observation]
    ) -> list[Evidence]:
        first = rec.first_order_of(session, patient)
        ids = [o.message_id for o in observations if o.message_id is not None]
        if first is not None and first.created_message_id is not None:
            ids.append(first.created_message_id)
        orders = store.orders_created_by(session, ids)
        result = []
        for index, o in enumerate(observations):
            message_id = o.message_id
            source = o.source
            at = o.at or (_iso(patient.created_at) if index == 0 else "")
            if index == 0 and first is not None and first.created_message_id is not None:
                message_id = first.created_message_id
                found = message_store.get(session, message_id)
                kind = f"{found.message_type}^{found.trigger_event}" if found else "message"
                source = f"message {message_id} {kind} (created the patient)"
            result.append(
                Evidence(
                    name=o.name,
                    birth_date=o.birth_date,
                    sex=o.sex,
                    source=source,
                    message_id=message_id,
                    at=at,
                    orders=[
                        order.placer_order_number or order.filler_order_number or str(order.id)
                        for order in orders.get(message_id or -1, [])
                    ],
                )
            )
        return result

    # -- (b) likely duplicates -----------------------------------------------------------------

    def sweep_duplicates(self, *, min_score: float = identity.DUPLICATE_MIN_SCORE) -> SweepOutcome:
        """Compare every patient (blocked by birth date) and store the candidate pairs found.

        The nightly job; the reconciliation page then reads :meth:`duplicates`.
        """
        started = time.perf_counter()
        with self.db.reading() as session:
            people = [identity.Person(*row) for row in rec.active_people(session)]
            dismissed = rec.dismissed_pairs(session)
        pairs = identity.likely_duplicates(people, min_score=min_score, dismissed=dismissed)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            count = rec.replace_candidates(
                session, ((p.first.pk, p.second.pk, p.score, list(p.reasons)) for p in pairs), now
            )
        seconds = time.perf_counter() - started
        log.info(
            "duplicate sweep: %d patient(s) compared, %d candidate pair(s), %.2f s",
            len(people),
            count,
            seconds,
            extra={"event": "duplicate_sweep", "patients": len(people), "candidates": count},
        )
        return SweepOutcome(len(people), count, round(seconds, 3))

    def duplicates(self, *, min_score: float = 0.0, limit: int = 100) -> list[Candidate]:
        """The candidates the last sweep stored, best first (merged and dismissed left out)."""
        with self.db.reading() as session:
            rows = rec.candidates(session, min_score=min_score, limit=limit)
        return [
            Candidate(
                PatientView.of(a), PatientView.of(b), c.score, list(c.reasons), _iso(c.found_at)
            )
            for c, a, b in rows
        ]

    def dismiss(self, first_pk: int, second_pk: int, *, actor: str, note: str = "") -> None:
        """Remember that two patients are not the same person; the sweep leaves them be."""
        low, high = sorted((first_pk, second_pk))
        if low == high:
            raise ReconciliationRefused("a patient cannot be dismissed against itself")
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            first, second = store.get_patient(session, low), store.get_patient(session, high)
            if first is None or second is None:
                raise LookupError(f"no patient with pk {low if first is None else high}")
            if rec.find_dismissal(session, low, high) is not None:
                return  # said before: nothing changes
            ctx = Context(session, now, None, actor)
            store.add(
                session,
                DuplicateDismissalRow(
                    patient_pk=low, other_pk=high, at=now, actor=actor[:200], note=note
                ),
            )
            rec.drop_candidates(session, patient_pk=low, other_pk=high)
            audit(
                ctx,
                "dismiss duplicate",
                "patient",
                low,
                before={"pair": [low, high], "patients": [first.patient_id, second.patient_id]},
                after={"dismissed": True, "note": note},
            )

    # -- merge and undo ------------------------------------------------------------------------

    def merge(
        self, prior_pk: int, survivor_pk: int, *, actor: str, notify_ris: bool = False
    ) -> MergeOutcome:
        """Merge one patient into another; with ``notify_ris``, queue an ADT^A40 for the RIS."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            prior = store.get_patient(session, prior_pk, for_update=True)
            survivor = store.get_patient(session, survivor_pk, for_update=True)
            if prior is None or survivor is None:
                raise LookupError(
                    f"no patient with pk {prior_pk if prior is None else survivor_pk}"
                )
            ctx = Context(session, now, None, actor)
            notified: list[int] = []
            if notify_ris and (self.outbound is None or not self.outbound.destinations):
                raise ReconciliationRefused(
                    "no outbound destination is configured to tell the RIS "
                    "([[outbound.destinations]])"
                )
            moved = merging.merge_patient(
                ctx, prior, survivor, origin="staff", extra_audit={"notify_ris": notify_ris}
            )
            if notify_ris and self.outbound is not None:
                notified = self.outbound.on_patient_merged(ctx, prior, survivor)
            outcome = MergeOutcome(
                moved.merge.id,
                PatientView.of(prior),
                PatientView.of(survivor),
                list(moved.orders),
                list(moved.steps),
                notified,
            )
        if notified and self.outbound is not None:
            self.outbound.wakeup.wake()
        log.info(
            "patient %s merged into %s by %s (merge %d): %d order(s), %d step(s)",
            outcome.prior.patient_id,
            outcome.survivor.patient_id,
            actor,
            outcome.merge_id,
            len(outcome.orders),
            len(outcome.steps),
            extra={"event": "patient_merged", "merge_id": outcome.merge_id},
        )
        return outcome

    def undo_merge(self, merge_id: int, *, actor: str) -> MergeOutcome:
        """Put every order and step of a merge back, or raise :class:`UndoRefused` saying why."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            moved = merging.undo_merge(Context(session, now, None, actor), merge_id)
            prior = store.get_patient(session, moved.merge.source_pk)
            survivor = store.get_patient(session, moved.merge.survivor_pk)
            assert prior is not None and survivor is not None
            outcome = MergeOutcome(
                merge_id,
                PatientView.of(prior),
                PatientView.of(survivor),
                list(moved.orders),
                list(moved.steps),
                [],
                list(moved.notes),
            )
        log.info(
            "merge %d undone by %s: %d order(s) back with %s",
            merge_id,
            actor,
            len(outcome.orders),
            outcome.prior.patient_id,
            extra={"event": "patient_unmerged", "merge_id": merge_id},
        )
        return outcome

    def merges(self, *, limit: int = 100) -> list[MergeView]:
        with self.db.reading() as session:
            rows = rec.merges(session, limit=limit)
            return [self._merge_view(session, row) for row in rows]

    def _merge_view(self, session: Session, row: PatientMergeRow) -> MergeView:
        prior = store.get_patient(session, row.source_pk)
        survivor = store.get_patient(session, row.survivor_pk)
        assert prior is not None and survivor is not None
        return MergeView(
            row.id,
            _iso(row.at),
            row.actor,
            row.origin,
            PatientView.of(prior),
            PatientView.of(survivor),
            len(row.snapshot.get("orders", [])),
            len(row.snapshot.get("steps", [])),
            _iso(row.undone_at) if row.undone_at else None,
            row.undone_by,
        )

    # -- (c) exams without an order ------------------------------------------------------------

    def link_mpps(self, performed_id: int, step_ids: Sequence[int], *, actor: str) -> LinkOutcome:
        """Link an unscheduled performed step to scheduled steps (the IHE group case: several)."""
        if not step_ids:
            raise ReconciliationRefused("name at least one scheduled step to link to")
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            performed = get_locked(
                session, PerformedStepRow, performed_id, "performed procedure step"
            )
            if performed.scheduled:
                raise ReconciliationRefused(
                    f"performed step {performed_id} is already linked to a scheduled step"
                )
            steps = self._steps(session, step_ids)
            changes = unmatched.link_performed_step(
                Context(session, now, None, actor),
                self.progress,
                performed,
                steps,
                how=f"linked by {actor}",
            )
        return self._linked("mpps", performed_id, steps, changes)

    def link_study(self, study_id: int, step_id: int, *, actor: str) -> LinkOutcome:
        """Match an unmatched study to a scheduled step."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            study = get_locked(session, StudyRow, study_id, "study")
            if study.order_id is not None:
                raise ReconciliationRefused(
                    f"study {study_id} is already matched to order {study.order_id}"
                )
            [step] = self._steps(session, [step_id])
            changes = unmatched.link_study(
                Context(session, now, None, actor),
                self.progress,
                study,
                step,
                how=f"linked by {actor}",
            )
        return self._linked("study", study_id, [step], changes)

    def steps_for_accession(self, accession: str) -> list[int]:
        """The ids of the scheduled steps with this Accession Number (to link by accession)."""
        with self.db.reading() as session:
            return [s.id for s in rec.steps_by_accession(session, accession)]

    def rematch(self, ctx: Context, steps: Sequence[StepRow]) -> int:
        """Link waiting exams to steps an order just created (an order service listener)."""
        return unmatched.rematch(ctx, self.progress, steps)

    def _steps(self, session: Session, step_ids: Sequence[int]) -> list[StepRow]:
        return [
            get_locked(session, StepRow, step_id, "scheduled step")
            for step_id in dict.fromkeys(step_ids)
        ]

    def _linked(
        self, kind: str, pk: int, steps: Sequence[StepRow], changes: Sequence[StepChange]
    ) -> LinkOutcome:
        if changes:
            for callback in self.progress.after_commit:
                callback()
        return LinkOutcome(
            kind,
            pk,
            [s.id for s in steps],
            [(c.step.id, c.before.value, c.after.value) for c in changes],
        )

    def unscheduled_mpps(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Performed steps that matched no scheduled step, newest first."""
        with self.db.reading() as session:
            rows = progress_store.list_performed_steps(session, scheduled=False, limit=limit)
            return [performed_step_summary(row) for row in rows]

    def unmatched_studies(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Received studies that matched no order, newest first."""
        with self.db.reading() as session:
            rows = image_store.list_studies(session, matched=False, limit=limit)
            return [study_summary(row) for row in rows]


def _grouped(updates: Any) -> Any:
    """(patient pk, [(audit, type, trigger, control id), ...]) from rows ordered by patient."""
    current: int | None = None
    group: list[Any] = []
    for item in updates:
        pk = item[0].entity_id
        if pk != current and group:
            yield current, group
            group = []
        current = pk
        group.append(item)
    if group:
        yield current, group


def _observations(updates: list[Any]) -> list[identity.Observation]:
    """The demographics as first recorded, then as each audited message left them."""
    first = updates[0][0]
    found = [_observation(first.before or {}, "as first recorded", None, "")]
    for audit_row, kind, trigger, control_id in updates:
        label = f"{kind}^{trigger}" if kind else "message (purged)"
        source = (
            f"message {audit_row.message_id} {label}" if audit_row.message_id else audit_row.actor
        )
        if control_id:
            source += f" (MSH-10 {control_id})"
        found.append(
            _observation(audit_row.after or {}, source, audit_row.message_id, _iso(audit_row.at))
        )
    return found


def _observation(
    attributes: dict[str, Any], source: str, message_id: int | None, at: str
) -> identity.Observation:
    def text(keyword: str) -> str:
        value = attributes.get(keyword)
        return value if isinstance(value, str) else ""

    return identity.Observation(
        text("PatientName"),
        text("PatientBirthDate"),
        text("PatientSex"),
        source,
        message_id,
        at,
    )


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
