"""Load a folder of mapping files: validate every line, compile every rule, report every error.

The loader never stops at the first problem: it collects a :class:`MappingFileError` with
FILE:LINE for each one, so ``mwlbroker mappings check`` can list them all. Nothing is
compiled per message: field paths are parsed, regular expressions compiled, tables resolved
and DICOM keywords looked up here, once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict, tag_for_keyword

from mwlbroker.domain.worklist import SPS_KEYWORDS, StepStatus
from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.reader import FieldPath
from mwlbroker.mapping.profile import (
    DEFAULT_SIU_CONTROL,
    MISSING_POLICIES,
    ORDER_CONTROLS,
    ORDER_MESSAGES,
    SIU_BLOCK,
    SIU_BOUNDARIES,
    SIU_REPEAT,
    SIU_TRIGGERS,
    MessageMapping,
    Policy,
    Profile,
)
from mwlbroker.mapping.rules import (
    AttributeRule,
    ChoiceRule,
    CodedFieldRule,
    CodeRule,
    Condition,
    ConstantRule,
    DefaultRule,
    EndRule,
    FieldRule,
    FirstRule,
    ItemsRule,
    JoinRule,
    RepetitionChoice,
    Rule,
    Section,
    Test,
    TransformRule,
)
from mwlbroker.mapping.source import Mapping, MappingFileError, Node, Scalar, Sequence, read_yaml
from mwlbroker.mapping.transforms import TRANSFORMS, Table, TransformSetup

BUNDLED = Path(__file__).resolve().parent / "bundled"
"""The mapping files that ship with the broker (a link to the top-level ``mappings/``)."""

TOP_KEYS = (
    "profile",
    "description",
    "enabled",
    "priority",
    "match",
    "extends",
    "uid_root",
    "missing",
    "status",
    "tables",
    "messages",
)
MATCH_KEYS = ("sending_application", "sending_facility")
ORDER_SECTIONS = ("patient", "order", "procedure", "step")
ORDER_KEYS = ("repeat", *ORDER_SECTIONS, "placer_order_number", "filler_order_number")
SIU_KEYS = ("control", "order_status", *ORDER_KEYS)
ADT_KEYS = ("patient", "merge")
MERGE_KEYS = ("prior_patient_id", "prior_issuer")
# Identifiers the broker and the missing: policies expect at the requested procedure level.
PROCEDURE_ONLY = ("AccessionNumber", "RequestedProcedureID", "StudyInstanceUID")

BASE_KEYS = ("field", "first", "value", "join", "when", "rules", "code", "items", "end")
RULE_KEYS = (*BASE_KEYS, "transform", "default", "where", "sep", "then", "else")
TEST_KEYS = ("equals", "in", "matches", "empty")
CODE_KEYS = ("value", "meaning", "scheme", "version")
END_KEYS = ("start", "duration", "units")

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
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


class MappingLoadError(Exception):
    """The mapping files cannot be used; ``errors`` lists every problem with FILE:LINE."""

    def __init__(self, errors: list[MappingFileError]) -> None:
        self.errors = errors
        count = len(errors)
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in the mapping files:\n"
            + "\n".join(str(error) for error in errors)
        )


def mapping_files(folder: Path) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files of a folder, in name order."""
    return sorted(
        path for path in folder.iterdir() if path.suffix in (".yaml", ".yml") and path.is_file()
    )


