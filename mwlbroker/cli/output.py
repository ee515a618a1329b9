"""What a command prints: JSON for scripts, an aligned table or a record for people, and the
one line on standard error that says why it failed."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from string import Formatter
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
Row = Mapping[str, Any]


class CommandFailed(Exception):
    """The command cannot do what it was asked: ``main`` prints ``mwlbroker: MESSAGE`` on
    standard error and exits with ``exit_code`` (1 the command failed, 2 bad usage)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def print_failure(message: str) -> None:
    """The one line that says why a command failed, on standard error."""
    print(f"mwlbroker: {message}", file=sys.stderr)


def error_text(error: BaseException) -> str:
    """The reason an exception carries, without the quotes a ``KeyError`` adds."""
    return str(error.args[0]) if error.args else str(error)


def print_json(value: Any, *, ascii: bool = False) -> None:
    """``--json`` output, indented; ``ascii`` escapes names and text as the lists whose JSON has
    always been ASCII do, for the scripts that read them."""
    print(json.dumps(value, indent=2, ensure_ascii=ascii))


def _same(item: Any) -> Any:
    return item


@dataclass(frozen=True)
class Table:
    """Rows under a heading through one ``str.format`` template, so heading and rows cannot drift
    apart: a field ``{name:20.20}`` pads and cuts at 20; the heading puts the column's title
    where a row puts ``cells(item)[name]`` (``cells`` turns a listed item into what is shown)."""

    template: str
    titles: Mapping[str, str] = field(default_factory=dict)
    """The titles that are not simply the field's name in capitals."""
    cells: Callable[[Any], Row] = _same

    def heading(self) -> str:
        """The line of column titles."""
        names = {name for _, name, _, _ in Formatter().parse(self.template) if name}
        return self.template.format_map({n: self.titles.get(n, n.upper()) for n in names})

    def line(self, item: Any) -> str:
        """One row, aligned under the heading."""
        return self.template.format_map(self.cells(item))

    def print(self, items: Iterable[Any]) -> None:
        """The heading, then a line a row."""
        print(self.heading())
        for item in items:
            print(self.line(item))


def print_list(
    items: Sequence[T],
    table: Table,
    *,
    as_json: bool,
    ascii: bool = False,
    data: Callable[[T], Any] = _same,
) -> int:
    """A list command's output: the table, or with ``--json`` each item's ``data``; exit code 0."""
    if as_json:
        print_json([data(item) for item in items], ascii=ascii)
    else:
        table.print(items)
    return 0


def print_record(record: Row, *, leave_out: Iterable[str] = ()) -> None:
    """One stored record for people: a ``name  value`` line a field (an absent value blank), and
    when it holds a message's ``segments``, a blank line and then a segment a line."""
    hidden = {"segments", *leave_out}
    for key, value in record.items():
        if key not in hidden:
            print(f"{key:20} {value if value is not None else ''}")
    if "segments" in record:
        print()
        for segment in record["segments"]:
            print(segment)


def refusing(
    *refusals: type[Exception], text: Callable[[BaseException], str] = str
) -> Callable[[Callable[P, int]], Callable[P, int]]:
    """A command for which the services' ``refusals`` (an unknown user, a merge refused) are
    answers, not faults: each is told as one line, ``text(error)``, with exit code 1."""

    def decorate(command: Callable[P, int]) -> Callable[P, int]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> int:
            try:
                return command(*args, **kwargs)
            except refusals as error:
                raise CommandFailed(text(error)) from error

        return run

    return decorate
