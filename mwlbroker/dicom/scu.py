"""A Modality Worklist SCU: one association per query, each response timed as it arrives.

What a modality does when it asks for its worklist, with stock pynetdicom settings (default
sockets, default logging), so timings are those of an ordinary pynetdicom client. The
benchmark times the broker and DCMTK's wlmscpfs with it; a modality emulator can ask with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityWorklistInformationFind

from mwlbroker.dicom.association_tuning import ClientAE

PENDING = (0xFF00, 0xFF01)  # PS3.4 C.4.1.1.4: pending, optional keys not supported


class AssociationFailed(Exception):
    """The SCP rejected or aborted the association, or could not be reached."""


@dataclass(frozen=True)
class FindResponse:
    """One C-FIND response: its status, its identifier (pending only), and when it came."""

    status: int
    identifier: Dataset | None
    elapsed_ms: float  # since the C-FIND request was sent

    @property
    def is_pending(self) -> bool:
        return self.status in PENDING


@dataclass
class FindResult:
    """A whole query: the pending responses, the final status and the times that matter."""

    responses: list[FindResponse] = field(default_factory=list)
    status: int | None = None  # final status; None when the association ended first
    associate_ms: float = 0.0  # association request to acceptance
    total_ms: float = 0.0  # C-FIND request to final response

    @property
    def first_ms(self) -> float | None:
        """Request to first response (the final one when nothing matched)."""
        return self.responses[0].elapsed_ms if self.responses else self.total_ms or None

    @property
    def identifiers(self) -> list[Dataset]:
        return [r.identifier for r in self.responses if r.identifier is not None]


class WorklistSCU:
    """Asks Modality Worklist C-FIND queries as ``calling_ae``."""

    def __init__(self, calling_ae: str = "MODALITY", *, timeout: float = 60.0) -> None:
        self.ae = ClientAE(ae_title=calling_ae)  # pynetdicom's AE, minus a socket leak
        self.ae.add_requested_context(ModalityWorklistInformationFind)
        self.ae.acse_timeout = timeout
        self.ae.dimse_timeout = timeout
        self.ae.network_timeout = timeout

    def query(
        self, host: str, port: int, called_ae: str, identifier: Dataset
    ) -> Iterator[FindResponse]:
        """Associate, send one C-FIND, yield each response (the final one last), release."""
        association = self._associate(host, port, called_ae)
        try:
            yield from _responses(association, identifier)
        finally:
            _release(association)

    def find(self, host: str, port: int, called_ae: str, identifier: Dataset) -> FindResult:
        """Ask one query and collect it: pending responses, final status, timings."""
        result = FindResult()
        started = time.perf_counter()
        association = self._associate(host, port, called_ae)
        result.associate_ms = (time.perf_counter() - started) * 1000
        try:
            for response in _responses(association, identifier):
                if response.is_pending:
                    result.responses.append(response)
                else:
                    result.status = response.status
                    result.total_ms = response.elapsed_ms
        finally:
            _release(association)
        return result

    def _associate(self, host: str, port: int, called_ae: str) -> Association:
        association = self.ae.associate(host, port, ae_title=called_ae)
        if not association.is_established:
            state = "rejected" if association.is_rejected else "aborted or unreachable"
            raise AssociationFailed(f"{called_ae} at {host}:{port}: association {state}")
        return association


def _responses(association: Association, identifier: Dataset) -> Iterator[FindResponse]:
    sent = time.perf_counter()  # send_c_find sends the request before it returns
    for status, found in association.send_c_find(identifier, ModalityWorklistInformationFind):
        elapsed = (time.perf_counter() - sent) * 1000
        if "Status" not in status:
            return  # an empty status: the association was aborted or timed out
        code = int(status.Status)
        yield FindResponse(code, found if code in PENDING else None, elapsed)
        if code not in PENDING:
            return


def _release(association: Association) -> None:
    if association.is_established:
        association.release()
