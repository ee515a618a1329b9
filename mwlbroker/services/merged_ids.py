"""Orders and patient updates that still name a Patient ID merged into another patient.

After a merge (ADT^A40 and its kin, or staff on the reconciliation page) the merged-away ID
still exists, pointing at its survivor. A RIS that has not caught up may send an order or an
update under that ID. Applying it as it comes would rewrite the survivor's demographics with
the merged-away record's, so the mapping profile's ``merged_patient:`` decides instead:

- ``refuse`` (the default): the message is answered AE, naming the survivor, when and by what
  it was merged, so the sender can resend it under the surviving ID;
- ``use_survivor``: the message applies to the survivor, whose demographics stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.messages import HL7ErrorCode
from mwlbroker.domain.worklist import MappedPatient
from mwlbroker.services.worklist import Context, resolve_patient, upsert_patient
from mwlbroker.store import messages
from mwlbroker.store import reconciliation as rec
from mwlbroker.store import worklist as store
from mwlbroker.store.worklist import PatientRow

REFUSE = "refuse"
USE_SURVIVOR = "use_survivor"


@dataclass(frozen=True)
class MergedAway:
    """A Patient ID merged into another patient: the survivor, and how it came about."""

    patient_id: str
    survivor: PatientRow
    when: str  # "2026-12-06 14:30 UTC", or "" when no merge record says
    by: str  # "message 12 (MSH-10 RIS0000009)", or the staff member who merged

    def reason(self, what: str) -> str:
        when = f" on {self.when}" if self.when else ""
        by = f" by {self.by}" if self.by else ""
        return (
            f"patient {self.patient_id} was merged into {self.survivor.patient_id}{when}{by}; "
            f"send the {what} under {self.survivor.patient_id}"
        )


def merged_away(ctx: Context, patient_id: str, issuer: str) -> MergedAway | None:
    """How ``patient_id`` was merged away, or ``None`` when it names a patient of its own."""
    patient = store.find_patient(ctx.session, patient_id, issuer)
    if patient is None or patient.merged_into_id is None:
        return None
    survivor = resolve_patient(ctx, patient_id, issuer)
    assert survivor is not None  # merged_into_id is a foreign key
    row = rec.merge_of(ctx.session, patient.id)
    when = by = ""
    if row is not None:
        # Written in UTC; SQLite gives it back naive, PostgreSQL in the session's time zone.
        at = row.at if row.at.tzinfo is None else row.at.astimezone(UTC)
        when = f"{at:%Y-%m-%d %H:%M} UTC"
        by = row.actor  # staff: who merged
        if row.message_id is not None:
            merged_by = messages.get(ctx.session, row.message_id)  # None once purged
            control = f" (MSH-10 {merged_by.control_id})" if merged_by is not None else ""
            by = f"message {row.message_id}{control}"
    return MergedAway(patient_id, survivor, when, by)


def check_merged(ctx: Context, mapped: MappedPatient, policy: str, what: str) -> MergedAway | None:
    """The merge behind the message's Patient ID, when it names a merged-away one.

    Raises :class:`MessageError` (AE, PID-3) when the profile's policy is ``refuse``.
    """
    if not mapped.patient_id:
        return None
    found = merged_away(ctx, mapped.patient_id, mapped.issuer)
    if found is not None and policy != USE_SURVIVOR:
        raise MessageError(
            found.reason(what),
            error_code=HL7ErrorCode.APPLICATION_RECORD_LOCKED,
            location="PID-3",
        )
    return found


def patient_for(
    ctx: Context, mapped: MappedPatient, policy: str, what: str
) -> tuple[PatientRow, bool]:
    """The patient the message is for, and whether their demographics changed.

    A merged-away ID is refused, or (``use_survivor``) gives the survivor untouched; any other
    ID is created or updated from the message as :func:`upsert_patient` does.
    """
    found = check_merged(ctx, mapped, policy, what)
    if found is not None:
        return found.survivor, False
    return upsert_patient(ctx, mapped)
