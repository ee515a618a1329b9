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
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom.events import Event

from mwlbroker.dicom.identifier import read_identifier
from mwlbroker.dicom.json_encoding import EncodedDataset, NotEncodable, encode_json
from mwlbroker.dicom.storage import read_instance
from mwlbroker.domain.images import StorageRefused, StorageStatus
from mwlbroker.domain.mpps import MPPSRefused, NStatus
from mwlbroker.domain.query import Element, FindStatus, QueryError
from mwlbroker.services.progress import ProgressService
from mwlbroker.services.worklist_query import (
    Caller,
    FinalStatus,
    WorklistQueryService,
    WorklistResponse,
)

log = logging.getLogger("mwlbroker.dicom")

VERIFICATION_SUCCESS = 0x0000  # PS3.4 A.4.2 C-ECHO status: success

FindResponse = tuple[int | Dataset, Dataset | EncodedDataset | None]


def handle_find(event: Event, worklist: WorklistQueryService) -> Iterator[FindResponse]:
    """EVT_C_FIND for Modality Worklist (PS3.4 K.4.1.2): pending per match, then a final status.

    The matches are selected and the database session closed before the first pending
    response; a C-CANCEL is honoured before each pending response (PS3.7 9.3.2.3). Each
    identifier is encoded here for the context's transfer syntax.
    """
    answer = worklist.find(caller_of(event), partial(identifier_of, event))
    transfer_syntax = event.context.transfer_syntax
    try:
        for response in answer.responses(partial(response_identifier, transfer_syntax)):
            if event.is_cancelled:
                yield int(answer.finish(FindStatus.CANCEL).status), None
                return
            yield int(FindStatus.PENDING), response
        yield status_of(answer.finish()), None
    finally:
        # pynetdicom stops asking when the association ends mid-way; still record the query.
        answer.abandon()


def handle_n_create(
    event: Event, progress: ProgressService
) -> tuple[int | Dataset, Dataset | None]:
    """EVT_N_CREATE for MPPS (PS3.4 F.7.2.1): store the performed step IN PROGRESS.

    A request without an Affected SOP Instance UID gets one made here, returned in the
    response (PS3.7 10.1.5.1.4).
    """
    requested = event.request.AffectedSOPInstanceUID
    uid = str(requested) if requested else generate_uid()
    calling_ae = caller_of(event).calling_ae
    try:
        dataset = attributes_json(event.attribute_list)
        progress.create_performed_step(uid, dataset, calling_ae=calling_ae)
    except MPPSRefused as refused:
        _log_refused("N-CREATE", uid, calling_ae, refused)
        return n_status(refused), None
    except Exception as error:  # the database or an undecodable data set
        return n_status(_failure("N-CREATE", uid, calling_ae, error)), None
    reply = Dataset()
    if not requested:
        reply.AffectedSOPInstanceUID = uid  # (0000,1000), moved into the response command
    return int(NStatus.SUCCESS), reply


def handle_n_set(event: Event, progress: ProgressService) -> tuple[int | Dataset, Dataset | None]:
    """EVT_N_SET for MPPS (PS3.4 F.7.2.2): update, complete or discontinue a performed step."""
    uid = str(event.request.RequestedSOPInstanceUID or "")
    calling_ae = caller_of(event).calling_ae
    try:
        modification = attributes_json(event.modification_list)
        progress.set_performed_step(uid, modification, calling_ae=calling_ae)
    except MPPSRefused as refused:
        _log_refused("N-SET", uid, calling_ae, refused)
        return n_status(refused, attribute_list=True), None
    except Exception as error:  # the database or an undecodable data set
        return n_status(_failure("N-SET", uid, calling_ae, error)), None
    return int(NStatus.SUCCESS), Dataset()


