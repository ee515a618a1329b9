"""Compile the rule language of mapping files: fields, codes, items, transforms, conditions.

A rule says where an attribute's value comes from: ``field: OBR-18`` (or just ``OBR-18``),
``value:``, ``first:`` / ``join:`` of other rules, ``when:`` / ``then:`` / ``else:`` and
``rules:`` (choices), ``code:`` and ``items:`` (sequences), ``end:`` (a start plus a duration),
each optionally with ``transform:`` and ``default:``. Each base form has its compiler method,
found in :data:`_BASE_RULES`. Field paths are parsed, regular expressions compiled and
transforms built here, once, never per message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict, tag_for_keyword

from mwlbroker.hl7v2.reader import FieldPath
from mwlbroker.mapping.diagnostics import Checker, Report, suggest
from mwlbroker.mapping.rules import (
    DEFAULT_TOO_LONG,
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
    SelectRule,
    Test,
    TransformRule,
)
from mwlbroker.mapping.source import Mapping, Node, Scalar, Sequence, short_where
from mwlbroker.mapping.transforms import TRANSFORMS, TransformSetup, TransformSpec

TEST_KEYS = ("equals", "in", "matches", "empty")
CODE_KEYS = ("value", "meaning", "scheme", "version")
END_KEYS = ("start", "duration", "units")
SELECT_KEYS = ("segment", "repetition", "from", "where", "read")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")


class RuleCompiler(Checker):
    """Checks rules and builds them, reporting to the profile's :class:`Report`."""

    def __init__(self, report: Report, setup: TransformSetup | None = None) -> None:
        super().__init__(report)
        # What transforms are built with (the profile's name and tables), set once known.
        self.setup = setup or TransformSetup(profile="")
        # The profile's too_long: policy, set before its messages are compiled.
        self.too_long = DEFAULT_TOO_LONG

    def attribute(self, keyword: str, where: tuple[str, int], node: Node) -> AttributeRule | None:
        """``Keyword: rule``, with the keyword checked against pydicom's data dictionary."""
        tag = tag_for_keyword(keyword)
        if tag is None:
            self.error(
                where,
                f"{keyword!r} is not a DICOM keyword{suggest(keyword, keyword_dict)}",
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
        return AttributeRule(keyword, vr, vm, rule, short_where(*where), self.too_long)

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
        """The rule ``base:`` (one of :data:`BASE_KEYS`) makes, by its compiler in the table."""
        return _BASE_RULES[base](self, node, node.entries[base].value)

    def field_rule(self, node: Mapping, value: Node) -> Rule | None:
        """``field: PATH``, optionally ``where:`` a repetition's component says which."""
        choice = None
        if "where" in node.entries:
            choice = self.repetition_choice(node.entries["where"].value)
            if choice is None:
                return None
        text = self.text(value, "field")
        return self.field(value, text, choice) if text is not None else None

    def constant(self, node: Mapping, value: Node) -> Rule | None:
        """``value: TEXT``, a fixed value."""
        text = self.text(value, "value")
        return ConstantRule(node.where, text) if text is not None else None

    def first(self, node: Mapping, value: Node) -> Rule | None:
        """``first: [RULE, ...]``, the first that gives a value."""
        rules = self.rule_list(value, "first")
        if rules is None:
            return None
        kinds = {rule.kind for rule in rules}
        if len(kinds) > 1:
            self.error(value, "first: mixes text and sequence rules")
            return None
        return FirstRule(node.where, rules)

    def join(self, node: Mapping, value: Node) -> Rule | None:
        """``join: [RULE, ...]`` with ``sep:`` (a space unless told), the values joined."""
        rules = self.rule_list(value, "join")
        if rules is None:
            return None
        if any(rule.kind == "sequence" for rule in rules):
            self.error(value, "join: works on text values, not sequences")
            return None
        separator = " "
        if "sep" in node.entries:
            separator = self.text(node.entries["sep"].value, "sep", allow_empty=True) or ""
        return JoinRule(node.where, rules, separator)

    def when(self, node: Mapping, value: Node) -> Rule | None:
        """``when: CONDITION, then: RULE``, optionally ``else: RULE``."""
        condition = self.condition(value)
        then = self.rule(node.entries["then"].value)
        otherwise = self.rule(node.entries["else"].value) if "else" in node.entries else None
        if condition is None or then is None or ("else" in node.entries and not otherwise):
            return None
        branches: list[tuple[Condition | None, Rule | None]] = [(condition, then)]
        if otherwise is not None:
            branches.append((None, otherwise))
        return self.choice_rule(node, branches)

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
        compiled = [self.rule(item) for item in node.items]  # every item, for every error
        rules = [rule for rule in compiled if rule is not None]
        return rules if len(rules) == len(compiled) else None

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
            function, transform_spec = built
            name = transform_spec.name
            if transform_spec.components:
                if index != 0:
                    self.error(spec, f"{name} reads a whole field: it must come first")
                    return None
                if not self.read_parts(rule, spec, name, transform_spec.subcomponents):
                    return None
            functions.append(function)
        return TransformRule(rule.where, rule, functions)

    def read_parts(self, rule: Rule, spec: Node, name: str, subcomponents: bool = False) -> bool:
        """Switch the field rules under ``rule`` to reading whole repetitions (or components)."""
        fields = [rule] if isinstance(rule, FieldRule) else getattr(rule, "rules", None)
        what = "a component, such as OBR-34.1" if subcomponents else "a whole field"
        if not fields or not all(isinstance(field, FieldRule) for field in fields):
            self.error(spec, f"{name} needs field: PATH or first: [PATH, ...] ({what})")
            return False
        for field in fields:
            whole = field.text.split(".")[0]
            if subcomponents and field.text.count(".") != 1:
                self.error(
                    spec,
                    f"{name} reads all subcomponents of one component: write {whole}.N, "
                    f"not {field.text}",
                )
                return False
            if not subcomponents and field.names_component:
                self.error(
                    spec,
                    f"{name} reads all components of a field: write {whole}, not {field.text}",
                )
                return False
            field.parts = True
            field.subparts = subcomponents
        return True

    def select(self, node: Mapping, value: Node, every: bool) -> Rule | None:
        """``find:`` / ``each:`` ``{segment: OBX | repetition: PID-3, from:, where:, read:}``."""
        what = "each" if every else "find"
        if not isinstance(value, Mapping):
            self.error(value, f"{what}: takes {{segment: SEG, where: CONDITION, read: RULE}}")
            return None
        self.check_keys(value, SELECT_KEYS, what)
        keys = value.entries
        sources = [key for key in ("segment", "repetition") if key in keys]
        if len(sources) != 1 or "read" not in keys:
            self.error(value, f"{what}: needs read: and one of segment: or repetition:")
            return None
        source = self.text(keys[sources[0]].value, sources[0])
        if source is None:
            return None
        segment, field = source.strip(), None
        if sources[0] == "segment":
            if not _SEGMENT_NAME.fullmatch(segment):
                self.error(keys["segment"].value, f"segment: {source!r} is not a segment name")
                return None
        else:
            try:
                path = FieldPath.parse(segment)
            except ValueError as error:
                self.error(keys["repetition"].value, str(error))
                return None
            if "(" in segment or "." in segment:
                self.error(keys["repetition"].value, "repetition: names a field, such as PID-3")
                return None
            segment, field = path.segment, path.field
        first = 1
        if "from" in keys:
            start = keys["from"].value
            if not isinstance(start, Scalar) or type(start.value) is not int or start.value < 1:
                self.error(start, "from: is a position counting from 1")
                return None
            first = start.value
        condition = None
        if "where" in keys:
            condition = self.condition(keys["where"].value)
            if condition is None:
                return None
        inner = self.rule(keys["read"].value)
        if inner is None:
            return None
        return SelectRule(
            node.where,
            every=every,
            segment=segment,
            field=field,
            first=first,
            condition=condition,
            inner=inner,
        )

    def find(self, node: Mapping, value: Node) -> Rule | None:
        """``find:``, the first occurrence or repetition that qualifies and has a value."""
        return self.select(node, value, every=False)

    def each(self, node: Mapping, value: Node) -> Rule | None:
        """``each:``, every occurrence or repetition that qualifies."""
        return self.select(node, value, every=True)

    def transform(self, node: Node) -> tuple[Any, TransformSpec] | None:
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
                f"unknown transform {name!r}{suggest(name, TRANSFORMS)}; "
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
        return function, spec

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
            compiled = [self.condition(item) for item in value.items]
            operands = [operand for operand in compiled if operand is not None]
            if len(operands) != len(compiled):
                return None
            return Condition(operator=operator, operands=operands)
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


_BaseCompiler = Callable[[RuleCompiler, Mapping, Node], Rule | None]

_BASE_RULES: dict[str, _BaseCompiler] = {
    "field": RuleCompiler.field_rule,
    "first": RuleCompiler.first,
    "value": RuleCompiler.constant,
    "join": RuleCompiler.join,
    "when": RuleCompiler.when,
    "rules": RuleCompiler.rules_list,
    "code": RuleCompiler.code,
    "items": RuleCompiler.items,
    "end": RuleCompiler.end,
    "find": RuleCompiler.find,
    "each": RuleCompiler.each,
}
"""Each base form of a rule and the method that compiles it (``node`` holds ``value``)."""

BASE_KEYS = tuple(_BASE_RULES)
"""The keys a rule is made from: exactly one of them per rule, in the order errors list them."""
RULE_KEYS = (*BASE_KEYS, "transform", "default", "where", "sep", "then", "else")


def _type_name(kind: type) -> str:
    return {str: "text", int: "a whole number", bool: "true or false"}[kind]
