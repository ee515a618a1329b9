"""Forward received instances to a PACS, patient and order attributes coerced to the broker's
record, with retries.

Each stored instance gets a forward task in the transaction that indexes it; the file is kept
under ``storage.dir`` until the PACS has it (and after, with ``storage.keep_files``). A
forwarder (the DICOM edge) claims due tasks, reads the files, applies the coercion this
service works out from the matched order and its patient, and records each outcome. The
coercion is worked out when the instance is sent, so a patient update that arrived meanwhile
(ADT A08, a merge) is what the PACS gets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mwlbroker.domain.outbound import DeliveryStatus
from mwlbroker.services.delivery import Retries, Wakeup, release
from mwlbroker.services.worklist import Context
from mwlbroker.store import forward as store
from mwlbroker.store import images, worklist
from mwlbroker.store.db import Database, Session
from mwlbroker.store.files import InstanceFiles
from mwlbroker.store.forward import ForwardRow
from mwlbroker.store.images import InstanceRow, StudyRow

log = logging.getLogger("mwlbroker.forward")


# Patient attributes the PACS gets from the broker's record of a matched study.
_PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
)


@dataclass(frozen=True)
class ForwardOptions(Retries):
    """The [forward] settings; retry_seconds, retry_max_seconds and max_attempts come with :class:`Retries`."""

    host: str = ""  # empty: no forwarding
    port: int = 104
    ae_title: str = "PACS"
    calling_ae: str = "MWLBROKER"
    coerce: bool = True
    timeout: float = 30.0
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class ForwardClaim:
    """An instance a forwarder has taken to send, with the values to coerce (None: as is)."""

    id: int
    instance_id: int
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str | None
    coerce: dict[str, str] | None
    source: str  # who sent it to the broker, for the Original Attributes Sequence


class ForwardService:
    """Queues received instances for the PACS and keeps the record of their forwarding."""

    def __init__(
        self,
        db: Database,
        options: ForwardOptions,
        files: InstanceFiles,
        *,
        keep_files: bool = False,
    ) -> None:
        self.db = db
        self.options = options
        self.files = files
        self.keep_files = keep_files
        self.wakeup = Wakeup()  # the senders sleep on it; every commit that queues wakes them

    # -- writing, inside the receiving transaction ----------------------------------------------

    def on_instance(self, ctx: Context, study: StudyRow, instance: InstanceRow) -> None:
        """Queue an instance for the PACS (once: a resend waiting already is not queued twice)."""
        if store.pending_for(ctx.session, instance.id) is not None:
            return
        worklist.add(
            ctx.session,
            ForwardRow(
                instance_id=instance.id,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=ctx.now,
                created_at=ctx.now,
            ),
            flush=False,
        )

    # -- the forwarder --------------------------------------------------------------------------

    def claim(self, limit: int = 20) -> list[ForwardClaim]:
        """Take up to ``limit`` due tasks for one attempt each, with what to coerce."""
        now = datetime.now(UTC)
        lease = timedelta(seconds=2 * self.options.timeout + 30)
        claims = []
        with self.db.transaction() as session:
            for task in store.due(session, now, limit=limit):
                instance = session.get(InstanceRow, task.instance_id)
                if instance is None:
                    continue
                task.next_attempt_at = now + lease
                study = images.get_study(session, instance.study_id)
                claims.append(
                    ForwardClaim(
                        id=task.id,
                        instance_id=instance.id,
                        sop_instance_uid=instance.sop_instance_uid,
                        sop_class_uid=instance.sop_class_uid,
                        transfer_syntax_uid=instance.transfer_syntax_uid,
                        path=instance.path,
                        coerce=self._coercion(session, study) if self.options.coerce else None,
                        source=instance.calling_ae,
                    )
                )
        return claims

    def _coercion(self, session: Session, study: StudyRow | None) -> dict[str, str] | None:
        """The broker's values for a matched study's instances; None for an unmatched one."""
        if study is None or study.order_id is None:
            return None
        order = worklist.get_order(session, study.order_id)
        if order is None:
            return None
        patient = worklist.get_patient(session, order.patient_pk)
        if patient is None:
            return None
        values = {k: _text(patient.attributes.get(k)) for k in _PATIENT_KEYWORDS}
        values["PatientID"] = patient.patient_id
        values["IssuerOfPatientID"] = patient.issuer
        steps = images.steps_of_study(session, study)
        accession = next((s.accession_number for s in steps if s.accession_number), None)
        if accession:
            values["AccessionNumber"] = accession  # (0008,0050), the order's
        referring = _text(order.attributes.get("ReferringPhysicianName"))
        if referring:
            values["ReferringPhysicianName"] = referring  # (0008,0090)
        return values

    def read(self, claim: ForwardClaim) -> bytes:
        """The instance's file as received; FileNotFoundError when it is gone."""
        if claim.path is None:
            raise FileNotFoundError(f"instance {claim.sop_instance_uid} was not kept on disk")
        return self.files.read(claim.path)

    def forwarded(self, claim: ForwardClaim, status: int, coerced: list[str]) -> None:
        """The PACS stored it: done; its file goes unless files are kept."""
        now = datetime.now(UTC)
        remove = None
        with self.db.transaction() as session:
            task = store.get(session, claim.id)
            if task is None:
                return
            task.status = DeliveryStatus.SENT.value
            task.attempts += 1
            task.sent_at = now
            task.last_error = None
            task.answer = f"{status:04X}" + (f" coerced {', '.join(coerced)}" if coerced else "")
            if not self.keep_files:
                instance = session.get(InstanceRow, claim.instance_id)
                if (
                    instance is not None
                    and instance.path
                    and not store.pending_for(session, instance.id, other_than=task.id)
                ):
                    remove, instance.path = instance.path, None
        if remove:
            self.files.delete(remove)
        log.info(
            "forwarded %s to %s (%04X)%s",
            claim.sop_instance_uid,
            self.options.ae_title,
            status,
            f", coerced {', '.join(coerced)}" if coerced else "",
            extra={"event": "forwarded", "sop_instance_uid": claim.sop_instance_uid},
        )

    def not_forwarded(self, claim: ForwardClaim, error: str, *, sent: bool) -> None:
        """Record a failed attempt; ``sent`` ones count towards ``forward.max_attempts``."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            task = store.get(session, claim.id)
            if task is None:
                return
            task.last_error = error[:2000]
            delay = 0.0
            if sent:
                task.attempts += 1
                if task.attempts >= self.options.max_attempts:
                    task.status = DeliveryStatus.FAILED.value
                else:
                    delay = self.options.backoff(task.attempts)
            task.next_attempt_at = now + timedelta(seconds=delay)
            failed = task.status == DeliveryStatus.FAILED
        (log.error if failed else log.warning)(
            "forwarding %s to %s %s: %s",
            claim.sop_instance_uid,
            self.options.ae_title,
            "failed for good" if failed else "not done yet",
            error,
            extra={"event": "forward_failed" if failed else "forward_retry"},
        )

    def retry(self, task_id: int) -> ForwardRow:
        """Release a failed task: due now, attempts from zero."""
        with self.db.transaction() as session:
            task = release(session, ForwardRow, task_id, "forward task", done="done")
        self.wakeup.wake()
        return task


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
