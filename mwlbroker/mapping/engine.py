"""Turn HL7 orders and patient messages into worklist data, as the site's mapping files say.

:func:`load_mappings` reads and compiles a folder of profiles once; the resulting
:class:`MappingSet` picks the profile for a sender and maps messages:
:meth:`MappingSet.map_order` for ORM^O01 / OMI^O23 and SIU^S12..S15 (scheduling, where a
profile maps it) and :meth:`MappingSet.map_patient_event` for ADT. Both raise
:class:`MappingError` (answered AE, reprocessable once the mapping or the message is fixed)
with a text that names the field and the mapping line involved; a message type that no
profile maps for its sender raises :class:`NotMappedForSender` (answered AR).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from mwlbroker.domain.errors import MappingError
from mwlbroker.domain.messages import AckCode, HL7ErrorCode
from mwlbroker.domain.worklist import (
    CLEAR,
    Attributes,
    MappedOrder,
    MappedPatient,
    MappedPatientEvent,
    MappedStep,
    Value,
)
from mwlbroker.hl7v2.reader import HL7_NULL, FieldPath, HL7Message
from mwlbroker.mapping.loader import BUNDLED, MappingLoadError, load_profiles
from mwlbroker.mapping.profile import (
    LINK_TRIGGERS,
    PRIOR_ID_TRIGGERS,
    VISIT_TRIGGERS,
    MessageMapping,
    Profile,
)
from mwlbroker.mapping.rules import Context, Layout, Rule
from mwlbroker.mapping.source import MappingFileError

__all__ = [
    "BUNDLED",
    "MappingFileError",
    "MappingLoadError",
    "MappingSet",
    "NotMappedForSender",
    "Profile",
    "load_mappings",
    "stable_uid",
]

# Name-based UUIDs (RFC 9562 version 5) for 2.25 roots live in the broker's own namespace.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mwlbroker:generated-uid")
_SH_MAX = 16  # (0040,0009) / (0040,1001) are SH


class NotMappedForSender(MappingError):
    """No enabled profile for the sender maps the message type (answered AR).

    The sender gets the same answer as for a type the broker does not take at all, whatever
    other senders' profiles map; the message is still stored and can be reprocessed once a
    profile maps it.
    """

    ack_code = AckCode.REJECT
    error_code = HL7ErrorCode.UNSUPPORTED_EVENT_CODE


def load_mappings(folder: Path | None = None) -> MappingSet:
    """Load and check every mapping file of ``folder`` (``None``: the bundled mappings).

    Raises :class:`MappingLoadError` whose ``errors`` list every problem with FILE:LINE.
    """
    folder = BUNDLED if folder is None else Path(folder)
    return MappingSet(load_profiles(folder), folder)


def stable_uid(root: str, key: str) -> str:
    """A UID under ``root`` that is always the same for ``key`` (PS3.5 9.1, at most 64 chars).

    Under ``2.25`` it is the decimal form of a name-based UUID (PS3.5 B.2); under any other
    root, the decimal of a SHA-256 of the key cut to the room the root leaves.
    """
    if root == "2.25":
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, key).int}"
    digits = min(64 - len(root) - 1, 38)
    number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big")
    return f"{root}.{number % 10**digits}"


def stable_id(key: str) -> str:
    """A 16-character ID that is always the same for ``key`` (fits SH)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:_SH_MAX].upper()


def _text(value: Value) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Sender:
    """The MSH fields that choose a profile and a message entry."""

    application: str  # MSH-3.1
    facility: str  # MSH-4.1
    message_type: str  # MSH-9.1
    trigger_event: str  # MSH-9.2

    @classmethod
    def of(cls, message: HL7Message) -> Sender:
        header = message.header()  # read once per message, shared with the intake
        return cls(
            header.sending_application,
            header.sending_facility,
            header.message_type,
            header.trigger_event,
        )

    @property
    def type_name(self) -> str:
        return f"{self.message_type}^{self.trigger_event}"


