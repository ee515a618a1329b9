"""Reading list filters and paging from the query string, forgivingly."""

from __future__ import annotations

import re
from datetime import date

from flask import request

PAGE_SIZE = 50


def text(name: str, limit: int = 64) -> str:
    return request.args.get(name, "").strip()[:limit]


def page() -> tuple[int, int]:
    """(offset, limit) from ?page=N (1-based) and ?limit=N (at most 500)."""
    try:
        number = max(1, int(request.args.get("page", "1")))
    except ValueError:
        number = 1
    try:
        size = min(500, max(1, int(request.args.get("limit", str(PAGE_SIZE)))))
    except ValueError:
        size = PAGE_SIZE
    return (number - 1) * size, size


def day(name: str = "date") -> str:
    """A date as YYYYMMDD from YYYYMMDD or YYYY-MM-DD (the date input), or 'today'; else ''."""
    value = request.args.get(name, "").strip()
    if value == "today":
        return date.today().strftime("%Y%m%d")
    digits = value.replace("-", "")
    return digits if re.fullmatch(r"\d{8}", digits) else ""


def worklist_filters() -> dict[str, str]:
    """The worklist's filters, as the page and the API both take them."""
    return {
        "date": day(),
        "modality": text("modality", 16).upper(),
        "station": text("station", 16),
        "status": text("status", 16).upper(),
        "text": text("q"),
    }


def message_filters() -> dict[str, str]:
    """The message list's filters, as the page and the API both take them."""
    return {
        "status": text("status", 16).lower(),
        "message_type": text("type", 8).upper(),
        "text": text("q"),
    }


def number(name: str) -> int | None:
    """A positive whole number from the query string; None when absent or not one."""
    value = request.args.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) < 18 else None
