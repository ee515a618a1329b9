"""What the pages and the JSON API both read, each in a short read session: one page of a list,
an order, a message with its edited copies, a logged query explained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mwlbroker.services import query_explain, views
from mwlbroker.store import browse, messages
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


def order_detail(order_id: int) -> dict[str, Any] | None:
    """An order with its patient, steps and timeline; None when there is no such order."""
    with web().db.reading() as session:
        return views.order_detail(session, order_id)


def message_and_copies(message_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A message with its named fields, and the edited copies made from it (oldest first);
    None when there is no such message."""
    with web().db.reading() as session:
        row = messages.get(session, message_id)
        if row is None:
            return None
        detail = views.message_detail(row)
        detail["orders"] = views.message_orders(session, message_id)
        copies = [views.message_summary(r) for r in browse.resubmissions_of(session, message_id)]
        return detail, copies


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
