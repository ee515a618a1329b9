"""The rule compiler's dispatch table: every base form of a rule has its compiler, once."""

from __future__ import annotations

import pytest

from mwlbroker.mapping.diagnostics import Report
from mwlbroker.mapping.rule_compiler import _BASE_RULES, BASE_KEYS, RULE_KEYS, RuleCompiler
from mwlbroker.mapping.rules import Rule
from mwlbroker.mapping.source import Entry, Mapping, MappingFileError, Scalar


def test_every_base_form_has_one_compiler_in_the_order_errors_name_them() -> None:
    assert BASE_KEYS == (
        "field",
        "first",
        "value",
        "join",
        "when",
        "rules",
        "code",
        "items",
        "end",
        "find",
        "each",
    )
    assert set(_BASE_RULES) == set(BASE_KEYS)
    assert RULE_KEYS[: len(BASE_KEYS)] == BASE_KEYS


def _compile(base: str, text: str) -> tuple[Rule | None, list[MappingFileError]]:
    errors: list[MappingFileError] = []
    value = Scalar("site.yaml", 1, text, text)
    node = Mapping("site.yaml", 1, {base: Entry(base, 1, value)})
    return RuleCompiler(Report(errors)).rule_mapping(node), errors


@pytest.mark.parametrize(("base", "kind"), [("field", "FieldRule"), ("value", "ConstantRule")])
def test_a_base_key_reaches_its_compiler(base: str, kind: str) -> None:
    rule, errors = _compile(base, "OBR-18")
    assert errors == []
    assert type(rule).__name__ == kind


def test_a_rule_with_no_base_names_them_all() -> None:
    errors: list[MappingFileError] = []
    report = Report(errors)
    assert RuleCompiler(report).rule_mapping(Mapping("site.yaml", 3)) is None
    assert report.failed
    assert [str(error) for error in errors] == [
        "site.yaml:3: a rule needs one of " + ", ".join(BASE_KEYS)
    ]
