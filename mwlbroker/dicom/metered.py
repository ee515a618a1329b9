"""The DICOM handlers with their outcomes counted for /metrics.

Wrapping the handlers keeps the counting out of the protocol code: each wrapper calls the
real handler and records the status it answered, as a PS3.7 hex code (0000, A700, C000, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from mwlbroker.services.metrics import Metrics


def status_label(status: int | Dataset | None) -> str:
    """A DIMSE status as Prometheus label text: four hex digits."""
    if isinstance(status, Dataset):
        status = status.get("Status")
    return f"{int(status):04X}" if isinstance(status, int) else "none"


def metered_find(
    handler: Callable[..., Iterator[tuple[Any, Any]]], metrics: Metrics
) -> Callable[..., Iterator[tuple[Any, Any]]]:
    """C-FIND: the final status and the time from the request to it."""

    def find(event: Event, *args: Any) -> Iterator[tuple[Any, Any]]:
        started = time.perf_counter()
        final: Any = None
        try:
            for status, identifier in handler(event, *args):
                final = status
                yield status, identifier
        finally:
            metrics.cfind_queries.labels(status_label(final)).inc()
            metrics.cfind_seconds.observe(time.perf_counter() - started)

    return find


def metered_mpps(
    handler: Callable[..., tuple[Any, Any]], metrics: Metrics, operation: str
) -> Callable[..., tuple[Any, Any]]:
    """N-CREATE or N-SET of an MPPS: its status."""

    def answer(event: Event, *args: Any) -> tuple[Any, Any]:
        status, reply = handler(event, *args)
        metrics.mpps.labels(operation, status_label(status)).inc()
        return status, reply

    return answer


def metered_store(handler: Callable[..., Any], metrics: Metrics) -> Callable[..., Any]:
    """C-STORE: its status."""

    def store(event: Event, *args: Any) -> Any:
        status = handler(event, *args)
        metrics.cstore.labels(status_label(status)).inc()
        return status

    return store
