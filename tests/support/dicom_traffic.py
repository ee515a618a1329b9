"""Modalities at work for the crash and soak tests: MPPS, C-STORE and worklist queries in a loop,
each recording exactly what the broker answered with success (pynetdicom)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pydicom.uid import generate_uid
from pynetdicom.sop_class import (
    CTImageStorage,
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

from mwlbroker.dicom.association_tuning import ClientAE
from tests.support.dicom_peers import ct_image, ended, in_progress


@dataclass
class Tally:
    """What succeeded (by UID), and every answer that was neither success nor expected."""

    created: set[str] = field(default_factory=set)  # MPPS N-CREATE answered 0x0000
    completed: set[str] = field(default_factory=set)  # MPPS N-SET COMPLETED answered 0x0000
    stored: set[str] = field(default_factory=set)  # C-STORE answered 0x0000
    queries: int = 0
    matches: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _associate(port: int, ae_title: str, *contexts: str):
    # pynetdicom's own AE leaks the socket of an association its peer killed (its shutdown
    # raises before the close); the broker's client AE is the same AE with that mended.
    ae = ClientAE(ae_title=ae_title)
    ae.dimse_timeout = ae.acse_timeout = ae.network_timeout = 30
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    return assoc if assoc.is_established else None


def _status(status) -> int | None:
    return int(status.Status) if status is not None and "Status" in status else None


def run_mpps(port: int, stop: threading.Event, tally: Tally, ae_title: str = "CT1") -> None:
    """N-CREATE then N-SET COMPLETED, one performed step after another, until ``stop``."""
    assoc = _associate(port, ae_title, ModalityPerformedProcedureStep)
    if assoc is None:
        tally.errors.append("MPPS association refused")
        return
    try:
        while not stop.is_set():
            uid = generate_uid()
            status = _status(
                assoc.send_n_create(in_progress(None), ModalityPerformedProcedureStep, uid)[0]
            )
            if status is None:
                return  # the broker is gone (the crash test) or the association dropped
            if status != 0:
                tally.errors.append(f"N-CREATE {uid}: 0x{status:04X}")
                continue
            with tally.lock:
                tally.created.add(uid)
            status = _status(
                assoc.send_n_set(ended("COMPLETED"), ModalityPerformedProcedureStep, uid)[0]
            )
            if status is None:
                return
            if status != 0:
                tally.errors.append(f"N-SET {uid}: 0x{status:04X}")
                continue
            with tally.lock:
                tally.completed.add(uid)
    finally:
        if assoc.is_established:
            assoc.release()


def run_store(port: int, stop: threading.Event, tally: Tally, ae_title: str = "CT1") -> None:
    """C-STORE small CT images of one study after another, until ``stop``."""
    assoc = _associate(port, ae_title, CTImageStorage)
    if assoc is None:
        tally.errors.append("storage association refused")
        return
    study = generate_uid()
    number = 0
    try:
        while not stop.is_set():
            number += 1
            if number % 20 == 0:
                study = generate_uid()
            image = ct_image(study_uid=study, patient_id="STORE1", number=number)
            status = _status(assoc.send_c_store(image))
            if status is None:
                return
            if status != 0:
                tally.errors.append(f"C-STORE {image.SOPInstanceUID}: 0x{status:04X}")
                continue
            with tally.lock:
                tally.stored.add(str(image.SOPInstanceUID))
    finally:
        if assoc.is_established:
            assoc.release()


def run_queries(port: int, stop: threading.Event, tally: Tally, ae_title: str = "CT2") -> None:
    """Ask for today's CT worklist again and again, as a scanner's worklist screen does."""
    from pydicom.dataset import Dataset

    assoc = _associate(port, ae_title, ModalityWorklistInformationFind)
    if assoc is None:
        tally.errors.append("worklist association refused")
        return
    try:
        while not stop.is_set():
            query = Dataset()
            query.PatientName = ""
            query.PatientID = ""
            query.AccessionNumber = ""
            step = Dataset()
            step.Modality = "CT"
            step.ScheduledProcedureStepStartDate = ""
            step.ScheduledProcedureStepID = ""
            query.ScheduledProcedureStepSequence = [step]
            codes = [
                _status(s) for s, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
            ]
            with tally.lock:
                tally.queries += 1
                tally.matches += codes.count(0xFF00)
            if not codes or codes[-1] != 0:
                tally.errors.append(f"C-FIND ended with {codes[-1:]}")
                if None in codes:
                    return
    finally:
        if assoc.is_established:
            assoc.release()