def load_profiles(folder: Path) -> list[Profile]:
    """Every profile in ``folder``, compiled; raises :class:`MappingLoadError` listing all errors."""
    errors: list[MappingFileError] = []
    if not folder.is_dir():
        raise MappingLoadError([MappingFileError(str(folder), 0, "is not a folder")])
    roots = _read_folder(folder, errors)
    if not roots and not errors:
        errors.append(MappingFileError(str(folder), 0, "holds no mapping files (*.yaml)"))
    bundled: dict[str, Mapping] | None = None

    def base_for(name: str) -> Mapping | None:
        nonlocal bundled
        if name in roots:
            return roots[name]
        if bundled is None:
            bundled = {} if folder.resolve() == BUNDLED.resolve() else _read_folder(BUNDLED, errors)
        return bundled.get(name)

    profiles = []
    for name, root in roots.items():
        merged = _resolve_extends(root, base_for, errors, [name])
        if merged is not None:
            profile = _ProfileCompiler(merged, errors).compile()
            if profile is not None:
                profiles.append(profile)
    if errors:
        unique = sorted(set(errors), key=lambda error: (error.file, error.line, error.message))
        raise MappingLoadError(unique)
    return profiles


def _read_folder(folder: Path, errors: list[MappingFileError]) -> dict[str, Mapping]:
    roots: dict[str, Mapping] = {}
    for path in mapping_files(folder):
        root = read_yaml(path, errors)
        if root is None:
            continue
        if not isinstance(root, Mapping):
            errors.append(MappingFileError(root.file, root.line, "a mapping file is a mapping"))
            continue
        name_node = root.get("profile")
        if not isinstance(name_node, Scalar) or not _PROFILE_NAME.fullmatch(name_node.text):
            line = root.key_line("profile") if name_node is not None else 1
            errors.append(
                MappingFileError(
                    root.file, line, "profile: NAME is required (letters, digits, . _ -)"
                )
            )
            continue
        name = name_node.text
        if name in roots:
            errors.append(
                MappingFileError(
                    root.file,
                    name_node.line,
                    f"profile {name!r} is also defined in {roots[name].file}",
                )
            )
            continue
        roots[name] = root
    return roots


# -- extends: ----------------------------------------------------------------------------------

_NOT_INHERITED = ("profile", "description", "enabled", "priority", "match", "extends")
_MERGED_BY_KEY = ("missing", "status", "tables")
_MERGED_SECTIONS = ("patient", "order", "procedure", "step", "merge")


def _resolve_extends(
    root: Mapping,
    base_for: Callable[[str], Mapping | None],
    errors: list[MappingFileError],
    chain: list[str],
) -> Mapping | None:
    """The profile with its base's settings under its own (``Keyword: ~`` removes a rule)."""
    extends = root.get("extends")
    if extends is None:
        return root
    if not isinstance(extends, Scalar) or extends.is_null:
        errors.append(MappingFileError(root.file, root.key_line("extends"), "extends: NAME"))
        return None
    name = extends.text
    if name in chain:
        cycle = " -> ".join([*chain, name])
        errors.append(MappingFileError(root.file, extends.line, f"extends loops: {cycle}"))
        return None
    base = base_for(name)
    if base is None:
        errors.append(
            MappingFileError(
                root.file,
                extends.line,
                f"extends: no profile {name!r} in this folder or in the bundled mappings",
            )
        )
        return None
    resolved_base = _resolve_extends(base, base_for, errors, [*chain, name])
    if resolved_base is None:
        return None
    return _merge_profile(resolved_base, root)


def _merge_profile(base: Mapping, child: Mapping) -> Mapping:
    merged = Mapping(child.file, child.line)
    for key, entry in base.entries.items():
        if key not in _NOT_INHERITED:
            merged.entries[key] = entry
    for key, entry in child.entries.items():
        previous = merged.entries.get(key)
        if key in _MERGED_BY_KEY and previous is not None:
            merged.entries[key] = _merge_entry(previous, entry, _merge_mapping)
        elif key == "messages" and previous is not None:
            merged.entries[key] = _merge_entry(previous, entry, _merge_messages)
        else:
            merged.entries[key] = entry
    return merged


def _merge_entry(previous: Any, entry: Any, how: Callable[[Mapping, Mapping], Mapping]) -> Any:
    if isinstance(previous.value, Mapping) and isinstance(entry.value, Mapping):
        return type(entry)(entry.key, entry.key_line, how(previous.value, entry.value))
    return entry


