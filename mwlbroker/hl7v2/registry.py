"""The HL7 v2 message types and trigger events the broker handles: one table, which is the router.

Every list of "what the broker takes" is read from :data:`REGISTRY`: the mapping loader's
accepted ``messages:`` sections, the profile's per-type defaults, the patient service's merge
and change-identifier triggers, and the intake's router, which looks a message's MSH-9 up here
(:func:`route`) and hands it to the applier registered under the entry's name.

Adding a message type is an entry here, a section in the mapping profile, and (unless an
existing applier already does the job) an applier; see docs/developer/add-a-message-type.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Meaning(StrEnum):
    """What a trigger event asks of its applier, where the trigger (not the content) decides."""

    ORDER = "order"  # ORC-1 Order Control says what to do (NW, XO, CA, DC, SC ...)
    APPOINTMENT = "appointment"  # the trigger stands for an order control (SIU S12 = NW ...)
    UPDATE = "update"  # patient demographics as they are now (ADT A01, A04, A08 ...)
    MERGE = "merge"  # MRG-1's patient is merged into PID-3's (ADT A40)
    CHANGE_ID = "change identifier"  # MRG-1's patient is known under PID-3 from now on (A47)
    VISIT = "visit"  # the patient's visit moved on (A02 transfer, A03 discharge, A06 ... A13)
    MERGE_ACCOUNT = "merge account"  # one patient's accounts merged (A35); a merge if MRG-1 differs
    LINK = "link"  # the second PID's patient is the same person (A24): an Other Patient ID
    UNLINK = "unlink"  # the A24 link of the two PIDs is undone (A37)


@dataclass(frozen=True)
class Trigger:
    """One trigger event (MSH-9.2) of a message type, and what it means."""

    code: str  # MSH-9.2, e.g. "A40"
    meaning: Meaning
    description: str  # the standard's name for the event
    order_control: str = ""  # APPOINTMENT: the ORC-1 it stands for unless a profile says else


@dataclass(frozen=True)
class MessageType:
    """One message code (MSH-9.1) the broker takes, its triggers, and who applies it."""

    code: str  # MSH-9.1, e.g. "ORM"
    applier: str  # the name the intake finds the applier under: "orders", "patients"
    triggers: tuple[Trigger, ...]
    description: str
    item_segment: str = ""  # orders: the segment that makes one worklist item (OBR, IPC, AIS)
    whole_type_section: bool = False  # a mapping section may be keyed by the code alone (ADT)
    application_ack: str = ""  # the application acknowledgment's MSH-9 ("": an ACK)

    @property
    def type_names(self) -> tuple[str, ...]:
        """``ORM^O01``-style names, one per trigger, as MSH-9 carries them."""
        return tuple(f"{self.code}^{trigger.code}" for trigger in self.triggers)

    @property
    def trigger_codes(self) -> tuple[str, ...]:
        return tuple(trigger.code for trigger in self.triggers)

    def trigger(self, code: str) -> Trigger | None:
        """The trigger ``code`` of this type, or ``None`` when the broker does not take it."""
        return next((trigger for trigger in self.triggers if trigger.code == code), None)


REGISTRY: tuple[MessageType, ...] = (
    MessageType(
        "ORM",
        "orders",
        (Trigger("O01", Meaning.ORDER, "general order message"),),
        "order (v2.3.1, IHE RAD-2/RAD-4 in the ORM form)",
        item_segment="OBR",
        application_ack="ORR^O02",
    ),
    MessageType(
        "OMI",
        "orders",
        (Trigger("O23", Meaning.ORDER, "imaging order message"),),
        "imaging order (v2.5.1, IHE RAD-4 with IPC)",
        item_segment="IPC",
        application_ack="ORI^O24",
    ),
    MessageType(
        "OMG",
        "orders",
        (Trigger("O19", Meaning.ORDER, "general clinical order message"),),
        "general order (v2.5+, IHE SWF.b RAD-2/RAD-3): an imaging order read from its OBR",
        item_segment="OBR",
        application_ack="ORG^O20",
    ),
    MessageType(
        "ADT",
        "patients",
        (
            Trigger("A01", Meaning.UPDATE, "admit/visit notification"),
            Trigger("A02", Meaning.VISIT, "transfer a patient"),
            Trigger("A03", Meaning.VISIT, "discharge/end visit"),
            Trigger("A04", Meaning.UPDATE, "register a patient"),
            Trigger("A05", Meaning.UPDATE, "pre-admit a patient"),
            Trigger("A06", Meaning.VISIT, "change an outpatient to an inpatient"),
            Trigger("A07", Meaning.VISIT, "change an inpatient to an outpatient"),
            Trigger("A08", Meaning.UPDATE, "update patient information"),
            Trigger("A11", Meaning.VISIT, "cancel admit/visit notification"),
            Trigger("A12", Meaning.VISIT, "cancel transfer"),
            Trigger("A13", Meaning.VISIT, "cancel discharge/end visit"),
            Trigger("A18", Meaning.MERGE, "merge patient information"),
            Trigger("A24", Meaning.LINK, "link patient information"),
            Trigger("A31", Meaning.UPDATE, "update person information"),
            Trigger("A34", Meaning.MERGE, "merge patient information - patient ID only"),
            Trigger("A35", Meaning.MERGE_ACCOUNT, "merge patient information - account only"),
            Trigger("A36", Meaning.MERGE, "merge patient information - patient ID and account"),
            Trigger("A37", Meaning.UNLINK, "unlink patient information"),
            Trigger("A39", Meaning.MERGE, "merge person - patient ID"),
            Trigger("A40", Meaning.MERGE, "merge patient - patient identifier list"),
            Trigger("A47", Meaning.CHANGE_ID, "change patient identifier list"),
        ),
        "patient administration (IHE Patient Information Reconciliation)",
        whole_type_section=True,
    ),
    MessageType(
        "SIU",
        "orders",
        (
            Trigger("S12", Meaning.APPOINTMENT, "new appointment booking", order_control="NW"),
            Trigger("S13", Meaning.APPOINTMENT, "appointment rescheduling", order_control="XO"),
            Trigger("S14", Meaning.APPOINTMENT, "appointment modification", order_control="XO"),
            Trigger("S15", Meaning.APPOINTMENT, "appointment cancellation", order_control="CA"),
        ),
        "scheduling, taken only where a profile maps it (some RIS schedule by SIU)",
        item_segment="AIS",  # one worklist item per service of the appointment
        whole_type_section=True,
    ),
)

_BY_CODE = {entry.code: entry for entry in REGISTRY}


@dataclass(frozen=True)
class Route:
    """Where one MSH-9 goes: its registry entry, its trigger, and the applier's name."""

    message_type: MessageType
    trigger: Trigger

    @property
    def applier(self) -> str:
        return self.message_type.applier

    @property
    def type_name(self) -> str:
        return f"{self.message_type.code}^{self.trigger.code}"


