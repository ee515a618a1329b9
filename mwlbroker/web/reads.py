"""What the pages and the JSON API both read: one page of a list, a logged query explained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mwlbroker.services import query_explain
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


def explained_query(log_id: int) -> dict[str, Any] | None:
    """A logged query held against the step the query string names (``?step=ID``, or one found
    by ``?find=`` accession number, SPS ID or step id), with the worklist statuses served.

    None when no query has ``log_id``; raises LookupError when no step has the id given.
    """
    with web().db.reading() as session:
        return query_explain.explain_query(
            session,
            log_id,
            statuses=web().worklist_statuses,
            step_id=params.number("step"),
            look_up=params.text("find"),
        )
