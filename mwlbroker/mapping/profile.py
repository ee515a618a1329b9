"""A loaded mapping profile: which senders it serves, and the compiled rules per message type."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mwlbroker.domain.worklist import StepStatus
from mwlbroker.hl7v2 import registry
from mwlbroker.mapping.rules import GROUP_BOUNDARIES, Rule, Section
from mwlbroker.mapping.transforms import Table


def _registered(code: str) -> registry.MessageType:
    entry = registry.message_type(code)
    assert entry is not None, f"{code} is not in the HL7 v2 registry"
    return entry


_ADT = _registered("ADT")
_SIU = _registered("SIU")

# What the mapping needs of the registry (mwlbroker.hl7v2.registry), the one list of the types
# and triggers the broker handles; named here for the loader and the engine.

ORDER_MESSAGES = {
    name: entry.item_segment
    for entry in registry.REGISTRY
    for trigger, name in zip(entry.triggers, entry.type_names, strict=True)
    if trigger.meaning == registry.Meaning.ORDER
}
"""Order message types the mapping handles, with the segment that makes one worklist item."""

ADT_TRIGGERS = _ADT.trigger_codes
"""ADT trigger events the mapping handles; A40 (merge) and A47 (change ID) name a prior ID."""

PRIOR_ID_TRIGGERS = registry.PRIOR_ID_TRIGGERS
"""ADT triggers whose mapping reads the prior patient from MRG (merge, change identifier)."""

ACCOUNT_MERGE_TRIGGERS = registry.ACCOUNT_MERGE_TRIGGERS
"""ADT triggers whose mapping reads MRG-1 where it is given, without requiring it (A35)."""

VISIT_TRIGGERS = registry.VISIT_TRIGGERS
"""ADT triggers whose mapping reads the visit (PV1) onto the patient's open worklist items."""

LINK_TRIGGERS = registry.LINK_TRIGGERS
"""ADT triggers whose mapping reads the linked patient from the second PID (A24, A37)."""

MERGED_PATIENT_POLICIES = ("refuse", "use_survivor")
"""What ``merged_patient:`` may say of an order or update naming a merged-away Patient ID:
refuse it (AE naming the survivor), or apply it to the survivor without its demographics."""
DEFAULT_MERGED_PATIENT = "refuse"

SIU_TRIGGERS = _SIU.trigger_codes
"""SIU trigger events a profile may map: new, rescheduled, modified, cancelled appointment."""

DEFAULT_SIU_CONTROL = {trigger.code: trigger.order_control for trigger in _SIU.triggers}
"""The order control each SIU trigger stands for, unless a profile's ``control:`` says otherwise."""

ACKNOWLEDGMENTS = ("ack", "application")
"""What an order message type's ``acknowledgment:`` may say (original mode)."""

ORDER_CONTROLS = ("NW", "XO", "CA", "OC", "DC", "SC", "HD", "RL")
"""The order controls (ORC-1) the order lifecycle acts on."""

SIU_REPEAT = _SIU.item_segment  # one worklist item per service of the appointment
SIU_BLOCK = "RGS"  # a resource group: its AIG / AIL / AIP belong to its AIS
SIU_BOUNDARIES = GROUP_BOUNDARIES | {"RGS", "AIS", "AIG", "AIL", "AIP"}

TOO_LONG_POLICIES = ("truncate", "reject")
"""What ``too_long:`` may say; keys (mapping.value_fit.STRICT_KEYWORDS) are never truncated."""

# Identifiers a profile's ``missing:`` decides about, and the policies each one allows.
MISSING_POLICIES: dict[str, tuple[str, ...]] = {
    "PatientID": ("reject", "allow"),
    "AccessionNumber": ("reject", "from_placer", "from_filler", "generate", "allow"),
    "StudyInstanceUID": ("reject", "generate", "allow"),
    "RequestedProcedureID": ("reject", "from_accession", "generate", "allow"),
    "ScheduledProcedureStepID": ("reject", "from_accession", "generate", "allow"),
}
DEFAULT_MISSING = {
    "PatientID": "reject",
    "AccessionNumber": "allow",
    "StudyInstanceUID": "generate",
    "RequestedProcedureID": "from_accession",
    "ScheduledProcedureStepID": "from_accession",
}


