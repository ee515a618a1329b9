"""Turn HL7 orders and patient messages into worklist data, as the site's mapping files say.

:func:`load_mappings` reads and compiles a folder of profiles once; the resulting
:class:`MappingSet` picks the profile for a sender and maps messages:
:meth:`MappingSet.map_orders` for ORM^O01 / OMI^O23 / OMG^O19 (one order per placer order
of the message) and SIU^S12..S15 (scheduling, where a profile maps it), and
:meth:`MappingSet.map_patient_event` for ADT. Both raise :class:`MappingError` (answered AE,
reprocessable once the mapping or the message is fixed) with a text that names the field and
the mapping line involved; a message type that no profile maps for its sender raises
:class:`NotMappedForSender` (answered AR).
"""

from __future__ import annotations

import bisect
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
    OrderGroup,
    Value,
)
from mwlbroker.hl7v2.reader import HL7_NULL, FieldPath, HL7Message
from mwlbroker.mapping.loader import BUNDLED, MappingLoadError, load_profiles
from mwlbroker.mapping.profile import (
    ACCOUNT_MERGE_TRIGGERS,
    LINK_TRIGGERS,
    PRIOR_ID_TRIGGERS,
    VISIT_TRIGGERS,
    MessageMapping,
    Profile,
)
from mwlbroker.mapping.rules import Context, Grouping, Layout, Rule
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
                raise MappingError(
                    text, error_code=HL7ErrorCode.UNSUPPORTED_MESSAGE_TYPE, location="MSH-3"
                )
            mapping = [
                f"{p.name} for {p.sending_application} / {p.sending_facility}"
                for p in self.profiles
                if p.enabled and type_name in p.handled_types
            ]
            if mapping:
                text += f"; {type_name} is mapped only for other senders: {', '.join(mapping)}"
            # 201 when the sender's profiles map other triggers of the type, else 200.
            code = type_name.partition("^")[0] + "^"
            other_trigger = any(
                name.startswith(code)
                for p in self.profiles
                if p.enabled and p.matches(sending_application, sending_facility)
                for name in p.handled_types
            )
            raise NotMappedForSender(
                text,
                error_code=HL7ErrorCode.UNSUPPORTED_EVENT_CODE
                if other_trigger
                else HL7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                location="MSH-3",
            )
        return min(candidates, key=lambda p: (-p.priority, -p.specificity, p.name))

    def handles(self, type_name: str) -> bool:
        return type_name in self.supported_types

    def map(self, message: HL7Message) -> list[MappedOrder] | MappedPatientEvent:
        """Map an ADT message, or every order of an order message, whichever it is."""
        if Sender.of(message).message_type == "ADT":
            return self.map_patient_event(message)
        return self.map_orders(message)

    def _entry(self, header: Sender) -> tuple[Profile, MessageMapping]:
        type_name = header.type_name
        profile = self.profile_for(header.application, header.facility, type_name)
        entry = profile.message_mapping(type_name)
        assert entry is not None  # profile_for chose a profile that maps this type
        return profile, entry

    # -- orders --

    def map_order(self, message: HL7Message) -> MappedOrder:
        """The message's one order (see :meth:`map_orders`); a MappingError if it has several."""
        orders = self.map_orders(message)
        if len(orders) > 1:
            names = ", ".join(order.group.name for order in orders if order.group)
            raise MappingError(f"the message carries {len(orders)} orders: {names}")
        return orders[0]

    def map_orders(self, message: HL7Message) -> list[MappedOrder]:
        """Every order of an ORM^O01 / OMI^O23 / OMG^O19 (one per placer order), or the SIU's one.

        Each order has one :class:`MappedStep` per repeat segment of its ORC groups. ORC-1 and
        ORC-5 of its ORC segments give an order's control and status; for SIU the trigger gives
        the control (the profile's ``control:`` table) and ``order_status:`` the status. Either
        way the profile's ``status:`` table makes the step status of the pair. ORC groups that
        name the same placer order (or none) are one order; when a message carries several
        orders, each one's errors name it (``order 2 (ORC[2], placer X): ...``).
        """
        header = Sender.of(message)
        profile, entry = self._entry(header)
        if not entry.is_order:
            raise MappingError(
                f"{header.type_name} is not an order message",
                error_code=HL7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                location="MSH-9",
            )
        if not entry.is_schedule and message.count("ORC") == 0:
            raise MappingError(
                f"{header.type_name} without an ORC segment: no order control",
                error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
                location="ORC",
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
                error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
                location=repeat,
            )
        patient = entry.patient.evaluate(Context(layout))
        _require_patient_id(profile, patient, header)
        if entry.is_schedule:
            items = [
                _Item(number, Context(layout, start, end, grouping))
                for number, (start, end) in enumerate(grouping.groups, 1)
            ]
            found = [_OrderItems([], items, Context(layout))]
        else:
            found = _orders_of(layout, grouping, entry)
        several = len(found) > 1
        orders = []
        for number, part in enumerate(found, 1):
            group = None
            if several:
                placer = _text(_evaluate(entry.placer, part.first))
                filler = _text(_evaluate(entry.filler, part.first))
                group = OrderGroup(number, part.orcs[0], placer, filler)
            try:
                if not entry.is_schedule:
                    control, order_status = _order_control(message, part.orcs)
                    if not part.items and control in ("NW", "XO"):
                        raise MappingError(
                            f"ORC-1 {control} without an {repeat} segment: nothing to "
                            f"schedule (profile {profile.name} makes one worklist item per "
                            f"{entry.describe_repeat})",
                            location=repeat,
                        )
                orders.append(
                    self._map_one(
                        profile, entry, header, repeat, patient, part, control, order_status, group
                    )
                )
            except MappingError as error:
                if group is None:
                    raise
                raise group.locate(error) from error
        for order in orders:
            order.warnings = layout.warnings  # the message's: values cut to fit, whichever order
        return orders

    def _map_one(
        self,
        profile: Profile,
        entry: MessageMapping,
        header: Sender,
        repeat: str,
        patient: Attributes,
        part: _OrderItems,
        control: str,
        order_status: str,
        group: OrderGroup | None,
    ) -> MappedOrder:
        """One order of the message, from its items (with the order's control and status)."""
        step_status = profile.status_for(control, order_status)
        if step_status is None:
            raise _no_status(profile, entry, header, control, order_status)
        first = part.first
        order = entry.order.evaluate(first)
        placer = _text(_evaluate(entry.placer, first))
        filler = _text(_evaluate(entry.filler, first))
        steps = [
            MappedStep(entry.procedure.evaluate(item.context), entry.step.evaluate(item.context))
            for item in part.items
        ]
        occurrences = [item.occurrence for item in part.items]
        _fill_identifiers(profile, header, repeat, placer, filler, steps, occurrences)
        return MappedOrder(
            order_control=control,
            order_status=order_status,
            step_status=step_status,
            placer_order_number=placer,
            filler_order_number=filler,
            patient=MappedPatient(dict(patient)),
            order=order,
            steps=steps,
            profile=profile.name,
            merged_patient=profile.merged_patient.action,
            group=group,
        )

    # -- patients --

    def map_patient_event(self, message: HL7Message) -> MappedPatientEvent:
        """An ADT message as the patient's new attributes (and the prior ID for A40 / A47)."""
        header = Sender.of(message)
        if header.message_type != "ADT":
            raise MappingError(
                f"{header.type_name} is not an ADT message",
                error_code=HL7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                location="MSH-9",
            )
        profile, entry = self._entry(header)
        context = Context(Layout(message))
        patient = entry.patient.evaluate(context)
        _require_patient_id(profile, patient, header)
        event = MappedPatientEvent(
            trigger=header.trigger_event,
            patient=MappedPatient(patient),
            profile=profile.name,
            merged_patient=profile.merged_patient.action,
            warnings=context.layout.warnings,
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
                    error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
                    location="MRG",
                )
            prior = _evaluate(entry.prior_patient_id, context)
            if not _text(prior):
                raise MappingError(
                    f"{header.type_name} without a prior patient ID (MRG-1): nothing to merge",
                    error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
                    location="MRG-1",
                )
            event.prior_patient_id = prior
            event.prior_issuer = _text(_evaluate(entry.prior_issuer, context)) or ""
        elif header.trigger_event in ACCOUNT_MERGE_TRIGGERS and message.count("MRG") == 1:
            # A35: MRG-1 is the same patient as PID-3 in an account merge proper; the patient
            # service merges like A40 only where it names another patient the broker knows.
            event.prior_patient_id = _text(_evaluate(entry.prior_patient_id, context))
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
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location="PID",
        )
    linked = _text(_evaluate(entry.linked_patient_id, context))
    if not linked:
        raise MappingError(
            f"{header.type_name} without the linked patient's ID (the second PID's PID-3)",
            error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
            location="PID[2]-3",
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
    where = profile.status_where or Path(profile.file).name
    if not entry.is_schedule:
        return MappingError(
            f"no status for ORC-1 {control!r} with ORC-5 {order_status!r} in profile "
            f"{profile.name} (add it to status: in {where})",
            error_code=HL7ErrorCode.TABLE_VALUE_NOT_FOUND,
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
        error_code=HL7ErrorCode.TABLE_VALUE_NOT_FOUND,
        location=re.sub(r"\[\d+\]", "", paths[0]).split(".")[0] if paths else "MSH-9",
    )


@dataclass
class _Item:
    """One worklist item of an order: the repeat segment's occurrence, and what it reads."""

    occurrence: int  # OBR[n] / IPC[n] / AIS[n] that starts the item's group
    context: Context


@dataclass
class _OrderItems:
    """The ORC groups of one order (one placer order) and their items, in message order."""

    orcs: list[int]  # occurrences of its ORC segments
    items: list[_Item]
    orc_context: Context  # reads its first ORC group: for an order without items

    @property
    def first(self) -> Context:
        """What the order level (placer, filler, physicians) is read through."""
        return self.items[0].context if self.items else self.orc_context


def _orders_of(layout: Layout, grouping: Grouping, entry: MessageMapping) -> list[_OrderItems]:
    """The orders of an order message: each ORC starts an ORC group; groups of one order join.

    An item belongs to the ORC group it lies in (the last ORC before it). A group's order is
    its placer number, else its filler number (the profile's rules, read in the group); a
    group that names neither continues the order before it, so a sender that repeats ORC
    without its numbers, or names one order in ORC[1] only, still sends one order.
    """
    names = layout.names
    orc_at = [index for index, name in enumerate(names) if name == "ORC"]
    items: list[list[_Item]] = [[] for _ in orc_at]
    for start, end in grouping.groups:
        owner = max(bisect.bisect_right(orc_at, start) - 1, 0)  # items before any ORC: ORC[1]
        items[owner].append(_Item(layout.ordinals[start], Context(layout, start, end, grouping)))
    orders: dict[tuple[str, str], _OrderItems] = {}
    previous: tuple[str, str] | None = None
    for owner, (start, end) in enumerate(zip(orc_at, [*orc_at[1:], len(names)], strict=True)):
        orc_context = Context(layout, start, end, grouping)
        if len(orc_at) == 1:  # the common case: one ORC, one order, nothing to tell apart
            return [_OrderItems([layout.ordinals[start]], items[owner], orc_context)]
        reads = items[owner][0].context if items[owner] else orc_context
        placer = _text(_evaluate(entry.placer, reads))
        filler = _text(_evaluate(entry.filler, reads))
        own = ("placer", placer) if placer else ("filler", filler) if filler else None
        key = own or previous or ("unnumbered", "")
        previous = key
        order = orders.setdefault(key, _OrderItems([], [], orc_context))
        order.orcs.append(layout.ordinals[start])
        order.items += items[owner]
    return list(orders.values())


def _order_control(message: HL7Message, occurrences: list[int]) -> tuple[str, str]:
    """ORC-1 and ORC-5 (upper case, "" when empty); the ORC segments of one order must agree."""
    seen: dict[tuple[str, str], int] = {}
    for occurrence in occurrences:
        control = message.value(FieldPath("ORC", 1, occurrence=occurrence)) or ""
        status = message.value(FieldPath("ORC", 5, occurrence=occurrence)) or ""
        key = (control.strip().upper(), "" if status == HL7_NULL else status.strip().upper())
        seen.setdefault(key, occurrence)
    if len(seen) > 1:
        pairs = ", ".join(f"{c}/{s}" for c, s in seen)
        raise MappingError(
            f"the ORC segments of one order disagree on order control / status ({pairs}): "
            "send one order action per order",
            error_code=HL7ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location=f"ORC[{list(seen.values())[1]}]-1",
        )
    control, status = next(iter(seen))
    if not control:
        raise MappingError(
            "ORC-1 order control is empty",
            error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
            location="ORC-1",
        )
    return control, status


def _require_patient_id(profile: Profile, patient: Attributes, header: Sender) -> None:
    policy = profile.policy("PatientID")
    if policy.action == "reject" and not _text(patient.get("PatientID")):
        raise MappingError(
            f"{header.type_name} without a Patient ID (profile {profile.name} maps PatientID "
            f"from {_source(profile, header)}; missing: PatientID: reject at {policy.where})",
            error_code=HL7ErrorCode.REQUIRED_FIELD_MISSING,
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
    occurrences: list[int],
) -> None:
    """Apply the profile's ``missing:`` policies to each step's identifiers.

    Steps are numbered from 1 within their order (the number derives generated identifiers);
    ``occurrences`` are their repeat segments' places in the message, for the error text.
    """
    sender = f"{header.application}^{header.facility}"
    accessions = [_text(step.procedure.get("AccessionNumber")) for step in steps]

    def problem(
        keyword: str,
        number: int,
        text: str,
        code: HL7ErrorCode = HL7ErrorCode.REQUIRED_FIELD_MISSING,
    ) -> MappingError:
        policy = profile.policy(keyword)
        where = "" if policy.where == "default" else f" at {policy.where}"
        item = (
            f"item {number} ({repeat}[{occurrences[number - 1]}])"
            if len(steps) > 1
            else "the order"
        )
        return MappingError(
            f"{keyword} is missing for {item}: {text} (profile {profile.name}, "
            f"missing: {keyword}: {policy.action}{where})",
            error_code=code,
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
                        "AccessionNumber",
                        number,
                        f"{value!r} is longer than 16 characters",
                        HL7ErrorCode.DATA_TYPE_ERROR,
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
                    raise problem(
                        keyword,
                        number,
                        f"{value!r} is longer than 16 characters",
                        HL7ErrorCode.DATA_TYPE_ERROR,
                    )
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