@dataclass
class MappingSet:
    """The loaded profiles of one folder; immutable, shared by every intake thread."""

    profiles: list[Profile]
    folder: Path

    @property
    def supported_types(self) -> frozenset[str]:
        """Every MSH-9 type (``ORM^O01``, ``ADT^A08``...) some profile maps."""
        return frozenset(
            name for profile in self.profiles if profile.enabled for name in profile.handled_types
        )

    def profile_for(
        self, sending_application: str, sending_facility: str, type_name: str | None = None
    ) -> Profile:
        """The profile for a sender: highest priority, then the most specific globs, then name.

        With ``type_name`` only profiles that map that message type are considered.
        """
        candidates = [
            profile
            for profile in self.profiles
            if profile.enabled
            and profile.matches(sending_application, sending_facility)
            and (type_name is None or type_name in profile.handled_types)
        ]
        if not candidates:
            what = f" maps {type_name} and" if type_name else ""
            text = (
                f"no mapping profile{what} matches sending application "
                f"{sending_application!r} / facility {sending_facility!r} "
                f"(enabled profiles: "
                f"{', '.join(p.name for p in self.profiles if p.enabled) or 'none'})"
            )
            if type_name is None:
                raise MappingError(text, location="MSH-3")
            mapping = [
                f"{p.name} for {p.sending_application} / {p.sending_facility}"
                for p in self.profiles
                if p.enabled and type_name in p.handled_types
            ]
            if mapping:
                text += f"; {type_name} is mapped only for other senders: {', '.join(mapping)}"
            raise NotMappedForSender(text, location="MSH-3")
        return min(candidates, key=lambda p: (-p.priority, -p.specificity, p.name))

    def handles(self, type_name: str) -> bool:
        return type_name in self.supported_types

    def map(self, message: HL7Message) -> MappedOrder | MappedPatientEvent:
        """Map an order or an ADT message, whichever it is."""
        if Sender.of(message).message_type == "ADT":
            return self.map_patient_event(message)
        return self.map_order(message)

    def _entry(self, header: Sender) -> tuple[Profile, MessageMapping]:
        type_name = header.type_name
        profile = self.profile_for(header.application, header.facility, type_name)
        entry = profile.message_mapping(type_name)
        assert entry is not None  # profile_for chose a profile that maps this type
        return profile, entry

    # -- orders --

    def map_order(self, message: HL7Message) -> MappedOrder:
        """An ORM^O01 / OMI^O23 / SIU as an order with one :class:`MappedStep` per repeat segment.

        For an order message ORC-1 and ORC-5 give the order control and status; for SIU the
        trigger gives the control (the profile's ``control:`` table) and ``order_status:`` the
        status. Either way the profile's ``status:`` table makes the step status of the pair.
        """
        header = Sender.of(message)
        profile, entry = self._entry(header)
        if not entry.is_order:
            raise MappingError(f"{header.type_name} is not an order message", location="MSH-9")
        if not entry.is_schedule and message.count("ORC") == 0:
            raise MappingError(
                f"{header.type_name} without an ORC segment: no order control", location="ORC"
            )
        layout = Layout(message)
        repeat = entry.repeat_in(layout.names)  # repeat: [IPC, OBR]: IPC, else OBR
        grouping = layout.groups(repeat, entry.ends, entry.block)
        control = order_status = ""
        if entry.is_schedule:
            control, order_status = _schedule_control(entry, header, Context(layout))
        # An SIU cancellation (or any control but NW / XO) may name the appointment only.
        if not grouping.groups and not (entry.is_schedule and control not in ("NW", "XO")):
            raise MappingError(
                f"{header.type_name} without an {repeat} segment: nothing to schedule "
                f"(profile {profile.name} makes one worklist item per "
                f"{entry.describe_repeat})",
                location=repeat,
            )
        if not entry.is_schedule:
            control, order_status = _order_control(message)
        step_status = profile.status_for(control, order_status)
        if step_status is None:
            raise _no_status(profile, entry, header, control, order_status)
        contexts = [Context(layout, start, end, grouping) for start, end in grouping.groups]
        first = contexts[0] if contexts else Context(layout)
        patient = entry.patient.evaluate(Context(layout))
        order = entry.order.evaluate(first)
        placer = _text(_evaluate(entry.placer, first))
        filler = _text(_evaluate(entry.filler, first))
        steps = [
            MappedStep(entry.procedure.evaluate(context), entry.step.evaluate(context))
            for context in contexts
        ]
        _require_patient_id(profile, patient, header)
        _fill_identifiers(profile, header, repeat, placer, filler, steps)
        return MappedOrder(
            order_control=control,
            order_status=order_status,
            step_status=step_status,
            placer_order_number=placer,
            filler_order_number=filler,
            patient=MappedPatient(patient),
            order=order,
            steps=steps,
            profile=profile.name,
            merged_patient=profile.merged_patient.action,
        )

    # -- patients --

    def map_patient_event(self, message: HL7Message) -> MappedPatientEvent:
        """An ADT message as the patient's new attributes (and the prior ID for A40 / A47)."""
        header = Sender.of(message)
        if header.message_type != "ADT":
            raise MappingError(f"{header.type_name} is not an ADT message", location="MSH-9")
        profile, entry = self._entry(header)
        context = Context(Layout(message))
        patient = entry.patient.evaluate(context)
        _require_patient_id(profile, patient, header)
        event = MappedPatientEvent(
            trigger=header.trigger_event,
            patient=MappedPatient(patient),
            profile=profile.name,
            merged_patient=profile.merged_patient.action,
        )
        if header.trigger_event in VISIT_TRIGGERS:
            event.visit = entry.visit.evaluate(context)
        if header.trigger_event in LINK_TRIGGERS:
            _read_link(event, entry, header, message, context)
        if header.trigger_event in PRIOR_ID_TRIGGERS:
            if message.count("MRG") > 1:
                raise MappingError(
                    f"{header.type_name} with {message.count('MRG')} MRG segments: the broker "
                    "takes one merge per message",
                    location="MRG",
                )
            prior = _evaluate(entry.prior_patient_id, context)
            if not _text(prior):
                raise MappingError(
                    f"{header.type_name} without a prior patient ID (MRG-1): nothing to merge",
                    location="MRG-1",
                )
            event.prior_patient_id = prior
            event.prior_issuer = _text(_evaluate(entry.prior_issuer, context)) or ""
        return event


