"""DICOM event handlers: each translates the event, calls one service, and answers a status.

pynetdicom calls them on the association's thread (see ``pynetdicom._handlers`` for each
event's contract). No SQL and no matching here: the services decide, the handlers speak DIMSE.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom.events import Event

from mwlbroker.dicom.identifier import read_identifier
from mwlbroker.domain.query import Element, FindStatus, QueryError
from mwlbroker.services.worklist_query import Caller, FinalStatus, WorklistQueryService

log = logging.getLogger("mwlbroker.dicom")

VERIFICATION_SUCCESS = 0x0000  # PS3.4 A.4.2 C-ECHO status: success

FindResponse = tuple[int | Dataset, Dataset | None]


def handle_find(event: Event, worklist: WorklistQueryService) -> Iterator[FindResponse]:
    """EVT_C_FIND for Modality Worklist (PS3.4 K.4.1.2): pending per match, then a final status.

    The matches are selected and the database session closed before the first pending
    response; a C-CANCEL is honoured before each pending response (PS3.7 9.3.2.3).
    """
    answer = worklist.find(caller_of(event), partial(identifier_of, event))
    try:
        for response in answer:
            if event.is_cancelled:
                yield int(answer.finish(FindStatus.CANCEL).status), None
                return
            yield int(FindStatus.PENDING), response
        yield status_of(answer.finish()), None
    finally:
        # pynetdicom stops asking when the association ends mid-way; still record the query.
        answer.abandon()


def handle_echo(event: Event) -> int:
    """EVT_C_ECHO: the Verification service answers success (PS3.4 A.4)."""
    return VERIFICATION_SUCCESS


def handle_rejected(event: Event) -> None:
    """EVT_REJECTED: say in the log who was turned away, so a misconfigured modality shows."""
    requestor = event.assoc.requestor
    log.warning(
        "association from %s (%s:%s) to %s rejected",
        requestor.ae_title,
        requestor.address,
        requestor.port,
        called_ae_of(event),
        extra={"event": "association_rejected", "calling_ae": requestor.ae_title},
    )


def identifier_of(event: Event) -> list[Element]:
    """The C-FIND identifier's keys; raises :class:`QueryError` when it cannot be decoded."""
    try:
        dataset = event.identifier
    except Exception as error:  # pydicom raises many types for malformed bytes
        raise QueryError(f"identifier cannot be decoded: {error}") from None
    return read_identifier(dataset)


def caller_of(event: Event) -> Caller:
    requestor = event.assoc.requestor
    return Caller(
        calling_ae=str(requestor.ae_title or "").strip(),
        called_ae=called_ae_of(event),
        peer=f"{requestor.address}:{requestor.port}",
    )


def called_ae_of(event: Event) -> str:
    primitive = event.assoc.requestor.primitive
    called = getattr(primitive, "called_ae_title", None) if primitive is not None else None
    return str(called or event.assoc.acceptor.ae_title or "").strip()


def status_of(final: FinalStatus) -> int | Dataset:
    """The final C-FIND status: a bare code, or a status data set with the error comment."""
    if final.comment is None and final.offending_tag is None:
        return int(final.status)
    status = Dataset()
    status.Status = int(final.status)  # (0000,0900)
    if final.comment:
        # (0000,0902) Error Comment | LO: the command set is always in the default repertoire
        status.ErrorComment = final.comment.encode("ascii", "replace").decode()[:64]
    if final.offending_tag:
        status.OffendingElement = [Tag(int(final.offending_tag, 16))]  # (0000,0901)
    return status
