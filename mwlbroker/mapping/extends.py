"""``extends:``: a profile built on another one, its base's settings under its own.

A profile that extends another (in its folder, else among the bundled mappings) inherits every
section but its name, description, enabled, priority and match. The ``missing:``, ``status:``
and ``tables:`` entries, the message types under ``messages:`` and their sections are merged
key by key, the child's winning; ``Keyword: ~`` removes what the base said. What comes out is
one merged document per profile, checked afterwards as if it had been written whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mwlbroker.mapping.source import Mapping, MappingFileError, Scalar

_NOT_INHERITED = ("profile", "description", "enabled", "priority", "match", "extends")
_MERGED_BY_KEY = ("missing", "status", "tables")
_MERGED_SECTIONS = ("patient", "order", "procedure", "step", "merge", "visit", "link")

_Merge = Callable[[Mapping, Mapping], Mapping]


def resolve_extends(
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
    resolved_base = resolve_extends(base, base_for, errors, [*chain, name])
    if resolved_base is None:
        return None
    return _merge_profile(resolved_base, root)


def _merge_profile(base: Mapping, child: Mapping) -> Mapping:
    inherited = {key: entry for key, entry in base.entries.items() if key not in _NOT_INHERITED}
    how: dict[str, _Merge] = {
        **dict.fromkeys(_MERGED_BY_KEY, _merge_mapping),
        "messages": _merge_messages,
    }
    return _merge_by_key(Mapping(child.file, child.line, inherited), child, how)


def _merge_by_key(merged: Mapping, child: Mapping, how: dict[str, _Merge]) -> Mapping:
    """``child``'s entries over ``merged``'s; where both have a key ``how`` names, merged by it."""
    for key, entry in child.entries.items():
        previous = merged.entries.get(key)
        if key in how and previous is not None:
            merged.entries[key] = _merge_entry(previous, entry, how[key])
        else:
            merged.entries[key] = entry
    return merged


def _merge_entry(previous: Any, entry: Any, how: _Merge) -> Any:
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
    # control: is overlaid, not merged: "S13: ~" must reach the compiler, which starts from
    # the built-in table.
    how: dict[str, _Merge] = {
        **dict.fromkeys(_MERGED_SECTIONS, _merge_mapping),
        "control": _overlay_mapping,
    }
    return _merge_by_key(Mapping(child.file, child.line, dict(base.entries)), child, how)


def _overlay_mapping(base: Mapping, child: Mapping) -> Mapping:
    return Mapping(child.file, child.line, {**base.entries, **child.entries})