def route(type_name: str) -> Route | None:
    """The route of ``ORM^O01``-style ``type_name``, or ``None`` when the broker does not take it."""
    code, _, trigger_code = type_name.partition("^")
    entry = _BY_CODE.get(code)
    trigger = entry.trigger(trigger_code) if entry is not None else None
    return Route(entry, trigger) if entry is not None and trigger is not None else None


def message_type(code: str) -> MessageType | None:
    """The registry entry for MSH-9.1 ``code``."""
    return _BY_CODE.get(code)


def type_names(applier: str | None = None) -> tuple[str, ...]:
    """Every ``TYPE^TRIGGER`` the broker takes (those of one applier when ``applier`` is given)."""
    return tuple(
        name
        for entry in REGISTRY
        if applier is None or entry.applier == applier
        for name in entry.type_names
    )


def triggers(code: str, *meanings: Meaning) -> frozenset[str]:
    """The trigger codes of message type ``code`` that mean one of ``meanings``."""
    entry = _BY_CODE.get(code)
    return frozenset(
        trigger.code for trigger in (entry.triggers if entry else ()) if trigger.meaning in meanings
    )


def section_keys() -> tuple[str, ...]:
    """The keys a mapping profile's ``messages:`` may use: ``ORM^O01``, ``ADT``, ``ADT^A08`` ..."""
    keys: list[str] = []
    for entry in REGISTRY:
        if entry.whole_type_section:
            keys.append(entry.code)
        keys.extend(entry.type_names)
    return tuple(keys)


def section_help() -> str:
    """The keys of :func:`section_keys` as a mapping author reads them in an error message."""
    parts = []
    for entry in REGISTRY:
        if entry.whole_type_section:
            first = entry.type_names[0]
            parts.append(
                f"{entry.code} (every trigger) or {first} ... ({' '.join(entry.trigger_codes)})"
            )
        else:
            parts.append(", ".join(entry.type_names))
    return ", ".join(parts)


# What the patient lifecycle and the mapping need to know about ADT triggers, defined once.
UPDATE_TRIGGERS = triggers("ADT", Meaning.UPDATE)
MERGE_TRIGGERS = triggers("ADT", Meaning.MERGE)
"""ADT triggers that merge MRG-1's patient into PID-3's (A18, A34, A36, A39, A40)."""
ACCOUNT_MERGE_TRIGGERS = triggers("ADT", Meaning.MERGE_ACCOUNT)
"""ADT triggers that merge accounts of one patient (A35); MRG-1 is read, not required."""
CHANGE_ID_TRIGGERS = triggers("ADT", Meaning.CHANGE_ID)
"""ADT triggers that give MRG-1's patient PID-3's identifier (A47)."""
PRIOR_ID_TRIGGERS = MERGE_TRIGGERS | CHANGE_ID_TRIGGERS
"""ADT triggers that name a prior patient in MRG-1 (what the mapping reads MRG for)."""
VISIT_TRIGGERS = triggers("ADT", Meaning.VISIT)
"""ADT triggers that move the patient's visit on: location, visit number, patient class."""
LINK_TRIGGERS = triggers("ADT", Meaning.LINK, Meaning.UNLINK)
"""ADT triggers whose second PID names the linked patient (A24 link, A37 unlink)."""