def _read_link(
    event: MappedPatientEvent,
    entry: MessageMapping,
    header: Sender,
    message: HL7Message,
    context: Context,
) -> None:
    """A24 / A37: the linked patient, from the second PID (ADT_A24: PID [PD1] [PV1] [DB1] PID)."""
    if message.count("PID") != 2:
        raise MappingError(
            f"{header.type_name} with {message.count('PID')} PID segment(s): a link names two "
            "patients, the first PID and the second",
            location="PID",
        )
    linked = _text(_evaluate(entry.linked_patient_id, context))
    if not linked:
        raise MappingError(
            f"{header.type_name} without the linked patient's ID (the second PID's PID-3)",
            location="PID-3",
        )
    event.linked_patient_id = linked
    event.linked_issuer = _text(_evaluate(entry.linked_issuer, context)) or ""


def _evaluate(rule: Rule | None, context: Context) -> Value:
    return rule.evaluate(context) if rule is not None else None


def _schedule_control(entry: MessageMapping, header: Sender, context: Context) -> tuple[str, str]:
    """The order control an SIU trigger stands for, and the order status its rule reads."""
    control = entry.control[header.trigger_event]  # the entry maps only triggers it has
    status = _evaluate(entry.order_status, context)
    text = status.strip().upper() if isinstance(status, str) else ""
    return control, text


def _no_status(
    profile: Profile, entry: MessageMapping, header: Sender, control: str, order_status: str
) -> MappingError:
    where = profile.status_where or profile.file
    if not entry.is_schedule:
        return MappingError(
            f"no status for ORC-1 {control!r} with ORC-5 {order_status!r} in profile "
            f"{profile.name} (add it to status: in {where})",
            location="ORC-1",
        )
    paths = entry.order_status.paths() if entry.order_status else []
    read = ""
    if entry.order_status is not None:
        source = " / ".join(dict.fromkeys(paths)) or "a fixed value"
        read = f" (from {source}, order_status: at {entry.order_status.where})"
    if len(order_status) > 2:  # a status: key holds an ORC-5 code of one or two letters
        fix = "turn it into an ORC-5 code (SC, IP, CM, CA...) with a lookup in order_status:"
    else:
        fix = f"add {control}/{order_status} to status: in {where}"
    return MappingError(
        f"no status for {header.type_name} (order control {control!r}, control: at "
        f"{entry.control_where.get(header.trigger_event, entry.where)}) with order status "
        f"{order_status!r}{read} in profile {profile.name} ({fix})",
        location=re.sub(r"\[\d+\]", "", paths[0]).split(".")[0] if paths else "MSH-9",
    )


def _order_control(message: HL7Message) -> tuple[str, str]:
    """ORC-1 and ORC-5 (upper case, "" when empty); every ORC of the message must agree."""
    seen: dict[tuple[str, str], int] = {}
    placers = set()
    for occurrence in range(1, message.count("ORC") + 1):
        control = message.value(FieldPath("ORC", 1, occurrence=occurrence)) or ""
        status = message.value(FieldPath("ORC", 5, occurrence=occurrence)) or ""
        key = (control.strip().upper(), "" if status == HL7_NULL else status.strip().upper())
        seen.setdefault(key, occurrence)
        placer = message.value(FieldPath("ORC", 2, occurrence=occurrence))
        if placer and placer != HL7_NULL:
            placers.add(placer)
    if len(seen) > 1:
        pairs = ", ".join(f"{c}/{s}" for c, s in seen)
        raise MappingError(
            f"the ORC segments disagree on order control / status ({pairs}): "
            "send one order action per message",
            location="ORC-1",
        )
    if len(placers) > 1:
        raise MappingError(
            f"the ORC segments name different placer orders ({', '.join(sorted(placers))}): "
            "send one order per message",
            location="ORC-2",
        )
    control, status = next(iter(seen))
    if not control:
        raise MappingError("ORC-1 order control is empty", location="ORC-1")
    return control, status


