"""What the mapping compilers share: one list of errors with FILE:LINE, and the checks they make.

A compiler never stops at the first problem: each check reports to the :class:`Report` and
gives back ``None``, and compiling goes on, so ``mwlbroker mappings check`` can list every
error at once. A profile that reported anything is not used.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mwlbroker.mapping.source import Mapping, MappingFileError, Node, Scalar


class Report:
    """The errors found so far (shared by every profile of a folder), and whether this
    profile's compiling failed."""

    def __init__(self, errors: list[MappingFileError]) -> None:
        self.errors = errors
        self.failed = False


class Checker:
    """Reports errors at a node's FILE:LINE, and reads the shapes every section is made of."""

    def __init__(self, report: Report) -> None:
        self.report = report

    @property
    def failed(self) -> bool:
        """Whether an error was reported while compiling this profile."""
        return self.report.failed

    def error(self, node: Node | tuple[str, int], message: str) -> None:
        """Report ``message`` at the node (or the (file, line)) it is about."""
        file, line = (node.file, node.line) if isinstance(node, Node) else node
        self.report.errors.append(MappingFileError(file, line, message))
        self.report.failed = True

    def key_at(self, mapping: Mapping, key: str) -> tuple[str, int]:
        """Where ``key`` is written in ``mapping``: its file and line."""
        return (mapping.entries[key].value.file, mapping.key_line(key))

    def check_keys(self, mapping: Mapping, allowed: tuple[str, ...], what: str) -> None:
        """Report each key of ``mapping`` that is not ``allowed``, with a likely spelling."""
        for key in mapping.entries:
            if key not in allowed:
                self.error(
                    self.key_at(mapping, key),
                    f"unknown key {key!r} in {what}{suggest(key, allowed)}; "
                    f"allowed: {', '.join(allowed)}",
                )

    def mapping(self, node: Node | None, what: str) -> Mapping | None:
        """The node as a mapping; None when absent or null, or (reported) another shape."""
        if node is None or (isinstance(node, Scalar) and node.is_null):
            return None
        if not isinstance(node, Mapping):
            self.error(node, f"{what} must be a mapping (key: value lines), not {node.kind}")
            return None
        return node

    def text(self, node: Node | None, what: str, *, allow_empty: bool = False) -> str | None:
        """The node as a single value; None when absent, or (reported) another shape."""
        if node is None:
            return None
        if not isinstance(node, Scalar) or (node.is_null and not allow_empty):
            self.error(node, f"{what} must be a single value, not {kind_of(node)}")
            return None
        return "" if node.is_null else node.text


def suggest(word: str, choices: Iterable[str]) -> str:
    """ " (did you mean X?)" for a close spelling among ``choices``, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def kind_of(node: Node) -> str:
    """How a node is named in an error: "nothing" for a null, else its kind."""
    if isinstance(node, Scalar) and node.is_null:
        return "nothing"
    return node.kind