def _merge_mapping(base: Mapping, child: Mapping) -> Mapping:
    merged = Mapping(child.file, child.line, dict(base.entries))
    for key, entry in child.entries.items():
        if isinstance(entry.value, Scalar) and entry.value.is_null:
            merged.entries.pop(key, None)  # "Keyword: ~" drops what the base said
        else:
            merged.entries[key] = entry
    return merged


def _merge_messages(base: Mapping, child: Mapping) -> Mapping:
    merged = Mapping(child.file, child.line, dict(base.entries))
    for key, entry in child.entries.items():
        previous = merged.entries.get(key)
        if isinstance(entry.value, Scalar) and entry.value.is_null:
            merged.entries.pop(key, None)
        elif previous is not None:
            merged.entries[key] = _merge_entry(previous, entry, _merge_message)
        else:
            merged.entries[key] = entry
    return merged


def _merge_message(base: Mapping, child: Mapping) -> Mapping:
    merged = Mapping(child.file, child.line, dict(base.entries))
    for key, entry in child.entries.items():
        previous = merged.entries.get(key)
        if key in _MERGED_SECTIONS and previous is not None:
            merged.entries[key] = _merge_entry(previous, entry, _merge_mapping)
        elif key == "control" and previous is not None:
            # "S13: ~" must reach the compiler, which starts from the built-in table.
            merged.entries[key] = _merge_entry(previous, entry, _overlay_mapping)
        else:
            merged.entries[key] = entry
    return merged


def _overlay_mapping(base: Mapping, child: Mapping) -> Mapping:
    return Mapping(child.file, child.line, {**base.entries, **child.entries})


# -- compiling one profile -----------------------------------------------------------------------


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