def handle_store(event: Event, progress: ProgressService) -> int | Dataset:
    """EVT_C_STORE (PS3.4 B.2.2): index the instance, keep its file if configured, answer.

    Success only once the index (and the file, when kept) is committed.
    """
    calling_ae = caller_of(event).calling_ae
    uid = str(event.request.AffectedSOPInstanceUID or "")
    try:
        instance = read_instance(event, calling_ae)
        data = event.encoded_dataset(include_meta=True) if progress.writes_files else None
        progress.receive_instance(instance, data)
    except StorageRefused as refused:
        log.warning(
            "C-STORE %s from %s refused (0x%04X): %s",
            uid,
            calling_ae,
            int(refused.status),
            refused.comment,
            extra={"event": "store_refused", "sop_instance_uid": uid, "calling_ae": calling_ae},
        )
        return store_status(refused)
    except Exception as error:  # the database or the disk
        log.error(
            "C-STORE %s from %s failed: %s",
            uid,
            calling_ae,
            error,
            exc_info=error,
            extra={"event": "store_failed", "sop_instance_uid": uid, "calling_ae": calling_ae},
        )
        return store_status(StorageRefused(StorageStatus.OUT_OF_RESOURCES, f"not stored: {error}"))
    return int(StorageStatus.SUCCESS)


def store_status(refused: StorageRefused) -> Dataset:
    """The status data set of a refused C-STORE: code and error comment."""
    status = Dataset()
    status.Status = int(refused.status)  # (0000,0900)
    status.ErrorComment = refused.comment.encode("ascii", "replace").decode()[:64]  # (0000,0902)
    return status


def attributes_json(dataset: Dataset) -> dict:
    """An N-CREATE attribute list or N-SET modification list in the DICOM JSON model."""
    return dataset.to_json_dict()


def n_status(refused: MPPSRefused, *, attribute_list: bool = False) -> Dataset:
    """The status data set of a refused N-CREATE or N-SET: code, error comment, error ID.

    N-SET responses also name the attributes at fault (0000,1005); N-CREATE responses cannot.
    """
    status = Dataset()
    status.Status = int(refused.status)  # (0000,0900)
    # (0000,0902) Error Comment | LO: the command set is always in the default repertoire
    status.ErrorComment = refused.comment.encode("ascii", "replace").decode()[:64]
    if refused.error_id is not None:
        status.ErrorID = refused.error_id  # (0000,0903)
    if attribute_list and refused.tags:
        status.AttributeIdentifierList = [Tag(int(tag, 16)) for tag in refused.tags]
    return status


def _failure(operation: str, uid: str, calling_ae: str, error: Exception) -> MPPSRefused:
    log.error(
        "MPPS %s %s from %s failed: %s",
        operation,
        uid,
        calling_ae,
        error,
        exc_info=error,
        extra={"event": "mpps_failed", "sop_instance_uid": uid, "calling_ae": calling_ae},
    )
    return MPPSRefused(NStatus.PROCESSING_FAILURE, f"not stored: {error}"[:64])


def _log_refused(operation: str, uid: str, calling_ae: str, refused: MPPSRefused) -> None:
    log.warning(
        "MPPS %s %s from %s refused (0x%04X): %s",
        operation,
        uid,
        calling_ae,
        int(refused.status),
        refused.detail,
        extra={
            "event": "mpps_refused",
            "sop_instance_uid": uid,
            "calling_ae": calling_ae,
            "status": int(refused.status),
            "error": refused.detail,
        },
    )


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


def response_identifier(
    transfer_syntax: UID, response: WorklistResponse
) -> EncodedDataset | Dataset:
    """A response identifier encoded for the transfer syntax, or as a Dataset for pydicom.

    Little endian items of text (every worklist item the mappings build) are written
    directly; anything else, and the big endian and deflated syntaxes, go through pydicom.
    """
    if transfer_syntax in _DIRECT_SYNTAXES:
        implicit = transfer_syntax == ImplicitVRLittleEndian
        try:
            data = encode_json(response.elements, implicit_vr=implicit, encoding=response.encoding)
        except NotEncodable:
            pass
        else:
            return EncodedDataset(data, implicit)
    return response.dataset()


_DIRECT_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})


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
