"""The patient lifecycle from ADT: demographics, visits, merges, links and identifier changes.

What each trigger means comes from the registry: demographics (A01, A04, A05, A08, A31), the
visit moving on (A02, A03, A06, A07, A11, A12, A13), a merge (A18, A34, A36, A39, A40), a
merge of accounts only (A35), a link or unlink (A24, A37), a change of identifier (A47).
Every change to a patient writes an audit record with what it was before; open worklist items
follow the patient's current demographics and visit at once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mwlbroker.domain.errors import MessageError
from mwlbroker.domain.messages import HL7ErrorCode, MessageWarning
from mwlbroker.domain.worklist import MappedPatientEvent
from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.reader import HL7Message
from mwlbroker.hl7v2.registry import (
    ACCOUNT_MERGE_TRIGGERS,
    CHANGE_ID_TRIGGERS,
    MERGE_TRIGGERS,
    Meaning,
)
from mwlbroker.mapping.engine import MappingSet
from mwlbroker.services.merged_ids import patient_for
from mwlbroker.services.merging import ReconciliationRefused, merge_patient
from mwlbroker.services.patient_links import link_patients, unlink_patients
from mwlbroker.services.visits import move_visit
from mwlbroker.services.worklist import (
    Context,
    audit,
    merge,
    patient_snapshot,
    propagate_patient,
    resolve_patient,
    upsert_patient,
)
from mwlbroker.store import worklist as store
from mwlbroker.store.db import Session
from mwlbroker.store.messages import MessageRow
from mwlbroker.store.worklist import PatientRow

log = logging.getLogger("mwlbroker.patients")


class PatientService:
    """Applies ADT messages inside the ingest transaction (the registry's "patients" applier).

    What a trigger does comes from the registry: a merge (A40), a change of identifier (A47),
    or else an update of the patient's demographics.
    """

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings

    def prepare(self, message: HL7Message) -> MappedPatientEvent:
        """Map the patient event, before (and outside) the transaction that applies it."""
        return self.mappings.map_patient_event(message)

    def warnings(self, event: MappedPatientEvent) -> list[MessageWarning]:
        """What the mapping changed in the patient event to take it (values cut to fit)."""
        return event.warnings

    def apply(self, session: Session, event: MappedPatientEvent, row: MessageRow) -> None:
        """Apply a mapped patient event inside the ingest transaction."""
        sender = "/".join(p for p in (row.sending_application, row.sending_facility) if p)
        ctx = Context(session, datetime.now(UTC), row.id, f"hl7 {sender} message {row.id}")
        if event.trigger in MERGE_TRIGGERS:
            self._merge(ctx, event)
            return
        if event.trigger in CHANGE_ID_TRIGGERS:
            self._change_identifier(ctx, event)
            return
        if event.trigger in ACCOUNT_MERGE_TRIGGERS and self._names_another_patient(ctx, event):
            self._merge(ctx, event)  # an A35 sent for a patient merge: taken as one
            return
        # Demographics first (or the survivor, as the profile says for a merged-away ID) ...
        patient, changed = patient_for(ctx, event.patient, event.merged_patient, "update")
        if changed:
            propagate_patient(ctx, patient)
        # ... then what the trigger adds to them.
        meaning = _meaning(event.trigger)
        if meaning == Meaning.VISIT:
            move_visit(ctx, patient, event.visit, f"ADT^{event.trigger}")
        elif meaning in (Meaning.LINK, Meaning.UNLINK):
            assert event.linked_patient_id  # the mapping refuses a link without one
            act = link_patients if meaning == Meaning.LINK else unlink_patients
            act(ctx, patient, event.linked_patient_id, event.linked_issuer or patient.issuer)
        # MERGE_ACCOUNT (A35) of one patient's accounts: the broker keeps no accounts, so the
        # demographics above are all there is to apply.

    @staticmethod
    def _names_another_patient(ctx: Context, event: MappedPatientEvent) -> bool:
        """Whether an A35's MRG-1 names a patient the broker knows other than PID-3's: some
        senders merge patients with A35; an account merge proper repeats PID-3 there."""
        if not event.prior_patient_id:
            return False
        issuer = event.prior_issuer or event.patient.issuer
        if (event.prior_patient_id, issuer) == (event.patient.patient_id, event.patient.issuer):
            return False
        return store.find_patient(ctx.session, event.prior_patient_id, issuer) is not None

    def _prior(self, ctx: Context, event: MappedPatientEvent) -> tuple[str, str]:
        if not event.prior_patient_id:
            raise MessageError(
                f"ADT^{event.trigger} without a prior patient ID (MRG-1)",
                error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
                location="MRG-1",
            )
        # MRG-1.4 empty: the prior ID is in the same assigning authority as PID-3.
        return event.prior_patient_id, event.prior_issuer or event.patient.issuer

    def _merge(self, ctx: Context, event: MappedPatientEvent) -> None:
        """A40 (A18, A34, A36, A39): the prior patient's orders and steps move to the surviving
        patient (undoable)."""
        said = f"ADT^{event.trigger}"
        prior_id, prior_issuer = self._prior(ctx, event)
        survivor_id, survivor_issuer = event.patient.patient_id, event.patient.issuer
        survivor = resolve_patient(ctx, survivor_id or "", survivor_issuer)
        if survivor is None:
            raise MessageError(
                f"{said} merges {prior_id} into patient {survivor_id}, who is unknown here; "
                "send the surviving patient (A04/A08) or an order first, then reprocess",
                error_code=HL7ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                location="PID-3",
            )
        prior = store.find_patient(ctx.session, prior_id, prior_issuer)
        if prior is None:
            # Nothing of the prior patient is here: only the survivor's demographics change.
            log.info("%s: prior patient %s unknown, nothing to move", said, prior_id)
            self._update_survivor(ctx, event)
            return
        if prior.id == survivor.id:
            raise MessageError(
                f"{said} merges patient {prior_id} into itself",
                # 205: MRG-1 names the same patient as PID-3.
                error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER,
                location="MRG-1",
            )
        if prior.merged_into_id is not None:
            if resolve_patient(ctx, prior_id, prior_issuer) is survivor:
                self._update_survivor(ctx, event)
                return  # the same merge again: already done
            raise MessageError(
                f"patient {prior_id} was already merged into another patient",
                error_code=HL7ErrorCode.APPLICATION_RECORD_LOCKED,
                location="MRG-1",
            )
        try:
            merge_patient(ctx, prior, survivor, origin="hl7")
        except ReconciliationRefused as error:
            raise MessageError(
                str(error), error_code=HL7ErrorCode.APPLICATION_RECORD_LOCKED, location="MRG-1"
            ) from None
        survivor = self._update_survivor(ctx, event)
        propagate_patient(ctx, survivor, all_steps=True)

    def _update_survivor(self, ctx: Context, event: MappedPatientEvent) -> PatientRow:
        survivor, changed = upsert_patient(ctx, event.patient)
        if changed:
            propagate_patient(ctx, survivor)
        return survivor

    def _change_identifier(self, ctx: Context, event: MappedPatientEvent) -> None:
        """A47: the patient known under the prior ID is known under the new one from now on."""
        prior_id, prior_issuer = self._prior(ctx, event)
        new_id, new_issuer = event.patient.patient_id, event.patient.issuer
        if not new_id:
            raise MessageError(
                "A47 without a new Patient ID (PID-3)",
                error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
                location="PID-3",
            )
        patient = store.find_patient(ctx.session, prior_id, prior_issuer)
        if patient is None:
            if store.find_patient(ctx.session, new_id, new_issuer) is not None:
                return  # already changed: the same A47 again
            raise MessageError(
                f"A47 changes the ID of patient {prior_id}, who is unknown here",
                error_code=HL7ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                location="MRG-1",
            )
        if store.find_patient(ctx.session, new_id, new_issuer) is not None:
            raise MessageError(
                f"A47 changes {prior_id} to {new_id}, but {new_id} already exists; "
                "that is a merge (A40)",
                error_code=HL7ErrorCode.DUPLICATE_KEY_IDENTIFIER,
                location="PID-3",
            )
        before = patient_snapshot(patient)
        patient.patient_id = new_id
        patient.issuer = new_issuer
        identity = {"PatientID": new_id}
        if new_issuer:
            identity["IssuerOfPatientID"] = new_issuer
        attributes = {k: v for k, v in patient.attributes.items() if k != "IssuerOfPatientID"}
        patient.attributes = merge(attributes, identity)
        patient.updated_at = ctx.now
        ctx.session.flush()
        patient, _ = upsert_patient(ctx, event.patient)
        propagate_patient(ctx, patient, all_steps=True)
        audit(
            ctx, "change id", "patient", patient.id, before=before, after=patient_snapshot(patient)
        )


def _meaning(trigger: str) -> Meaning | None:
    found = registry.route(f"ADT^{trigger}")
    return found.trigger.meaning if found is not None else None