class _ProfileCompiler:
    """Checks one (merged) profile and builds its :class:`Profile`, adding to ``errors``."""

    def __init__(self, root: Mapping, errors: list[MappingFileError]) -> None:
        self.root = root
        self.errors = errors
        self.failed = False
        self.name = ""
        self.setup = TransformSetup(profile="")
        self.controls: list[tuple[str, str, tuple[str, int]]] = []  # (type, control, where)

    # -- reporting --

    def error(self, node: Node | tuple[str, int], message: str) -> None:
        file, line = (node.file, node.line) if isinstance(node, Node) else node
        self.errors.append(MappingFileError(file, line, message))
        self.failed = True

    def key_at(self, mapping: Mapping, key: str) -> tuple[str, int]:
        return (mapping.entries[key].value.file, mapping.key_line(key))

    def check_keys(self, mapping: Mapping, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping.entries:
            if key not in allowed:
                self.error(
                    self.key_at(mapping, key),
                    f"unknown key {key!r} in {what}{_suggest(key, allowed)}; "
                    f"allowed: {', '.join(allowed)}",
                )

    def mapping(self, node: Node | None, what: str) -> Mapping | None:
        if node is None or (isinstance(node, Scalar) and node.is_null):
            return None
        if not isinstance(node, Mapping):
            self.error(node, f"{what} must be a mapping (key: value lines), not {node.kind}")
            return None
        return node

    def text(self, node: Node | None, what: str, *, allow_empty: bool = False) -> str | None:
        if node is None:
            return None
        if not isinstance(node, Scalar) or (node.is_null and not allow_empty):
            self.error(node, f"{what} must be a single value, not {_kind(node)}")
            return None
        return "" if node.is_null else node.text

    # -- the profile --

    def compile(self) -> Profile | None:
        root = self.root
        self.check_keys(root, TOP_KEYS, "a profile")
        self.name = self.text(root.get("profile"), "profile") or ""
        profile = Profile(name=self.name, file=root.file)
        profile.description = self.text(root.get("description"), "description") or ""
        priority = root.get("priority")
        if priority is not None:
            if isinstance(priority, Scalar) and type(priority.value) is int:
                profile.priority = priority.value
            else:
                self.error(priority, "priority must be a whole number (higher wins)")
        enabled = root.get("enabled")
        if enabled is not None:
            if isinstance(enabled, Scalar) and type(enabled.value) is bool:
                profile.enabled = enabled.value
            else:
                self.error(enabled, "enabled must be true or false")
        extends = root.get("extends")
        profile.extends = extends.text if isinstance(extends, Scalar) else None
        self.compile_match(profile)
        self.compile_uid_root(profile)
        self.compile_missing(profile)
        self.compile_status(profile)
        profile.tables = self.compile_tables()
        self.setup = TransformSetup(profile=self.name, tables=profile.tables)
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
            policies[keyword] = Policy(action, f"{where[0]}:{where[1]}")
        profile.missing = policies

    def compile_status(self, profile: Profile) -> None:
        status = self.mapping(self.root.get("status"), "status")
        if status is None:
            return
        profile.status_where = f"{status.file}:{self.root.key_line('status')}"
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
            where = f"{entry.value.file}:{tables_node.key_line(name)}"
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
            mapping = MessageMapping(key=name, where=f"{where[0]}:{where[1]}")
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
        self.check_keys(node, SIU_KEYS if schedule else ORDER_KEYS, f"messages: {mapping.key}")
        repeat_node = node.get("repeat")
        if repeat_node is not None:
            value = self.text(repeat_node, "repeat")
            if value is not None and not _SEGMENT.fullmatch(value):
                self.error(repeat_node, f"repeat: {value!r} is not a segment ID such as OBR")
            elif value:
                repeat = value
        mapping.repeat = repeat
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
        mapping.control_where = {trigger: f"{f}:{line}" for trigger, (f, line) in places.items()}
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

    def optional_rule(self, node: Mapping | None, key: str, default: Any) -> Rule | None:
        if node is not None and key in node.entries:
            return self.rule(node.entries[key].value)
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
            attribute = self.attribute(keyword, where, entry.value)
            if attribute is not None:
                attributes.append(attribute)
        return Section(attributes)

    # -- rules --

    def attribute(self, keyword: str, where: tuple[str, int], node: Node) -> AttributeRule | None:
        """``Keyword: rule``, with the keyword checked against pydicom's data dictionary."""
        tag = tag_for_keyword(keyword)
        if tag is None:
            self.error(
                where,
                f"{keyword!r} is not a DICOM keyword{_suggest(keyword, keyword_dict)}",
            )
            return None
        if isinstance(node, Scalar) and node.is_null:
            self.error(
                where,
                f"{keyword} has no rule: give a field path, or remove the line "
                "(~ removes an inherited rule only in a profile with extends:)",
            )
            return None
        vr, vm = dictionary_VR(tag), dictionary_VM(tag)
        rule = self.rule(node)
        if rule is None:
            return None
        if vr == "SQ" and rule.kind != "sequence":
            self.error(
                where,
                f"{keyword} is a sequence (SQ): map it with code: (a coded value) or items:",
            )
            return None
        if vr != "SQ" and rule.kind == "sequence":
            self.error(where, f"{keyword} is {vr}, not a sequence: code: and items: give one")
            return None
        return AttributeRule(keyword, vr, vm, rule, f"{where[0]}:{where[1]}")

    def rule(self, node: Node) -> Rule | None:
        """Any rule form; ``None`` (after reporting) when it is not valid."""
        if isinstance(node, Scalar):
            if node.is_null:
                self.error(node, "a rule is missing here")
                return None
            return self.field(node, node.text)
        if isinstance(node, Sequence):
            self.error(
                node,
                "a list is not a rule: for the first of several fields write "
                "{first: [PATH, PATH]}, to join them {join: [PATH, PATH]}",
            )
            return None
        assert isinstance(node, Mapping)
        return self.rule_mapping(node)

    def field(self, node: Node, text: str, choice: RepetitionChoice | None = None) -> Rule | None:
        try:
            path = FieldPath.parse(text)
        except ValueError as error:
            hint = "" if "-" in text else f" (for a fixed value write {{value: {text}}})"
            self.error(node, f"{error}{hint}")
            return None
        return FieldRule(node.where, text.strip(), path, choice)

    def rule_mapping(self, node: Mapping) -> Rule | None:
        self.check_keys(node, RULE_KEYS, "a rule")
        keys = node.entries
        bases = [key for key in BASE_KEYS if key in keys]
        if "when" in keys and "then" not in keys:
            self.error(
                self.key_at(node, "when"),
                "when: needs then: (and optionally else:); inside rules: a branch "
                "may use when: with field:, value: ...",
            )
            return None
        if len(bases) != 1:
            what = (
                f"has {', '.join(bases)}: choose one"
                if bases
                else f"needs one of {', '.join(BASE_KEYS)}"
            )
            self.error(node, f"a rule {what}")
            return None
        base = bases[0]
        for modifier, owner in (("where", "field"), ("sep", "join"), ("then", "when")):
            if modifier in keys and base != owner:
                self.error(self.key_at(node, modifier), f"{modifier}: goes with {owner}:")
                return None
        if "else" in keys and base != "when":
            self.error(self.key_at(node, "else"), "else: goes with when: and then:")
            return None
        rule = self.base_rule(node, base)
        if rule is None:
            return None
        if "transform" in keys:
            rule = self.with_transforms(rule, keys["transform"].value)
            if rule is None:
                return None
        if "default" in keys:
            default_node = keys["default"].value
            if rule.kind == "sequence":
                self.error(default_node, "default: is for text values, not sequences")
                return None
            default = self.text(default_node, "default")
            if default is None:
                return None
            rule = DefaultRule(node.where, rule, default)
        return rule

    def base_rule(self, node: Mapping, base: str) -> Rule | None:
        value = node.entries[base].value
        if base == "field":
            choice = None
            if "where" in node.entries:
                choice = self.repetition_choice(node.entries["where"].value)
                if choice is None:
                    return None
            text = self.text(value, "field")
            return self.field(value, text, choice) if text is not None else None
        if base == "value":
            text = self.text(value, "value")
            return ConstantRule(node.where, text) if text is not None else None
        if base in ("first", "join"):
            rules = self.rule_list(value, base)
            if rules is None:
                return None
            if base == "first":
                kinds = {rule.kind for rule in rules}
                if len(kinds) > 1:
                    self.error(value, "first: mixes text and sequence rules")
                    return None
                return FirstRule(node.where, rules)
            if any(rule.kind == "sequence" for rule in rules):
                self.error(value, "join: works on text values, not sequences")
                return None
            separator = " "
            if "sep" in node.entries:
                separator = self.text(node.entries["sep"].value, "sep", allow_empty=True) or ""
            return JoinRule(node.where, rules, separator)
        if base == "when":
            condition = self.condition(value)
            then = self.rule(node.entries["then"].value)
            otherwise = self.rule(node.entries["else"].value) if "else" in node.entries else None
            if condition is None or then is None or ("else" in node.entries and not otherwise):
                return None
            branches: list[tuple[Condition | None, Rule | None]] = [(condition, then)]
            if otherwise is not None:
                branches.append((None, otherwise))
            return self.choice_rule(node, branches)
        if base == "rules":
            return self.rules_list(node, value)
        if base == "code":
            return self.code(node, value)
        if base == "end":
            return self.end(node, value)
        return self.items(node, value)

    def end(self, node: Mapping, value: Node) -> Rule | None:
        if not isinstance(value, Mapping):
            self.error(value, "end: takes {start: RULE, duration: RULE, units: RULE}")
            return None
        self.check_keys(value, END_KEYS, "end")
        parts: dict[str, Rule] = {}
        for key in END_KEYS:
            if key not in value.entries:
                if key != "units":
                    self.error(value, f"end: needs {key}:")
                    return None
                continue
            part = value.entries[key].value
            rule = self.rule(part)
            if rule is None:
                return None
            if rule.kind == "sequence":
                self.error(part, f"end: {key} must give text")
                return None
            parts[key] = rule
        return EndRule(node.where, parts["start"], parts["duration"], parts.get("units"))

    def choice_rule(
        self, node: Mapping, branches: list[tuple[Condition | None, Rule | None]]
    ) -> Rule | None:
        kinds = {rule.kind for _, rule in branches if rule is not None}
        if len(kinds) > 1:
            self.error(node, "the branches mix text and sequence rules")
            return None
        return ChoiceRule(node.where, branches)

    def rule_list(self, node: Node, what: str) -> list[Rule] | None:
        if not isinstance(node, Sequence) or not node.items:
            self.error(node, f"{what}: takes a list, such as [ORC-7.4, OBR-27.4]")
            return None
        rules = [self.rule(item) for item in node.items]
        return None if any(rule is None for rule in rules) else rules  # type: ignore[return-value]

    def rules_list(self, node: Mapping, value: Node) -> Rule | None:
        if not isinstance(value, Sequence) or not value.items:
            self.error(value, "rules: takes a list of {when: CONDITION, field/value/...: ...}")
            return None
        branches: list[tuple[Condition | None, Rule | None]] = []
        for index, item in enumerate(value.items):
            if not isinstance(item, Mapping):
                self.error(item, "each entry of rules: is a mapping with when: and a rule")
                return None
            condition = None
            if "when" in item.entries:
                condition = self.condition(item.entries["when"].value)
                if condition is None:
                    return None
                rest = Mapping(item.file, item.line, dict(item.entries))
                del rest.entries["when"]
                if not rest.entries:
                    self.error(item, "this branch has when: but no rule (value:, field: ...)")
                    return None
                rule = self.rule_mapping(rest)
            elif index != len(value.items) - 1:
                self.error(item, "only the last entry of rules: may leave out when:")
                return None
            else:
                rule = self.rule_mapping(item)
            if rule is None:
                return None
            branches.append((condition, rule))
        return self.choice_rule(node, branches)

    def code(self, node: Mapping, value: Node) -> Rule | None:
        if isinstance(value, Scalar | Sequence):
            items = value.items if isinstance(value, Sequence) else [value]
            fields = []
            for item in items:
                text = self.text(item, "code")
                rule = self.field(item, text) if text is not None else None
                if not isinstance(rule, FieldRule):
                    return None
                if rule.names_component:
                    self.error(
                        item,
                        f"code: {text} names a component; name the coded field "
                        f"(such as OBR-44): its components 1, 2, 3 are code, meaning, scheme",
                    )
                    return None
                fields.append(rule)
            return CodedFieldRule(node.where, fields)
        if not isinstance(value, Mapping):
            self.error(value, "code: takes a coded field (OBR-44) or {value:, meaning:, scheme:}")
            return None
        self.check_keys(value, CODE_KEYS, "code")
        if "value" not in value.entries:
            self.error(value, "code: needs value: (the code itself)")
            return None
        parts = {}
        for key in CODE_KEYS:
            if key in value.entries:
                part = value.entries[key].value
                rule = self.rule(part)
                if rule is None:
                    return None
                parts[key] = rule
                if rule.kind == "sequence":
                    self.error(part, f"code: {key} must give text")
                    return None
        return CodeRule(
            node.where,
            parts["value"],
            parts.get("meaning"),
            parts.get("scheme"),
            parts.get("version"),
        )

    def items(self, node: Mapping, value: Node) -> Rule | None:
        if not isinstance(value, Sequence) or not value.items:
            self.error(value, "items: takes a list of items, each {Keyword: rule, ...}")
            return None
        items = []
        for item in value.items:
            if not isinstance(item, Mapping):
                self.error(item, "each item of items: is a mapping {Keyword: rule, ...}")
                return None
            attributes = []
            for keyword, entry in item.entries.items():
                attribute = self.attribute(keyword, self.key_at(item, keyword), entry.value)
                if attribute is None:
                    return None
                attributes.append(attribute)
            items.append(attributes)
        return ItemsRule(node.where, items)

    def with_transforms(self, rule: Rule, node: Node) -> Rule | None:
        if rule.kind == "sequence":
            self.error(node, "transform: works on text values, not sequences")
            return None
        specs = node.items if isinstance(node, Sequence) else [node]
        if not specs:
            self.error(node, "transform: names at least one transform")
            return None
        functions = []
        for index, spec in enumerate(specs):
            built = self.transform(spec)
            if built is None:
                return None
            function, takes_parts, name = built
            if takes_parts:
                if index != 0:
                    self.error(spec, f"{name} reads a whole field: it must come first")
                    return None
                if not self.read_parts(rule, spec, name):
                    return None
            functions.append(function)
        return TransformRule(rule.where, rule, functions)

    def read_parts(self, rule: Rule, spec: Node, name: str) -> bool:
        """Switch the field rules under ``rule`` to reading whole repetitions."""
        fields = [rule] if isinstance(rule, FieldRule) else getattr(rule, "rules", None)
        if not fields or not all(isinstance(field, FieldRule) for field in fields):
            self.error(spec, f"{name} needs field: PATH or first: [PATH, ...] (a whole field)")
            return False
        for field in fields:
            if field.names_component:
                whole = field.text.split(".")[0]
                self.error(
                    spec,
                    f"{name} reads all components of a field: write {whole}, not {field.text}",
                )
                return False
            field.parts = True
        return True

    def transform(self, node: Node) -> tuple[Any, bool, str] | None:
        arguments: Node | None = None
        if isinstance(node, Scalar) and not node.is_null:
            name = node.text
        elif isinstance(node, Mapping) and len(node.entries) == 1:
            name, entry = next(iter(node.entries.items()))
            arguments = entry.value
        else:
            self.error(node, "a transform is NAME or {NAME: arguments}")
            return None
        spec = TRANSFORMS.get(name)
        if spec is None:
            self.error(
                node,
                f"unknown transform {name!r}{_suggest(name, TRANSFORMS)}; "
                f"known: {', '.join(sorted(TRANSFORMS))}",
            )
            return None
        values: dict[str, Any] = {}
        if isinstance(arguments, Scalar) and not arguments.is_null:
            if spec.shorthand is None:
                self.error(arguments, f"{name} takes no arguments")
                return None
            values[spec.shorthand] = arguments
        elif isinstance(arguments, Mapping):
            if not spec.params:
                self.error(arguments, f"{name} takes no arguments")
                return None
            self.check_keys(arguments, tuple(spec.params), f"transform {name}")
            values = {key: entry.value for key, entry in arguments.entries.items()}
        elif arguments is not None and not (isinstance(arguments, Scalar) and arguments.is_null):
            self.error(arguments, f"arguments of {name} are a mapping such as {{table: NAME}}")
            return None
        converted: dict[str, Any] = {}
        for param_name, param in spec.params.items():
            given = values.get(param_name)
            if given is None:
                if param.required:
                    self.error(node, f"{name} needs {param_name}:")
                    return None
                converted[param_name] = param.default
                continue
            value = self.argument(given, param.kind, f"{name} {param_name}")
            if value is None:
                return None
            converted[param_name] = value
        try:
            function = spec.factory(self.setup, **converted)
        except ValueError as error:
            self.error(node, str(error))
            return None
        return function, spec.components, name

    def argument(self, node: Node, kind: type, what: str) -> Any:
        if isinstance(node, Scalar) and not node.is_null:
            if kind is str:
                return node.text
            if kind is bool and type(node.value) is bool:
                return node.value
            if kind is int and type(node.value) is int:
                return node.value
        self.error(node, f"{what} must be {_type_name(kind)}")
        return None

    # -- conditions --

    def condition(self, node: Node) -> Condition | None:
        if not isinstance(node, Mapping):
            self.error(
                node,
                "a condition is a mapping such as {field: OBR-24, equals: CT}, "
                "or all: / any: / not:",
            )
            return None
        operators = [key for key in ("all", "any", "not") if key in node.entries]
        if operators:
            if len(node.entries) != 1:
                self.error(node, f"{operators[0]}: stands alone in its condition")
                return None
            operator = operators[0]
            value = node.entries[operator].value
            if operator == "not":
                inner = self.condition(value)
                return Condition(operator="not", operands=[inner]) if inner else None
            if not isinstance(value, Sequence) or not value.items:
                self.error(value, f"{operator}: takes a list of conditions")
                return None
            operands = [self.condition(item) for item in value.items]
            if any(operand is None for operand in operands):
                return None
            return Condition(operator=operator, operands=operands)  # type: ignore[arg-type]
        test = self.test(node, "a condition")
        if test is None:
            return None
        subject = Mapping(node.file, node.line, dict(node.entries))
        for key in TEST_KEYS:
            subject.entries.pop(key, None)
        rule = self.rule_mapping(subject) if subject.entries else None
        if rule is None:
            if not subject.entries:
                self.error(node, "the condition needs what to test: field: PATH")
            return None
        return Condition(rule=rule, test=test)

    def test(self, node: Mapping, what: str) -> Test | None:
        tests = [key for key in TEST_KEYS if key in node.entries]
        if len(tests) != 1:
            self.error(node, f"{what} needs exactly one test of {', '.join(TEST_KEYS)}")
            return None
        name = tests[0]
        value = node.entries[name].value
        if name == "equals":
            text = self.text(value, "equals", allow_empty=True)
            return Test(name, text) if text is not None else None
        if name == "in":
            items = value.items if isinstance(value, Sequence) else [value]
            texts = [self.text(item, "in: entry") for item in items]
            return None if any(text is None for text in texts) else Test(name, texts)
        if name == "matches":
            text = self.text(value, "matches")
            if text is None:
                return None
            try:
                return Test(name, re.compile(text))
            except re.error as error:
                self.error(value, f"matches: {text!r} is not a regular expression: {error}")
                return None
        if not isinstance(value, Scalar) or type(value.value) is not bool:
            self.error(value, "empty: is true or false")
            return None
        return Test(name, value.value)

    def repetition_choice(self, node: Node) -> RepetitionChoice | None:
        if not isinstance(node, Mapping):
            self.error(node, "where: is a mapping such as {component: 4, equals: HOSPITAL}")
            return None
        self.check_keys(node, ("component", "subcomponent", *TEST_KEYS), "where")
        numbers = {}
        for key in ("component", "subcomponent"):
            value = node.get(key)
            if value is None:
                numbers[key] = 1
                if key == "component":
                    self.error(node, "where: needs component: N (the component to test)")
                    return None
                continue
            if not isinstance(value, Scalar) or type(value.value) is not int or value.value < 1:
                self.error(value, f"{key}: is a position counting from 1")
                return None
            numbers[key] = value.value
        test = self.test(node, "where:")
        if test is None:
            return None
        return RepetitionChoice(numbers["component"], numbers["subcomponent"], test)


def _kind(node: Node) -> str:
    if isinstance(node, Scalar) and node.is_null:
        return "nothing"
    return node.kind


def _type_name(kind: type) -> str:
    return {str: "text", int: "a whole number", bool: "true or false"}[kind]
