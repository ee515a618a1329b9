"""Compile the sections of one (merged) profile: match, uid_root, missing, status, tables, messages.

A profile says which messages it takes (``match:``), how it makes UIDs, what to do when an
identifier is missing, how ORC-1 / ORC-5 become a step status, its lookup tables, and per
message type (orders, SIU appointments, ADT) which rule gives each DICOM attribute. The rules
themselves are compiled by :class:`~mwlbroker.mapping.rule_compiler.RuleCompiler`; both report
to the same list of errors.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import tag_for_keyword

from mwlbroker.domain.worklist import SPS_KEYWORDS, StepStatus
from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.reader import FieldPath
from mwlbroker.mapping.diagnostics import Checker, Report
from mwlbroker.mapping.diagnostics import suggest as _suggest
from mwlbroker.mapping.profile import (
    ACKNOWLEDGMENTS,
    DEFAULT_SIU_CONTROL,
    MERGED_PATIENT_POLICIES,
    MISSING_POLICIES,
    ORDER_CONTROLS,
    ORDER_MESSAGES,
    SIU_BLOCK,
    SIU_BOUNDARIES,
    SIU_REPEAT,
    SIU_TRIGGERS,
    TOO_LONG_POLICIES,
    MessageMapping,
    Policy,
    Profile,
)
from mwlbroker.mapping.rule_compiler import RuleCompiler
from mwlbroker.mapping.rules import FieldRule, FirstRule, Rule, Section, TooLong
from mwlbroker.mapping.source import (
    Mapping,
    MappingFileError,
    Node,
    Scalar,
    Sequence,
    short_where,
)
from mwlbroker.mapping.transforms import Table, TransformSetup

TOP_KEYS = (
    "profile",
    "description",
    "enabled",
    "priority",
    "match",
    "extends",
    "uid_root",
    "too_long",
    "missing",
    "status",
    "tables",
    "messages",
    "merged_patient",
    "acknowledgment_destination",
    "enhanced_mode",
)
MATCH_KEYS = ("sending_application", "sending_facility")
ORDER_SECTIONS = ("patient", "order", "procedure", "step")
ORDER_KEYS = ("repeat", *ORDER_SECTIONS, "placer_order_number", "filler_order_number")
SIU_KEYS = ("control", "order_status", *ORDER_KEYS)
ADT_KEYS = ("patient", "visit", "merge", "link")
MERGE_KEYS = ("prior_patient_id", "prior_issuer")
LINK_KEYS = ("linked_patient_id", "linked_issuer")
# Identifiers the broker and the missing: policies expect at the requested procedure level.
PROCEDURE_ONLY = ("AccessionNumber", "RequestedProcedureID", "StudyInstanceUID")

_UID_ROOT = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_SEGMENT = re.compile(r"[A-Z][A-Z0-9]{2}")
_ORDER_CONTROL = re.compile(r"[A-Z]{2}|\*")
_ORDER_STATUS = re.compile(r"[A-Z]{1,2}|\*|")
_UID_ROOT_MAX = 40  # leaves at least 23 digits of a 64-character UID for the generated part

DEFAULT_PLACER = ("ORC-2.1", "OBR-2.1")  # ORC-2 Placer Order Number, else OBR-2
DEFAULT_FILLER = ("ORC-3.1", "OBR-3.1")  # ORC-3 Filler Order Number, else OBR-3
DEFAULT_SIU_PLACER = ("ORC-2.1", "SCH-1.1")  # an ORC's order number, else SCH-1 Placer Appt ID
DEFAULT_SIU_FILLER = ("ORC-3.1", "SCH-2.1")  # ... else SCH-2 Filler Appointment ID
DEFAULT_PRIOR_ID = "MRG-1.1"  # MRG-1 Prior Patient Identifier List, ID
DEFAULT_PRIOR_ISSUER = "MRG-1.4"  # ... assigning authority
DEFAULT_LINKED_ID = "PID[2]-3.1"  # A24 / A37: the second PID is the linked patient's
DEFAULT_LINKED_ISSUER = "PID[2]-3.4"


class ProfileCompiler(Checker):
    """Checks one (merged) profile and builds its :class:`Profile`, adding to ``errors``."""

    def __init__(self, root: Mapping, errors: list[MappingFileError]) -> None:
        super().__init__(Report(errors))
        self.root = root
        self.name = ""
        self.rules = RuleCompiler(self.report)
        self.controls: list[tuple[str, str, tuple[str, int]]] = []  # (type, control, where)

    # -- the profile --

    def compile(self) -> Profile | None:
        root = self.root
        self.check_keys(root, TOP_KEYS, "a profile")
        self.name = self.text(root.get("profile"), "profile") or ""
        profile = Profile(name=self.name, file=root.file)
        profile.description = self.text(root.get("description"), "description") or ""
        priority = self.plain("priority", int, "a whole number (higher wins)")
        if priority is not None:
            profile.priority = priority
        enabled = self.plain("enabled", bool, "true or false")
        if enabled is not None:
            profile.enabled = enabled
        extends = root.get("extends")
        profile.extends = extends.text if isinstance(extends, Scalar) else None
        self.compile_match(profile)
        self.compile_uid_root(profile)
        self.compile_too_long(profile)
        self.compile_missing(profile)
        self.compile_merged_patient(profile)
        self.compile_status(profile)
        enhanced_mode = self.plain("enhanced_mode", bool, "true or false")
        if enhanced_mode is not None:
            profile.enhanced_mode = enhanced_mode
        profile.acknowledgment_destination = (
            self.text(root.get("acknowledgment_destination"), "acknowledgment_destination") or ""
        ).strip()
        profile.tables = self.compile_tables()
        self.rules.setup = TransformSetup(profile=self.name, tables=profile.tables)
        profile.messages = self.compile_messages()
        if any(entry.is_order for entry in profile.messages.values()) and not profile.status:
            self.error(
                (root.file, root.line),
                f"profile {self.name} maps orders but has no status: table "
                "(ORC-1/ORC-5 -> step status)",
            )
        elif profile.status:
            controls = {control for control, _ in profile.status}
            for type_name, control, where in self.controls:
                if control not in controls and "*" not in controls:
                    self.error(
                        where,
                        f"{type_name} maps to order control {control}, but status: has no "
                        f"{control}/... entry (add {control}/* or the pairs it needs)",
                    )
        if not profile.messages and "messages" not in root.entries:
            self.error((root.file, root.line), "messages: is required (what to map, per type)")
        profile.__post_init__()
        return None if self.failed else profile

    def plain(self, key: str, kind: type, what: str) -> Any:
        """The profile's ``key:`` as YAML reads it when it is a ``kind`` (``true`` is not a
        number here); None when absent, or (reported) another value."""
        node = self.root.get(key)
        if node is None:
            return None
        if isinstance(node, Scalar) and type(node.value) is kind:
            return node.value
        self.error(node, f"{key} must be {what}")
        return None

    def compile_match(self, profile: Profile) -> None:
        match = self.mapping(self.root.get("match"), "match")
        if match is None:
            return
        self.check_keys(match, MATCH_KEYS, "match")
        for key in MATCH_KEYS:
            pattern = self.text(match.get(key), f"match: {key}")
            if pattern:
                setattr(profile, key, pattern)

    def compile_uid_root(self, profile: Profile) -> None:
        node = self.root.get("uid_root")
        root = self.text(node, "uid_root")
        if root is None or node is None:
            return
        if not _UID_ROOT.fullmatch(root) or len(root) > _UID_ROOT_MAX:
            self.error(
                node,
                f"uid_root {root!r} is not a UID root: digits and dots, no leading zeros, "
                f"at most {_UID_ROOT_MAX} characters (2.25 makes UUID-derived UIDs)",
            )
            return
        profile.uid_root = root

    def compile_too_long(self, profile: Profile) -> None:
        """``too_long: truncate | reject``: what the rules do with over-long free text."""
        node = self.root.get("too_long")
        where = ""
        if node is not None:
            action = self.text(node, "too_long")
            if action is not None and action not in TOO_LONG_POLICIES:
                self.error(
                    node,
                    f"too_long: {action!r} is not a policy (choose {' | '.join(TOO_LONG_POLICIES)})",
                )
            elif action is not None:
                profile.too_long = action
                where = short_where(node.file, node.line)
        self.rules.too_long = TooLong(profile.too_long, self.name, where)

    def compile_missing(self, profile: Profile) -> None:
        missing = self.mapping(self.root.get("missing"), "missing")
        if missing is None:
            return
        policies = {}
        for keyword, entry in missing.entries.items():
            where = self.key_at(missing, keyword)
            if keyword not in MISSING_POLICIES:
                self.error(
                    where,
                    f"missing: {keyword} is not an identifier with a policy"
                    f"{_suggest(keyword, MISSING_POLICIES)}; "
                    f"these have one: {', '.join(MISSING_POLICIES)}",
                )
                continue
            action = self.text(entry.value, f"missing: {keyword}")
            allowed = MISSING_POLICIES[keyword]
            if action is None:
                continue
            if action not in allowed:
                self.error(
                    entry.value,
                    f"missing: {keyword}: {action!r} is not a policy for it "
                    f"(choose {' | '.join(allowed)})",
                )
                continue
            policies[keyword] = Policy(action, short_where(*where))
        profile.missing = policies

    def compile_merged_patient(self, profile: Profile) -> None:
        """``merged_patient:``: what an order or update naming a merged-away Patient ID gets."""
        node = self.root.get("merged_patient")
        action = self.text(node, "merged_patient")
        if node is None or action is None:
            return
        if action not in MERGED_PATIENT_POLICIES:
            self.error(
                node,
                f"merged_patient: {action!r} is not a policy "
                f"(choose {' | '.join(MERGED_PATIENT_POLICIES)})",
            )
            return
        profile.merged_patient = Policy(action, f"{node.file}:{node.line}")

    def compile_status(self, profile: Profile) -> None:
        status = self.mapping(self.root.get("status"), "status")
        if status is None:
            return
        profile.status_where = short_where(status.file, self.root.key_line("status"))
        table: dict[tuple[str, str], StepStatus] = {}
        # REMOVED is the broker's own mark for a step an update no longer lists.
        names = [member.name for member in StepStatus if member is not StepStatus.REMOVED]
        for key, entry in status.entries.items():
            where = self.key_at(status, key)
            control, slash, order_status = key.partition("/")
            control, order_status = control.strip().upper(), order_status.strip().upper()
            if (
                not slash
                or not _ORDER_CONTROL.fullmatch(control)
                or not _ORDER_STATUS.fullmatch(order_status)
            ):
                self.error(
                    where,
                    f"status key {key!r} must be ORC-1/ORC-5 such as NW/SC, CA/* or NW/ "
                    "(* for any ORC-5, nothing after / for an empty ORC-5)",
                )
                continue
            value = self.text(entry.value, f"status {key}")
            if value is None:
                continue
            if value.upper() not in names:
                self.error(
                    entry.value,
                    f"status {key}: {value!r} is not a step status ({', '.join(names)})",
                )
                continue
            table[(control, order_status)] = StepStatus[value.upper()]
        profile.status = table

    def compile_tables(self) -> dict[str, Table]:
        tables_node = self.mapping(self.root.get("tables"), "tables")
        if tables_node is None:
            return {}
        tables = {}
        for name, entry in tables_node.entries.items():
            rows_node = self.mapping(entry.value, f"table {name}")
            if rows_node is None:
                if isinstance(entry.value, Scalar):
                    self.error(entry.value, f"table {name} must be a mapping: CODE: VALUE lines")
                continue
            rows: dict[str, Any] = {}
            plain = columns = False
            for code, row in rows_node.entries.items():
                if isinstance(row.value, Mapping):
                    columns = True
                    cells = {}
                    for column, cell in row.value.entries.items():
                        text = self.text(cell.value, f"table {name}: {code}: {column}")
                        if text is not None:
                            cells[column] = text
                    rows[code] = cells
                else:
                    plain = True
                    text = self.text(row.value, f"table {name}: {code}", allow_empty=True)
                    if text is not None:
                        rows[code] = text
            if plain and columns:
                self.error(
                    entry.value,
                    f"table {name} mixes plain values and rows with columns; use one form",
                )
            where = short_where(entry.value.file, tables_node.key_line(name))
            tables[name] = Table(name, rows, where)
        return tables

    # -- messages --

    def compile_messages(self) -> dict[str, MessageMapping]:
        messages = self.mapping(self.root.get("messages"), "messages")
        if messages is None:
            return {}
        supported = list(registry.section_keys())
        compiled = {}
        for key, entry in messages.entries.items():
            where = self.key_at(messages, key)
            name = key.strip().upper()
            if name not in supported:
                self.error(
                    where,
                    f"message type {key!r} is not one the broker maps{_suggest(name, supported)}"
                    f"; use {registry.section_help()}",
                )
                continue
            section = self.mapping(entry.value, f"messages: {key}")
            if section is None:
                if isinstance(entry.value, Scalar):
                    self.error(entry.value, f"messages: {key} needs its rules")
                continue
            mapping = MessageMapping(key=name, where=short_where(*where))
            if name in ORDER_MESSAGES:
                self.compile_order_message(mapping, section, ORDER_MESSAGES[name])
            elif mapping.is_schedule:
                self.compile_order_message(mapping, section, SIU_REPEAT)
                self.compile_schedule(mapping, section, where)
            else:
                self.compile_adt_message(mapping, section)
            compiled[name] = mapping
        return compiled

    def compile_order_message(self, mapping: MessageMapping, node: Mapping, repeat: str) -> None:
        schedule = mapping.is_schedule
        keys = SIU_KEYS if schedule else (*ORDER_KEYS, "acknowledgment")
        self.check_keys(node, keys, f"messages: {mapping.key}")
        if not schedule:
            self.compile_acknowledgment(mapping, node)
        repeats = self.compile_repeat(node.get("repeat"), schedule)
        mapping.repeat = repeats[0] if repeats else repeat
        mapping.repeat_else = tuple(repeats[1:])
        seen: dict[str, str] = {}
        for level in ORDER_SECTIONS:
            setattr(mapping, level, self.compile_section(node, level, seen))
        placer, filler = (
            (DEFAULT_SIU_PLACER, DEFAULT_SIU_FILLER)
            if schedule
            else (DEFAULT_PLACER, DEFAULT_FILLER)
        )
        mapping.placer = self.text_rule(node, "placer_order_number", placer)
        mapping.filler = self.text_rule(node, "filler_order_number", filler)

    def compile_acknowledgment(self, mapping: MessageMapping, node: Mapping) -> None:
        """``acknowledgment: ack | application``: what answers the order in original mode."""
        value_node = node.get("acknowledgment")
        value = self.text(value_node, "acknowledgment")
        if value_node is None or value is None:
            return
        if value.strip().lower() not in ACKNOWLEDGMENTS:
            entry = registry.message_type(mapping.key.partition("^")[0])
            response = entry.application_ack if entry is not None else "the order response"
            self.error(
                value_node,
                f"acknowledgment: {value!r} is not one of {' | '.join(ACKNOWLEDGMENTS)} "
                f"(ack: an ACK; application: {response})",
            )
            return
        mapping.acknowledgment = value.strip().lower()

    def compile_repeat(self, node: Node | None, schedule: bool) -> list[str]:
        """``repeat: OBR``, or ``repeat: [IPC, OBR]``: the first of these the message has."""
        if node is None:
            return []
        items = node.items if isinstance(node, Sequence) else [node]
        if not items or (schedule and len(items) > 1):
            what = "a segment ID" if schedule else "a segment ID or a list of them"
            self.error(node, f"repeat: must be {what} such as OBR")
            return []
        repeats: list[str] = []
        for item in items:
            value = self.text(item, "repeat")
            if not value:
                continue
            if not _SEGMENT.fullmatch(value):
                self.error(item, f"repeat: {value!r} is not a segment ID such as OBR")
            elif value in repeats:
                self.error(item, f"repeat: {value} is named twice")
            else:
                repeats.append(value)
        return repeats if len(repeats) == len(items) else []

    def compile_schedule(
        self, mapping: MessageMapping, node: Mapping, where: tuple[str, int]
    ) -> None:
        """``control:`` and ``order_status:`` of ``SIU`` / ``SIU^S12``..., and its segments."""
        mapping.ends = SIU_BOUNDARIES
        mapping.block = SIU_BLOCK
        own = mapping.key.partition("^")[2]  # "" for SIU (every trigger)
        triggers = (own,) if own else SIU_TRIGGERS
        control = {trigger: DEFAULT_SIU_CONTROL[trigger] for trigger in triggers}
        places = dict.fromkeys(triggers, where)
        table = node.get("control")
        if isinstance(table, Mapping):
            for key, entry in table.entries.items():
                line = self.key_at(table, key)
                trigger = key.strip().upper()
                if trigger not in triggers:
                    allowed = " ".join(triggers)
                    self.error(
                        line,
                        f"control: {key!r} is not a trigger of {mapping.key} (use {allowed})"
                        f"{_suggest(trigger, triggers)}",
                    )
                    continue
                if isinstance(entry.value, Scalar) and entry.value.is_null:
                    control.pop(trigger, None)  # "S14: ~": the profile does not map it
                    continue
                code = self.order_control(entry.value, f"control: {key}")
                if code is not None:
                    control[trigger], places[trigger] = code, line
        elif own and isinstance(table, Scalar) and not table.is_null:
            code = self.order_control(table, "control")
            if code is not None:
                control[own], places[own] = code, (table.file, table.line)
        elif table is not None and not (isinstance(table, Scalar) and table.is_null):
            example = "XO or {" + own + ": XO}" if own else "{S12: NW, S13: XO, S14: XO, S15: CA}"
            self.error(table, f"control: is the order control per trigger, such as {example}")
        if own and own not in control:
            self.error(where, f"{mapping.key} leaves out its own trigger in control:")
        mapping.control = control
        mapping.control_where = {
            trigger: short_where(file, line) for trigger, (file, line) in places.items()
        }
        for trigger, code in control.items():
            self.controls.append((f"SIU^{trigger}", code, places[trigger]))
        if "order_status" in node.entries:
            mapping.order_status = self.text_rule(node, "order_status", ())

    def order_control(self, node: Node, what: str) -> str | None:
        text = self.text(node, what)
        if text is None:
            return None
        code = text.strip().upper()
        if code not in ORDER_CONTROLS:
            self.error(
                node,
                f"{what}: {text!r} is not an order control the broker acts on "
                f"({' '.join(ORDER_CONTROLS)}){_suggest(code, ORDER_CONTROLS)}",
            )
            return None
        return code

    def text_rule(self, node: Mapping, key: str, default: Any) -> Rule | None:
        """A rule that must give text (order numbers, order status), or the default paths."""
        rule = self.optional_rule(node, key, default)
        if rule is not None and rule.kind == "sequence":
            self.error(node.entries[key].value, f"{key}: must give text, not a sequence")
            return None
        return rule

    def compile_adt_message(self, mapping: MessageMapping, node: Mapping) -> None:
        self.check_keys(node, ADT_KEYS, f"messages: {mapping.key}")
        mapping.patient = self.compile_section(node, "patient", {})
        merge = self.mapping(node.get("merge"), "merge")
        if merge is not None:
            self.check_keys(merge, MERGE_KEYS, "merge")
        mapping.prior_patient_id = self.optional_rule(merge, "prior_patient_id", DEFAULT_PRIOR_ID)
        mapping.prior_issuer = self.optional_rule(merge, "prior_issuer", DEFAULT_PRIOR_ISSUER)
        mapping.visit = self.compile_section(node, "visit", {})
        for keyword in ("PatientID", "IssuerOfPatientID"):
            if any(attribute.keyword == keyword for attribute in mapping.visit.attributes):
                self.error(
                    self.key_at(node, "visit"),
                    f"visit: maps {keyword}; the patient's identity belongs in patient:",
                )
        link = self.mapping(node.get("link"), "link")
        if link is not None:
            self.check_keys(link, LINK_KEYS, "link")
        mapping.linked_patient_id = self.optional_rule(link, "linked_patient_id", DEFAULT_LINKED_ID)
        mapping.linked_issuer = self.optional_rule(link, "linked_issuer", DEFAULT_LINKED_ISSUER)

    def optional_rule(self, node: Mapping | None, key: str, default: Any) -> Rule | None:
        if node is not None and key in node.entries:
            return self.rules.rule(node.entries[key].value)
        paths = (default,) if isinstance(default, str) else default
        if not paths:
            return None
        rules: list[Rule] = [
            FieldRule("built-in default", path, FieldPath.parse(path)) for path in paths
        ]
        return rules[0] if len(rules) == 1 else FirstRule("built-in default", rules)

    def compile_section(self, node: Mapping, level: str, seen: dict[str, str]) -> Section:
        section = self.mapping(node.get(level), level)
        if section is None:
            return Section()
        attributes = []
        for keyword, entry in section.entries.items():
            where = self.key_at(section, keyword)
            if level == "step" and keyword == "ScheduledProcedureStepStatus":
                self.error(where, "ScheduledProcedureStepStatus comes from the status: table")
                continue
            if tag_for_keyword(keyword) is not None:
                if level == "step" and keyword not in SPS_KEYWORDS:
                    self.error(
                        where,
                        f"{keyword} is not an attribute of the Scheduled Procedure Step Sequence"
                        f" (PS3.4 K.6-1): put it under procedure:, order: or patient:",
                    )
                    continue
                if level != "step" and keyword in SPS_KEYWORDS:
                    self.error(
                        where,
                        f"{keyword} belongs in step: (inside the Scheduled Procedure Step "
                        "Sequence)",
                    )
                    continue
                if keyword in PROCEDURE_ONLY and level != "procedure":
                    self.error(where, f"{keyword} belongs in procedure: (one per procedure)")
                    continue
            if keyword in seen:
                self.error(where, f"{keyword} is also mapped in {seen[keyword]}: (choose one)")
                continue
            seen[keyword] = level
            attribute = self.rules.attribute(keyword, where, entry.value)
            if attribute is not None:
                attributes.append(attribute)
        return Section(attributes)
