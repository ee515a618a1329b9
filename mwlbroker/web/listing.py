"""One page of a list, as the pages and the JSON API both show it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mwlbroker.store.browse import Page
from mwlbroker.web import params, web

Summary = Callable[[Any], dict[str, Any]]


def page_of(
    list_page: Callable[..., Page], summary: Summary, **filters: Any
) -> tuple[Page, list[dict[str, Any]]]:
    """The page of a browse list that ``?page=N&limit=N`` asks for, with these filters, and
    its rows summarised for display.

    The rows are summarised inside the read session, where everything they refer to can
    still be loaded.
    """
    offset, limit = params.page()
    with web().db.reading() as session:
        found = list_page(session, offset=offset, limit=limit, **filters)
        return found, [summary(row) for row in found.rows]
