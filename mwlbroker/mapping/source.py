"""Read a mapping file into nodes that remember their file and line, for FILE:LINE errors.

PyYAML's composer gives every node a mark; this module keeps those marks on a small tree of
:class:`Scalar`, :class:`Mapping` and :class:`Sequence` nodes. Keys are always text (a table
key ``NO`` or ``01`` stays ``"NO"`` / ``"01"``, never a boolean or a number), duplicate keys
are errors instead of silently overwriting, and YAML anchors, aliases and ``<<`` merge keys
work as YAML defines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


class MappingFileError(Exception):
    """One problem in a mapping file; ``str()`` gives ``FILE:LINE: message``.

    The loader collects them (it does not raise them one by one) so that every problem of
    every file is reported at once; two errors with the same place and text are equal.
    """

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(file, line, message)
        self.file = file
        self.line = line  # counts from 1; 0 for a problem with the folder itself
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def __repr__(self) -> str:
        return f"MappingFileError({self.file!r}, {self.line}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MappingFileError):
            return NotImplemented
        return (self.file, self.line, self.message) == (other.file, other.line, other.message)

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.message))


def short_where(file: str, line: int) -> str:
    """FILE:LINE with the file named relative to its mappings folder (a folder is flat).

    Compiled rules carry this form: it reaches a sender's ACK, which must not show where the
    broker keeps its files. ``mwlbroker mappings check`` still names the whole path.
    """
    return f"{Path(file).name}:{line}"


@dataclass
class Node:
    """A YAML value with where it was written."""

    file: str
    line: int

    @property
    def where(self) -> str:
        """``ihe-swf.yaml:57``: the place a compiled rule names in the errors a sender reads."""
        return short_where(self.file, self.line)

    @property
    def kind(self) -> str:
        return {Scalar: "a single value", Mapping: "a mapping", Sequence: "a list"}[type(self)]


@dataclass
class Scalar(Node):
    """A single value: ``text`` as written, ``value`` as YAML reads it (str, int, bool, None)."""

    text: str = ""
    value: object = None

    @property
    def is_null(self) -> bool:
        return self.value is None


@dataclass
class Entry:
    """One ``key: value`` pair of a mapping, with the key's own line."""

    key: str
    key_line: int
    value: Node
    key_node_id: int = 0


@dataclass
class Mapping(Node):
    entries: dict[str, Entry] = field(default_factory=dict)

    def get(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return entry.value if entry else None

    def key_line(self, key: str) -> int:
        return self.entries[key].key_line


@dataclass
class Sequence(Node):
    items: list[Node] = field(default_factory=list)


def read_yaml(path: Path, errors: list[MappingFileError]) -> Node | None:
    """The file's single YAML document as located nodes; ``None`` (with errors) when unreadable."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        errors.append(MappingFileError(name, 1, f"not UTF-8 text: {error.reason}"))
        return None
    except OSError as error:
        errors.append(MappingFileError(name, 1, f"cannot read the file: {error.strerror}"))
        return None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            errors.append(MappingFileError(name, 1, "the file is empty"))
            return None
        return _convert(root, loader, name, errors)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        problem = error.problem or error.context or "cannot be read"
        context = ""
        if error.context and error.problem:
            context = f" ({error.context}"
            if error.context_mark and error.context_mark.line + 1 != line:
                context += f" that starts on line {error.context_mark.line + 1}"
            context += ")"
        errors.append(MappingFileError(name, line, f"YAML syntax: {problem}{context}"))
        return None
    except yaml.YAMLError as error:
        errors.append(MappingFileError(name, 1, f"YAML syntax: {error}"))
        return None
    finally:
        loader.dispose()


def _convert(
    node: yaml.Node, loader: yaml.SafeLoader, name: str, errors: list[MappingFileError]
) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_object(node, deep=True)
        return Scalar(name, line, text=node.value, value=value)
    if isinstance(node, yaml.SequenceNode):
        return Sequence(name, line, [_convert(item, loader, name, errors) for item in node.value])
    assert isinstance(node, yaml.MappingNode)
    own = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)  # resolves "<<: *anchor" merge keys: merged pairs come first
    mapping = Mapping(name, line)
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            errors.append(MappingFileError(name, key_line, "a key must be a single value"))
            continue
        key = key_node.value
        previous = mapping.entries.get(key)
        if previous is not None and id(key_node) in own and previous.key_node_id in own:
            errors.append(
                MappingFileError(
                    name, key_line, f"{key!r} is given twice (first on line {previous.key_line})"
                )
            )
            continue
        # A later pair wins: the mapping's own keys override what "<<" merged in.
        mapping.entries[key] = Entry(
            key, key_line, _convert(value_node, loader, name, errors), id(key_node)
        )
    return mapping