def _require_patient_id(profile: Profile, patient: Attributes, header: Sender) -> None:
    policy = profile.policy("PatientID")
    if policy.action == "reject" and not _text(patient.get("PatientID")):
        raise MappingError(
            f"{header.type_name} without a Patient ID (profile {profile.name} maps PatientID "
            f"from {_source(profile, header)}; missing: PatientID: reject at {policy.where})",
            location="PID-3",
        )


def _source(profile: Profile, header: Sender) -> str:
    entry = profile.message_mapping(header.type_name)
    for attribute in entry.patient.attributes if entry else []:
        if attribute.keyword == "PatientID":
            return " / ".join(attribute.paths()) or "a fixed value"
    return "nothing: no rule for it"


def _fill_identifiers(
    profile: Profile,
    header: Sender,
    repeat: str,
    placer: str | None,
    filler: str | None,
    steps: list[MappedStep],
) -> None:
    """Apply the profile's ``missing:`` policies to each step's identifiers."""
    sender = f"{header.application}^{header.facility}"
    accessions = [_text(step.procedure.get("AccessionNumber")) for step in steps]

    def problem(keyword: str, number: int, text: str) -> MappingError:
        policy = profile.policy(keyword)
        where = "" if policy.where == "default" else f" at {policy.where}"
        item = f"item {number} ({repeat}[{number}])" if len(steps) > 1 else "the order"
        return MappingError(
            f"{keyword} is missing for {item}: {text} (profile {profile.name}, "
            f"missing: {keyword}: {policy.action}{where})",
            location=repeat,
        )

    def base_key(number: int) -> str:
        accession = accessions[number - 1]
        if accession:
            return f"{sender}|acc:{accession}"
        order = placer or filler
        if not order:
            raise problem(
                "StudyInstanceUID",
                number,
                "no accession number and no order number to derive a stable identifier from",
            )
        return f"{sender}|order:{order}#{number}"

    accession_policy = profile.policy("AccessionNumber").action
    for number, step in enumerate(steps, 1):
        if accessions[number - 1]:
            continue
        if accession_policy == "reject":
            raise problem("AccessionNumber", number, "the message has none")
        if accession_policy in ("from_placer", "from_filler", "generate"):
            order = (filler or placer) if accession_policy == "from_filler" else (placer or filler)
            if not order:
                raise problem(
                    "AccessionNumber", number, "and there is no placer or filler number to use"
                )
            if accession_policy == "generate":
                value = stable_id(f"{sender}|order:{order}#{number}|AccessionNumber")
            else:
                value = f"{order}-{number}"
                if len(value) > _SH_MAX:
                    raise problem(
                        "AccessionNumber", number, f"{value!r} is longer than 16 characters"
                    )
            step.procedure["AccessionNumber"] = accessions[number - 1] = value

    for number, step in enumerate(steps, 1):
        accession = accessions[number - 1]
        for keyword, attributes in (
            ("RequestedProcedureID", step.procedure),
            ("ScheduledProcedureStepID", step.step),
        ):
            if _text(attributes.get(keyword)):
                continue
            action = profile.policy(keyword).action
            if action == "reject":
                raise problem(keyword, number, "the message has none")
            if action == "from_accession":
                if not accession:
                    raise problem(keyword, number, "and there is no accession number to use")
                value = accession
                same = [n for n, a in enumerate(accessions, 1) if a == accession]
                if keyword == "ScheduledProcedureStepID" and len(same) > 1:
                    value = f"{accession}-{same.index(number) + 1}"
                if len(value) > _SH_MAX:
                    raise problem(keyword, number, f"{value!r} is longer than 16 characters")
                attributes[keyword] = value
            elif action == "generate":
                # Steps of one requested procedure share its ID; each step has its own.
                suffix = f"|{number}" if keyword == "ScheduledProcedureStepID" else ""
                attributes[keyword] = stable_id(f"{base_key(number)}|{keyword}{suffix}")
        if not _text(step.procedure.get("StudyInstanceUID")):
            action = profile.policy("StudyInstanceUID").action
            if action == "reject":
                raise problem("StudyInstanceUID", number, "the message has none")
            if action == "generate":
                procedure_id = _text(step.procedure.get("RequestedProcedureID")) or ""
                key = f"{base_key(number)}|rp:{procedure_id}|StudyInstanceUID"
                step.procedure["StudyInstanceUID"] = stable_uid(profile.uid_root, key)
        for keyword in ("AccessionNumber", "RequestedProcedureID", "StudyInstanceUID"):
            if step.procedure.get(keyword) is CLEAR:
                del step.procedure[keyword]  # an identifier is never cleared, only kept
        if step.step.get("ScheduledProcedureStepID") is CLEAR:
            del step.step["ScheduledProcedureStepID"]
