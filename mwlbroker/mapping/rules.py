"""Compiled mapping rules and the context they read a message through.

The loader turns each ``Keyword: rule`` of a mapping file into a small tree of these objects
once; mapping a message only walks the tree. A rule's :meth:`Rule.evaluate` returns the value
in DICOM form: text, a list of item dicts for a sequence, :data:`CLEAR` for the HL7 null
``""``, or ``None`` when the message has no value (the stored value is kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from pydicom import config as pydicom_config
from pydicom.valuerep import validate_value

from mwlbroker.domain.errors import MappingError
from mwlbroker.domain.messages import HL7ErrorCode, MessageWarning
from mwlbroker.domain.worklist import CLEAR, Attributes
from mwlbroker.hl7v2.reader import HL7_NULL, FieldPath, HL7Message
from mwlbroker.mapping import value_fit
from mwlbroker.mapping.transforms import TransformError, end_of

# Segments that end a repeat group besides the repeat segment itself: a new order (ORC), or a
# new order detail (OBR) when the items are IPC segments inside it.
GROUP_BOUNDARIES = frozenset({"ORC", "OBR"})

SHARED = 0  # scope of a segment every item may read (MSH, PID, PV1, ORC...)
IN_GROUP = -1  # scope of a segment inside one item's group (its OBR, ZDS, NTE)


class Grouping(NamedTuple):
    """The items of one message and what each segment is visible to.

    ``scopes[i]`` is :data:`SHARED`, :data:`IN_GROUP`, or the number (from 1) of the block
    whose items share it; ``blocks[i]`` is the block segment ``i`` lies in (0: none) and
    ``spans[n]`` the (start, end) of block ``n``.
    """

    groups: list[tuple[int, int]]
    scopes: list[int]
    blocks: list[int]
    spans: dict[int, tuple[int, int]]
    ends: frozenset[str] = GROUP_BOUNDARIES  # the segments that also end a run of shared ones


class Layout:
    """Where each segment sits in one message, computed once per message."""

    __slots__ = ("message", "names", "ordinals", "positions", "warnings")

    def __init__(self, message: HL7Message) -> None:
        self.message = message
        self.warnings: list[MessageWarning] = []  # values the mapping changed to fit DICOM
        self.names = message.segment_names
        seen: dict[str, int] = {}
        self.ordinals: list[int] = []  # occurrence number of the segment at each index
        self.positions: dict[str, list[int]] = {}  # the indexes of each segment, in order
        for index, name in enumerate(self.names):
            seen[name] = seen.get(name, 0) + 1
            self.ordinals.append(seen[name])
            self.positions.setdefault(name, []).append(index)

    def groups(
        self, repeat: str, ends: frozenset[str] = GROUP_BOUNDARIES, block: str = ""
    ) -> Grouping:
        """The items of a message: (start, end) of each group, and who may read each segment.

        A group runs from a ``repeat`` segment up to the next repeat segment or one of ``ends``
        (ORC, OBR). Segments outside every group (MSH, PID, PV1, ORC, TQ1...) are shared by the
        items. With ``block`` (SIU: RGS) the message is also cut into blocks, each from a
        ``block`` segment to the next: a segment of a block outside every group (AIG, AIL) is
        shared only by the items of that block.
        """
        names = self.names
        count = len(names)
        blocks = [0] * count
        spans: dict[int, tuple[int, int]] = {}
        if block:
            number = 0
            for index, name in enumerate(names):
                if name == block:
                    number += 1
                    spans[number] = (index, count)
                    if number > 1:
                        spans[number - 1] = (spans[number - 1][0], index)
                blocks[index] = number
        scopes = list(blocks)
        groups = []
        for start, name in enumerate(names):
            if name != repeat:
                continue
            end = start + 1
            while end < count:
                name = names[end]
                if name in (repeat, block) or name in ends:
                    break
                end += 1
            groups.append((start, end))
            scopes[start:end] = [IN_GROUP] * (end - start)
        return Grouping(groups, scopes, blocks, spans, ends | {repeat})


class Context:
    """Reads fields for one worklist item, or for the whole message.

    For an item, a segment of its own group is read first; then, when the item lies in a
    block (SIU: an RGS with its AIS, AIG, AIL, AIP), the block's shared segments after the
    item, then before it; else the nearest shared segment before the group (ORC, TQ1, OBR for
    IPC items, PV1, PID), at the first occurrence of a run of them (repeated TQ1); else the
    first shared one after it. A segment inside another item's
    group (its ZDS, NTE) or another block (its AIG) is never read: so with ORC/OBR/ZDS/OBR/ZDS
    each OBR gets its own ZDS, and an OBR without a ZDS gets none.
    For the whole message (no group), the first occurrence is read.
    """

    __slots__ = ("_occurrences", "end", "grouping", "layout", "message", "repetitions", "start")

    def __init__(
        self, layout: Layout, start: int = 0, end: int = 0, grouping: Grouping | None = None
    ) -> None:
        self.layout = layout
        self.message = layout.message
        self.start = start
        self.end = end
        self.grouping = grouping
        self._occurrences: dict[str, int] = {}
        # (segment, field) -> the repetition an ``each: {repetition: ...}`` rule is reading
        self.repetitions: dict[tuple[str, int], int] = {}

    def at(
        self, segment: str, occurrence: int, repetition: tuple[int, int] | None = None
    ) -> Context:
        """The same item, reading ``segment`` at ``occurrence`` (and one field's repetition)."""
        other = Context(self.layout, self.start, self.end, self.grouping)
        other._occurrences = {**self._occurrences, segment: occurrence}
        other.repetitions = self.repetitions
        if repetition is not None:
            field, number = repetition
            other.repetitions = {**self.repetitions, (segment, field): number}
        return other

    def visible(self, segment: str) -> list[int]:
        """Every occurrence of ``segment`` this item may read: its own group's, then shared ones.

        For the whole message (no group) that is every occurrence, in message order.
        """
        found = self.layout.positions.get(segment)
        if not found:
            return []
        ordinals = self.layout.ordinals
        if self.grouping is None:
            return [ordinals[i] for i in found]
        own = [ordinals[i] for i in found if self.start <= i < self.end]
        scopes = self.grouping.scopes
        block = self.grouping.blocks[self.start] if self.start < len(scopes) else 0
        shared = [
            ordinals[i]
            for i in found
            if not self.start <= i < self.end
            and (scopes[i] == SHARED or (block and scopes[i] == block))
        ]
        return own + shared

    def occurrence(self, segment: str) -> int:
        """Which occurrence of ``segment`` this item reads (0: none it may read)."""
        found = self._occurrences.get(segment)
        if found is not None:
            return found
        found = 1 if self.grouping is None else self._find(segment)
        self._occurrences[segment] = found
        return found

    def _find(self, segment: str) -> int:
        names, ordinals = self.layout.names, self.layout.ordinals
        assert self.grouping is not None
        scopes = self.grouping.scopes
        for index in range(self.start, self.end):
            if names[index] == segment:
                return ordinals[index]
        block = self.grouping.blocks[self.start] if self.start < len(names) else 0
        if block:
            first, last = self.grouping.spans[block]
            for index in range(self.end, last):
                if names[index] == segment and scopes[index] == block:
                    return ordinals[index]
            for index in range(self.start - 1, first - 1, -1):
                if names[index] == segment and scopes[index] == block:
                    return ordinals[index]
        for index in range(self.start - 1, -1, -1):
            if names[index] == segment and scopes[index] == SHARED:
                return ordinals[self._first_of_run(index)]
        for index in range(self.end, len(names)):
            if names[index] == segment and scopes[index] == SHARED:
                return ordinals[index]
        return 0

    def _first_of_run(self, found: int) -> int:
        """The first segment like the one at ``found`` in its run of shared segments.

        A repeated shared segment (two TQ1 after one ORC: HL7 lets timing repeat) is read at
        its first occurrence, as a message without groups is; the run ends at a group or a
        segment that starts one (ORC, OBR), so another order's TQ1 is never taken.
        """
        names, grouping = self.layout.names, self.grouping
        assert grouping is not None
        segment, first = names[found], found
        if segment in grouping.ends:
            return found
        for index in range(found - 1, -1, -1):
            if grouping.scopes[index] != SHARED or names[index] in grouping.ends:
                break
            if names[index] == segment:
                first = index
        return first


Value = Any  # str | list[dict] | CLEAR | tuple[str, ...] (components, inside a chain only)


class Rule:
    """One way of producing a value; ``where`` is the FILE:LINE it was written at."""

    __slots__ = ("kind", "where")

    def __init__(self, where: str, kind: str = "text") -> None:
        self.where = where
        self.kind = kind  # "text" or "sequence" (a list of item dicts)

    def evaluate(self, context: Context) -> Value:
        raise NotImplementedError

    def paths(self) -> list[str]:
        """The field paths the rule reads, for error locations and reports."""
        return []


class Test:
    """A test on one value: equals, in, matches or empty."""

    __slots__ = ("_function", "argument", "name")

    def __init__(self, name: str, argument: Any) -> None:
        self.name = name
        self.argument = argument
        if name == "equals":
            self._function: Callable[[str], bool] = argument.__eq__
        elif name == "in":
            self._function = frozenset(argument).__contains__
        elif name == "matches":
            self._function = lambda value: argument.search(value) is not None
        else:
            self._function = lambda _value: not argument  # "empty": a value is not empty

    def __call__(self, value: Value) -> bool:
        if value is None or value is CLEAR or value == "":
            return self.name == "empty" and bool(self.argument)
        return self._function(value)


class RepetitionChoice:
    """Picks the repetition of a field whose component matches: ``where: {component: 4, ...}``."""

    __slots__ = ("component", "subcomponent", "test")

    def __init__(self, component: int, subcomponent: int, test: Test) -> None:
        self.component = component
        self.subcomponent = subcomponent
        self.test = test

    def choose(self, message: HL7Message, path: FieldPath) -> int | None:
        for repetition in range(1, message.repetition_count(path) + 1):
            value = message.value(
                FieldPath(
                    path.segment,
                    path.field,
                    repetition,
                    self.component,
                    self.subcomponent,
                    path.occurrence,
                )
            )
            if self.test(CLEAR if value == HL7_NULL else value):
                return repetition
        return None


class FieldRule(Rule):
    """``PID-3.1``: one value, or with ``parts`` the components of the repetition."""

    __slots__ = (
        "_paths",
        "absolute",
        "choice",
        "fixed_repetition",
        "parts",
        "path",
        "subparts",
        "text",
    )

    def __init__(
        self, where: str, text: str, path: FieldPath, choice: RepetitionChoice | None = None
    ) -> None:
        super().__init__(where)
        self.text = text
        self.path = path
        self.absolute = "[" in text  # OBR[2]-18 names its occurrence; OBR-18 follows the item
        self.fixed_repetition = "(" in text  # PID-3(2) names its repetition; PID-3 may follow
        self.choice = choice
        self.parts = False  # the components of the repetition, for transforms that read many
        self.subparts = False  # ... the subcomponents of the named component instead
        self._paths: dict[tuple[int, int], FieldPath] = {}

    @property
    def names_component(self) -> bool:
        """True when the text names a component (``PID-5.1``), not the whole field."""
        return "." in self.text.split("-", 1)[1]

    def _path(self, occurrence: int, repetition: int) -> FieldPath:
        path = self._paths.get((occurrence, repetition))
        if path is None:
            path = replace(self.path, occurrence=occurrence, repetition=repetition)
            self._paths[(occurrence, repetition)] = path
        return path

    def evaluate(self, context: Context) -> Value:
        occurrence = (
            self.path.occurrence if self.absolute else context.occurrence(self.path.segment)
        )
        if not occurrence:
            return None
        repetition = self.path.repetition
        if context.repetitions and not self.fixed_repetition:
            repetition = context.repetitions.get((self.path.segment, self.path.field), repetition)
        path = self._path(occurrence, repetition)
        if self.choice is not None:
            chosen = self.choice.choose(context.message, path)
            if chosen is None:
                return None
            path = self._path(occurrence, chosen)
        if self.parts:
            parts = (
                context.message.subcomponents(path)
                if self.subparts
                else context.message.components(path)
            )
            if parts is None:
                return None
            return CLEAR if parts == [HL7_NULL] else tuple(parts)
        value = context.message.value(path)
        if value is None:
            return None
        return CLEAR if value == HL7_NULL else value

    def paths(self) -> list[str]:
        return [self.text]


class ConstantRule(Rule):
    """``{value: CT}``."""

    __slots__ = ("value",)

    def __init__(self, where: str, value: str) -> None:
        super().__init__(where)
        self.value = value or None

    def evaluate(self, context: Context) -> Value:
        return self.value


def _has_value(value: Value) -> bool:
    if value is None or value is CLEAR:
        return False
    if isinstance(value, tuple):
        return any(part and part != HL7_NULL for part in value)
    return bool(value)


class FirstRule(Rule):
    """``{first: [ORC-7.4, OBR-27.4]}``: the first rule with a value (CLEAR if only nulls)."""

    __slots__ = ("rules",)

    def __init__(self, where: str, rules: Sequence[Rule]) -> None:
        super().__init__(where)
        self.rules = list(rules)
        self.kind = self.rules[0].kind if self.rules else "text"

    def evaluate(self, context: Context) -> Value:
        cleared = False
        for rule in self.rules:
            value = rule.evaluate(context)
            if _has_value(value):
                return value
            cleared = cleared or value is CLEAR
        return CLEAR if cleared else None

    def paths(self) -> list[str]:
        return [path for rule in self.rules for path in rule.paths()]


class JoinRule(Rule):
    """``{join: [PV1-3.1, PV1-3.2], sep: " "}``: the values that are present, joined."""

    __slots__ = ("rules", "separator")

    def __init__(self, where: str, rules: Sequence[Rule], separator: str) -> None:
        super().__init__(where)
        self.rules = list(rules)
        self.separator = separator

    def evaluate(self, context: Context) -> Value:
        parts = []
        cleared = False
        for rule in self.rules:
            value = rule.evaluate(context)
            if isinstance(value, str) and value:
                parts.append(value)
            cleared = cleared or value is CLEAR
        # Only the HL7 null "" and nothing else (PV1-3 ""): the sender clears the value.
        return self.separator.join(parts) or (CLEAR if cleared else None)

    def paths(self) -> list[str]:
        return [path for rule in self.rules for path in rule.paths()]


class Condition:
    """A test on a rule's value, or all / any / not of other conditions."""

    __slots__ = ("operands", "operator", "rule", "test")

    def __init__(
        self,
        *,
        rule: Rule | None = None,
        test: Test | None = None,
        operator: str = "",
        operands: Sequence[Condition] = (),
    ) -> None:
        self.rule = rule
        self.test = test
        self.operator = operator
        self.operands = list(operands)

    def holds(self, context: Context) -> bool:
        if self.operator == "all":
            return all(operand.holds(context) for operand in self.operands)
        if self.operator == "any":
            return any(operand.holds(context) for operand in self.operands)
        if self.operator == "not":
            return not self.operands[0].holds(context)
        assert self.rule is not None and self.test is not None
        return self.test(self.rule.evaluate(context))

    def paths(self) -> list[str]:
        if self.rule is not None:
            return self.rule.paths()
        return [path for operand in self.operands for path in operand.paths()]


class ChoiceRule(Rule):
    """``when/then/else`` and ``rules: [{when: ..., ...}, ...]``: the first branch that holds."""

    __slots__ = ("branches",)

    def __init__(self, where: str, branches: Sequence[tuple[Condition | None, Rule | None]]):
        super().__init__(where)
        self.branches = list(branches)
        kinds = {rule.kind for _, rule in self.branches if rule is not None}
        self.kind = kinds.pop() if len(kinds) == 1 else "text"

    def evaluate(self, context: Context) -> Value:
        for condition, rule in self.branches:
            if condition is None or condition.holds(context):
                return rule.evaluate(context) if rule is not None else None
        return None

    def paths(self) -> list[str]:
        found = []
        for condition, rule in self.branches:
            found += condition.paths() if condition else []
            found += rule.paths() if rule else []
        return found


def code_item(value: str, meaning: Value, scheme: Value, version: Value) -> dict[str, str]:
    """A code sequence item (PS3.3 8.8); a code longer than 16 characters is a Long Code Value."""
    item = {"LongCodeValue" if len(value) > 16 else "CodeValue": value}
    if isinstance(scheme, str) and scheme:
        item["CodingSchemeDesignator"] = scheme
    if isinstance(version, str) and version:
        item["CodingSchemeVersion"] = version
    if isinstance(meaning, str) and meaning:
        item["CodeMeaning"] = meaning
    return item


class CodeRule(Rule):
    """``{code: {value: ..., meaning: ..., scheme: ...}}``: a one-item code sequence."""

    __slots__ = ("meaning", "scheme", "value", "version")

    def __init__(
        self,
        where: str,
        value: Rule,
        meaning: Rule | None,
        scheme: Rule | None,
        version: Rule | None,
    ) -> None:
        super().__init__(where, "sequence")
        self.value = value
        self.meaning = meaning
        self.scheme = scheme
        self.version = version

    def evaluate(self, context: Context) -> Value:
        value = self.value.evaluate(context)
        if not isinstance(value, str) or not value:
            return value if value is CLEAR else None

        def text(rule: Rule | None) -> Value:
            return rule.evaluate(context) if rule is not None else None

        return [code_item(value, text(self.meaning), text(self.scheme), text(self.version))]

    def paths(self) -> list[str]:
        return self.value.paths()


class CodedFieldRule(Rule):
    """``{code: OBR-44}`` or ``{code: [OBR-44, OBR-4]}``: CE/CWE code^meaning^scheme."""

    __slots__ = ("fields",)

    def __init__(self, where: str, fields: Sequence[FieldRule]) -> None:
        super().__init__(where, "sequence")
        self.fields = list(fields)
        for rule in self.fields:
            rule.parts = True

    def evaluate(self, context: Context) -> Value:
        cleared = False
        for rule in self.fields:
            parts = rule.evaluate(context)
            if isinstance(parts, tuple) and parts[0] and parts[0] != HL7_NULL:
                meaning, scheme = (*parts, "", "")[1:3]
                return [code_item(parts[0], meaning, scheme, None)]
            cleared = cleared or parts is CLEAR
        return CLEAR if cleared else None

    def paths(self) -> list[str]:
        return [rule.text for rule in self.fields]


class ItemsRule(Rule):
    """``{items: [{Keyword: rule, ...}, ...]}``: a sequence; items without any value are left out."""

    __slots__ = ("items",)

    def __init__(self, where: str, items: Sequence[Sequence[AttributeRule]]) -> None:
        super().__init__(where, "sequence")
        self.items = [list(item) for item in items]

    def evaluate(self, context: Context) -> Value:
        built = []
        for item in self.items:
            attributes = {}
            for attribute in item:
                value = attribute.evaluate(context)
                if value is not None and value is not CLEAR:
                    attributes[attribute.keyword] = value
            if attributes:
                built.append(attributes)
        return built or None

    def paths(self) -> list[str]:
        return [path for item in self.items for attribute in item for path in attribute.paths()]


class SelectRule(Rule):
    """``find:`` / ``each:``: read a rule in the occurrences of a segment (or the repetitions of
    a field) that a condition picks: ``find`` gives the first that has a value, ``each`` all
    of them (text values joined by a backslash, DICOM's value separator; sequence items one
    after the other).

    ``segment: OBX`` looks at every OBX the item may read, its own group's first; so
    ``{find: {segment: OBX, where: {field: OBX-3.1, equals: 3141-9}, read: OBX-5}}`` is the
    body weight wherever the sender put it. ``repetition: PID-3`` (with ``from: 2``) looks at
    the repetitions of that field; rules inside read that repetition unless they name one.
    """

    __slots__ = ("condition", "every", "field", "first", "inner", "segment")

    def __init__(
        self,
        where: str,
        *,
        every: bool,
        segment: str,
        field: int | None,
        first: int,
        condition: Condition | None,
        inner: Rule,
    ) -> None:
        super().__init__(where, inner.kind)
        self.every = every
        self.segment = segment
        self.field = field  # None: occurrences of the segment; else repetitions of this field
        self.first = first  # from: the first repetition (or occurrence, counting visible ones)
        self.condition = condition
        self.inner = inner

    def _contexts(self, context: Context) -> list[Context]:
        if self.field is None:
            found = context.visible(self.segment)[self.first - 1 :]
            return [context.at(self.segment, occurrence) for occurrence in found]
        occurrence = context.occurrence(self.segment)
        if not occurrence:
            return []
        count = context.message.repetition_count(
            FieldPath(self.segment, self.field, occurrence=occurrence)
        )
        return [
            context.at(self.segment, occurrence, (self.field, repetition))
            for repetition in range(self.first, count + 1)
        ]

    def evaluate(self, context: Context) -> Value:
        values: list[Any] = []
        for candidate in self._contexts(context):
            if self.condition is not None and not self.condition.holds(candidate):
                continue
            value = self.inner.evaluate(candidate)
            if not _has_value(value):
                continue
            if not self.every:
                return value
            if isinstance(value, list):
                values.extend(value)
            elif isinstance(value, str):
                values.append(value)
        if not values:
            return None
        return values if self.kind == "sequence" else "\\".join(values)

    def paths(self) -> list[str]:
        found = self.condition.paths() if self.condition is not None else []
        return found + self.inner.paths()


class TransformRule(Rule):
    """A rule whose value goes through ``transform:`` functions, in order (never CLEAR)."""

    __slots__ = ("functions", "inner")

    def __init__(self, where: str, inner: Rule, functions: Sequence[Callable[[Any], Any]]):
        super().__init__(where)
        self.inner = inner
        self.functions = list(functions)

    def evaluate(self, context: Context) -> Value:
        value = self.inner.evaluate(context)
        if not _has_value(value):
            return value
        for function in self.functions:
            value = function(list(value) if isinstance(value, tuple) else value)
            if not value:
                return None
        return value

    def paths(self) -> list[str]:
        return self.inner.paths()


class DefaultRule(Rule):
    """``default: X``: X when the rule gives no value (an HL7 null still clears)."""

    __slots__ = ("default", "inner")

    def __init__(self, where: str, inner: Rule, default: str) -> None:
        super().__init__(where)
        self.inner = inner
        self.default = default

    def evaluate(self, context: Context) -> Value:
        value = self.inner.evaluate(context)
        return self.default if value is None or value == "" else value

    def paths(self) -> list[str]:
        return self.inner.paths()


class EndRule(Rule):
    """``{end: {start: AIS-4, duration: AIS-7, units: AIS-8}}``: the HL7 date/time a span ends."""

    __slots__ = ("duration", "start", "units")

    def __init__(self, where: str, start: Rule, duration: Rule, units: Rule | None) -> None:
        super().__init__(where)
        self.start = start
        self.duration = duration
        self.units = units

    def evaluate(self, context: Context) -> Value:
        start = self.start.evaluate(context)
        duration = self.duration.evaluate(context)
        if not isinstance(start, str) or not start or not isinstance(duration, str):
            return None
        if not duration.strip():
            return None
        units = self.units.evaluate(context) if self.units is not None else None
        return end_of(start, duration, units if isinstance(units, str) else None)

    def paths(self) -> list[str]:
        rules = [self.start, self.duration, *([self.units] if self.units else [])]
        return [path for rule in rules for path in rule.paths()]


_TEXT_VRS = frozenset({"LT", "ST", "UT"})  # may hold a backslash; every other string VR splits
# PS3.5 6.2: binary integers; a rule gives them as decimal text, checked against their range.
_INTEGER_RANGES = {"US": (0, 2**16 - 1), "SS": (-(2**15), 2**15 - 1), "UL": (0, 2**32 - 1)}


class TooLong(NamedTuple):
    """A profile's ``too_long:``: what becomes of a free-text value longer than its VR allows."""

    action: str = "truncate"  # "truncate" (with a warning) or "reject" (AE 102)
    profile: str = ""
    where: str = ""  # FILE:LINE of too_long:, "" for the default


DEFAULT_TOO_LONG = TooLong()


class AttributeRule:
    """``Keyword: rule`` with the attribute's VR: evaluates and checks the value fits DICOM."""

    __slots__ = ("_fits", "keyword", "multiple", "rule", "too_long", "vr", "where")

    def __init__(
        self,
        keyword: str,
        vr: str,
        vm: str,
        rule: Rule,
        where: str,
        too_long: TooLong = DEFAULT_TOO_LONG,
    ) -> None:
        self.keyword = keyword
        self.vr = vr
        self.multiple = vm != "1"
        self.rule = rule
        self.where = where
        self.too_long = too_long
        self._fits = ""  # the last value that passed the check (fixed values, codes repeat)

    def evaluate(self, context: Context) -> Value:
        try:
            value = self.rule.evaluate(context)
        except TransformError as error:
            raise MappingError(
                f"{self.keyword}: {error} (from {self._source()}, rule at {self.where})",
                error_code=error.error_code,
                location=self._location(context),
            ) from None
        if isinstance(value, str) and value != self._fits:
            checked = self.check(value, context)
            if checked == value:
                self._fits = value  # a cut value is checked (and warned about) every time
            value = checked
        return value

    def check(self, value: str, context: Context | None = None) -> str:
        """The value as it fits the attribute's VR; raises :class:`MappingError` (102) when it
        does not fit and may not be cut. A free-text value that is only too long is cut when
        the profile says ``too_long: truncate`` and the attribute is not a key
        (:data:`~mwlbroker.mapping.value_fit.STRICT_KEYWORDS`), with a warning for the record."""
        problem = self._problem(value)
        if problem is None:
            return value
        too_long = "exceeds the maximum" in problem
        allowed = value_fit.may_truncate(self.keyword, self.vr)
        if too_long and allowed and self.too_long.action == "truncate":
            cut = value_fit.truncate(self.vr, value, multiple=self.multiple)
            if self._problem(cut) is None:
                if context is not None:
                    context.layout.warnings.append(self._truncated(value, cut, context))
                return cut
        hint = ""
        if too_long and not allowed and self.vr in value_fit.MAX_LENGTH:
            hint = f"; {self.keyword} is a key the worklist is matched on: never truncated"
        elif too_long and allowed:
            at = f" at {self.too_long.where}" if self.too_long.where else ""
            hint = (
                f"; the profile says too_long: {self.too_long.action}{at}"
                " (truncate cuts it with a warning)"
            )
        elif too_long:
            hint = "; shorten it with transform: {truncate: N}"
        raise MappingError(
            f"{self.keyword} ({self.vr}) from {self._source()} = {value!r}: {problem}{hint} "
            f"(rule at {self.where})",
            error_code=HL7ErrorCode.DATA_TYPE_ERROR,
            location=self._location(context),
        )

    def _problem(self, value: str) -> str | None:
        """What is wrong with ``value`` for the VR, in pydicom's words; None when it fits."""
        if "\\" in value and not self.multiple and self.vr not in _TEXT_VRS:
            return "contains a backslash, which DICOM reads as a value separator"
        if self.vr in _INTEGER_RANGES:
            low, high = _INTEGER_RANGES[self.vr]
            parts = value.split("\\")
            if not all(
                re.fullmatch(r"[+-]?\d+", part) and low <= int(part) <= high for part in parts
            ):
                return f"is not a whole number from {low} to {high}"
            return None
        if " or " in self.vr:
            return None
        # PS3.5 6.4: each value of a multi-valued attribute has the VR's maximum length.
        for part in value.split("\\") if self.multiple else [value]:
            try:
                validate_value(self.vr, part, pydicom_config.RAISE)
            except ValueError as error:
                return str(error).split(" Please see")[0]
        return None

    def _truncated(self, value: str, cut: str, context: Context) -> MessageWarning:
        limit = value_fit.MAX_LENGTH[self.vr]
        unit = " per component group" if self.vr == "PN" else ""
        return MessageWarning(
            f"{self.keyword} ({self.vr}) from {self._source()}: {len(value)} characters, "
            f"more than {limit}{unit}; truncated to {len(cut)} "
            f"(profile {self.too_long.profile or '?'}, too_long: truncate)",
            location=self._location(context),
        )

    def _source(self) -> str:
        paths = self.rule.paths()
        return " / ".join(dict.fromkeys(paths)) if paths else "a fixed value"

    def _location(self, context: Context | None = None) -> str | None:
        """Where the value came from: ``OBR-16``, or ``OBR[2]-16`` for the second item's OBR."""
        paths = self.rule.paths()
        if not paths:
            return None
        text = paths[0].split(".")[0]
        if "[" in text or context is None:
            return re.sub(r"\[\d+\]", "", text)
        segment, _, field = text.partition("-")
        occurrence = context.occurrence(segment) if segment else 0
        return f"{segment}[{occurrence}]-{field}" if occurrence > 1 else text

    def paths(self) -> list[str]:
        return self.rule.paths()


class Section:
    """The rules of one level (patient, order, procedure, step): keyword -> rule."""

    __slots__ = ("attributes",)

    def __init__(self, attributes: Sequence[AttributeRule] = ()) -> None:
        self.attributes = list(attributes)

    @property
    def keywords(self) -> list[str]:
        return [attribute.keyword for attribute in self.attributes]

    def evaluate(self, context: Context) -> Attributes:
        """Keyword -> value for every rule that gives one (CLEAR included, absent left out)."""
        result: Attributes = {}
        for attribute in self.attributes:
            value = attribute.evaluate(context)
            if value is not None:
                result[attribute.keyword] = value
        return result