@dataclass
class MessageMapping:
    """The compiled rules for one message type of a profile (``ORM^O01``, ``ADT``, ``SIU``...)."""

    key: str
    where: str  # FILE:LINE of the message type's key
    repeat: str = ""  # orders: the segment that makes one item (OBR, IPC, AIS)
    repeat_else: tuple[str, ...] = ()  # ... when the message has none: the next one it has
    ends: frozenset[str] = GROUP_BOUNDARIES  # segments that end an item's group
    block: str = ""  # SIU: RGS, the segment that starts a block of resources
    patient: Section = field(default_factory=Section)
    order: Section = field(default_factory=Section)
    procedure: Section = field(default_factory=Section)
    step: Section = field(default_factory=Section)
    placer: Rule | None = None  # ORC-2.1, else OBR-2.1
    filler: Rule | None = None  # ORC-3.1, else OBR-3.1
    prior_patient_id: Rule | None = None  # MRG-1.1
    prior_issuer: Rule | None = None  # MRG-1.4
    visit: Section = field(default_factory=Section)  # ADT: PV1 onto the open items' orders
    linked_patient_id: Rule | None = None  # A24 / A37: the second PID's PID-3.1
    linked_issuer: Rule | None = None  # ... PID-3.4
    control: dict[str, str] = field(default_factory=dict)  # SIU: trigger -> order control
    control_where: dict[str, str] = field(default_factory=dict)  # ... FILE:LINE of each
    order_status: Rule | None = None  # SIU: the order status (an ORC-5 code); None: empty
    # Original mode: "ack" answers with an ACK, "application" with the order response
    # (ORR^O02, ORI^O24, ORG^O20: the registry's application_ack of the type).
    acknowledgment: str = "ack"

    def repeat_in(self, names: Sequence[str]) -> str:
        """The segment that makes the items of a message with these segments.

        ``repeat: [IPC, OBR]``: one item per IPC; a message without any IPC (an OMI from a
        sender that leaves the IPC out), one per OBR. The first one present wins; when none
        is, the first named (the message then has nothing to schedule).
        """
        for segment in (self.repeat, *self.repeat_else):
            if segment in names:
                return segment
        return self.repeat

    @property
    def describe_repeat(self) -> str:
        """``IPC`` or ``IPC, else OBR``: what makes the items, for reports."""
        return ", else ".join((self.repeat, *self.repeat_else))

    @property
    def is_order(self) -> bool:
        return self.key in ORDER_MESSAGES or self.is_schedule

    @property
    def is_schedule(self) -> bool:
        """True for ``SIU`` and ``SIU^S12``...: the order control comes from the trigger."""
        entry = registry.message_type(self.key.partition("^")[0])
        return entry is not None and any(
            trigger.meaning == registry.Meaning.APPOINTMENT for trigger in entry.triggers
        )

    @property
    def handles(self) -> tuple[str, ...]:
        """The MSH-9 types (``ADT^A08``, ``SIU^S12``) this entry maps."""
        code, _, own = self.key.partition("^")
        entry = registry.message_type(code)
        if entry is None:
            return ()
        triggers = (own,) if own else entry.trigger_codes
        if self.is_schedule:
            # A trigger without an order control (none by default, none in control:) is not mapped.
            triggers = tuple(trigger for trigger in triggers if trigger in self.control)
        return tuple(f"{code}^{trigger}" for trigger in triggers)


@dataclass(frozen=True)
class Policy:
    """A ``missing:`` entry: what to do when an identifier is absent, and where it was said."""

    action: str
    where: str = "default"


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


@dataclass
class Profile:
    """One mapping file, after ``extends:`` is resolved and every rule compiled."""

    name: str
    file: str
    description: str = ""
    enabled: bool = True  # a disabled profile is checked but never chosen
    priority: int = 0
    sending_application: str = "*"  # glob on MSH-3
    sending_facility: str = "*"  # glob on MSH-4
    extends: str | None = None
    uid_root: str = "2.25"
    too_long: str = "truncate"  # free text longer than its VR: "truncate" (warned) | "reject"
    missing: Mapping[str, Policy] = field(default_factory=dict)
    status: Mapping[tuple[str, str], StepStatus] = field(default_factory=dict)
    status_where: str = ""  # FILE:LINE of status:, for error messages
    tables: Mapping[str, Table] = field(default_factory=dict)
    messages: Mapping[str, MessageMapping] = field(default_factory=dict)
    merged_patient: Policy = field(default_factory=lambda: Policy(DEFAULT_MERGED_PATIENT))
    # Enhanced mode: the [[outbound.destinations]] name application acknowledgments go to.
    acknowledgment_destination: str = ""
    # True: honour MSH-15 / MSH-16 (commit ACK, then the application ACK). Off by default: many
    # senders fill them out of habit and read only the original-mode AA / AE / AR.
    enhanced_mode: bool = False

    def __post_init__(self) -> None:
        self._application = _glob(self.sending_application)
        self._facility = _glob(self.sending_facility)

    def matches(self, sending_application: str, sending_facility: str) -> bool:
        """True when MSH-3 and MSH-4 match the profile's globs (case does not matter)."""
        return bool(
            self._application.match(sending_application) and self._facility.match(sending_facility)
        )

    @property
    def specificity(self) -> int:
        """How many literal characters the globs hold: more means a more specific match."""
        return sum(
            len(pattern) - pattern.count("*") - pattern.count("?")
            for pattern in (self.sending_application, self.sending_facility)
        )

    @property
    def handled_types(self) -> frozenset[str]:
        return frozenset(name for entry in self.messages.values() for name in entry.handles)

    def message_mapping(self, type_name: str) -> MessageMapping | None:
        """The entry for ``ORM^O01``, ``ADT^A08``, ``SIU^S12``: a trigger's own entry first."""
        found = self.messages.get(type_name)
        if found is None and type_name in self.handled_types:
            found = self.messages.get(type_name.split("^")[0])
        return found

    def policy(self, keyword: str) -> Policy:
        return self.missing.get(keyword) or Policy(DEFAULT_MISSING[keyword])

    def status_for(self, order_control: str, order_status: str) -> StepStatus | None:
        """The step status for (ORC-1, ORC-5): exact pair, then ``XX/*``, ``*/YY``, ``*/*``."""
        for key in (
            (order_control, order_status),
            (order_control, "*"),
            ("*", order_status),
            ("*", "*"),
        ):
            found = self.status.get(key)
            if found is not None:
                return found
        return None

    def describe_match(self) -> str:
        return (
            f"sending application {self.sending_application!r}, "
            f"sending facility {self.sending_facility!r}, priority {self.priority}"
        )
