"""A modality emulator for go-live checks: ask for the worklist, report MPPS, send images.

It does what a scanner does, over DICOM, against any Modality Worklist / MPPS / Storage SCP
(the broker or another): C-FIND for its worklist, N-CREATE "IN PROGRESS" built from the item it
picked, C-STORE of generated images for that item, N-SET "COMPLETED" listing them, or
"DISCONTINUED". Like a scanner it keeps the items it started in a small local folder, so that
the next command (store, complete) still knows them once they have left the worklist.

UIDs are derived from the calling AE title and the accession number: running a command again
sends the same MPPS and the same images again, which is what a resend looks like.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from ssl import SSLContext
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    SecondaryCaptureImageStorage,
)

from mwlbroker.dicom.association_tuning import ClientAE

PENDING = (0xFF00, 0xFF01)


class EmulatorError(Exception):
    """The SCP could not be reached, refused the association, or no item fits."""


@dataclass(frozen=True)
class Target:
    """The SCP to talk to, and who the emulated modality is."""

    host: str = "127.0.0.1"
    port: int = 11112
    called_ae: str = "MWLBROKER"
    calling_ae: str = "MWLEMU"
    timeout: float = 30.0
    tls: SSLContext | None = None  # DICOM over TLS, the SCP's certificate checked for host


@dataclass(frozen=True)
class Outcome:
    """The status the SCP answered, and its error comment."""

    status: int
    comment: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0x0000

    def describe(self) -> str:
        text = "success" if self.ok else "refused"
        return f"{text} ({self.status:04X})" + (f": {self.comment}" if self.comment else "")


class ModalityEmulator:
    """One association per command, proposing what the command needs."""

    def __init__(self, target: Target) -> None:
        self.target = target

    # -- worklist -------------------------------------------------------------------------------

    def worklist(
        self,
        *,
        accession: str = "",
        modality: str = "",
        station: str = "",
        date: str = "",
        patient_id: str = "",
        sps_id: str = "",
    ) -> list[Dataset]:
        """The worklist items matching the keys given (empty: any), as the SCP returns them."""
        query = _worklist_query(accession, modality, station, date, patient_id, sps_id)
        found = []
        with self._association(ModalityWorklistInformationFind) as assoc:
            for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
                if status is None:
                    raise EmulatorError("the association ended during the worklist query")
                if status.Status in PENDING and identifier is not None:
                    found.append(identifier)
                elif status.Status not in PENDING and status.Status != 0x0000:
                    raise EmulatorError(
                        f"worklist query refused ({status.Status:04X}): "
                        f"{status.get('ErrorComment', '')}"
                    )
        return found

    # -- MPPS -----------------------------------------------------------------------------------

    def start(self, item: Dataset, mpps_uid: str, *, station_name: str = "") -> Outcome:
        """N-CREATE an MPPS IN PROGRESS for a worklist item."""
        dataset = in_progress(item, self.target.calling_ae, mpps_uid, station_name=station_name)
        with self._association(ModalityPerformedProcedureStep) as assoc:
            status, _ = assoc.send_n_create(dataset, ModalityPerformedProcedureStep, mpps_uid)
        return _outcome(status, "N-CREATE")

    def end(self, mpps_uid: str, status: str, images: Iterable[Dataset] = ()) -> Outcome:
        """N-SET an MPPS to COMPLETED (listing ``images``) or DISCONTINUED."""
        dataset = ended(status, list(images))
        with self._association(ModalityPerformedProcedureStep) as assoc:
            answer, _ = assoc.send_n_set(dataset, ModalityPerformedProcedureStep, mpps_uid)
        return _outcome(answer, "N-SET")

    # -- images ---------------------------------------------------------------------------------

    def store(self, images: Iterable[Dataset]) -> list[Outcome]:
        """C-STORE each image on one association."""
        outcomes = []
        with self._association(SecondaryCaptureImageStorage) as assoc:
            for image in images:
                outcomes.append(_outcome(assoc.send_c_store(image), "C-STORE"))
        return outcomes

    # -- the association ------------------------------------------------------------------------

    def _association(self, *contexts: str) -> _Associated:
        target = self.target
        ae = ClientAE(ae_title=target.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = target.timeout
        for context in contexts:
            if context == SecondaryCaptureImageStorage:
                ae.add_requested_context(context, [ExplicitVRLittleEndian])
            else:
                ae.add_requested_context(context)
        ae.connection_timeout = target.timeout  # the TLS handshake included
        tls_args = (target.tls, target.host) if target.tls is not None else None
        assoc = ae.associate(target.host, target.port, ae_title=target.called_ae, tls_args=tls_args)
        if not assoc.is_established:
            raise EmulatorError(
                f"no association with {target.called_ae} at {target.host}:{target.port} "
                "(unreachable, rejected or aborted)"
            )
        return _Associated(assoc)


class _Associated:
    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc

    def __enter__(self) -> Association:
        return self.assoc

    def __exit__(self, *_exc: object) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def _outcome(status: Dataset | None, operation: str) -> Outcome:
    if status is None or "Status" not in status:
        raise EmulatorError(f"no {operation} response (timeout, or the association ended)")
    return Outcome(int(status.Status), str(status.get("ErrorComment", "") or ""))


# -- the data sets a modality sends ----------------------------------------------------------------


def _worklist_query(
    accession: str, modality: str, station: str, date: str, patient_id: str, sps_id: str
) -> Dataset:
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    query.PatientName = ""
    query.PatientID = patient_id
    query.IssuerOfPatientID = ""
    query.PatientBirthDate = ""
    query.PatientSex = ""
    query.AccessionNumber = accession
    query.ReferringPhysicianName = ""
    query.StudyInstanceUID = ""
    query.RequestedProcedureID = ""
    query.RequestedProcedureDescription = ""
    query.RequestedProcedureCodeSequence = []
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledStationName = ""
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = ""
    step.ScheduledProcedureStepID = sps_id
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProtocolCodeSequence = []
    query.ScheduledProcedureStepSequence = [step]
    return query


def _sps(item: Dataset) -> Dataset:
    sequence = item.get("ScheduledProcedureStepSequence")
    return sequence[0] if sequence else Dataset()


def in_progress(
    item: Dataset, calling_ae: str, mpps_uid: str, *, station_name: str = ""
) -> Dataset:
    """The N-CREATE attribute list for a worklist item (PS3.4 Table F.7.2-1)."""
    sps = _sps(item)
    now = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    reference = Dataset()
    reference.StudyInstanceUID = item.get("StudyInstanceUID") or study_uid_for(item, calling_ae)
    reference.ReferencedStudySequence = []
    reference.AccessionNumber = item.get("AccessionNumber", "")
    reference.RequestedProcedureID = item.get("RequestedProcedureID", "")
    reference.RequestedProcedureDescription = item.get("RequestedProcedureDescription", "")
    reference.ScheduledProcedureStepID = sps.get("ScheduledProcedureStepID", "")
    reference.ScheduledProcedureStepDescription = sps.get("ScheduledProcedureStepDescription", "")
    reference.ScheduledProtocolCodeSequence = _copied(sps, "ScheduledProtocolCodeSequence")
    ds.ScheduledStepAttributesSequence = [reference]
    ds.PatientName = item.get("PatientName", "")
    ds.PatientID = item.get("PatientID", "")
    if item.get("IssuerOfPatientID"):
        ds.IssuerOfPatientID = item.IssuerOfPatientID
    ds.PatientBirthDate = item.get("PatientBirthDate", "")
    ds.PatientSex = item.get("PatientSex", "")
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = ("PPS" + mpps_uid.replace(".", "")[-13:])[:16]
    ds.PerformedStationAETitle = calling_ae
    ds.PerformedStationName = station_name or sps.get("ScheduledStationName", "")
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = now.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = now.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = sps.get("ScheduledProcedureStepDescription", "")
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = _copied(item, "RequestedProcedureCodeSequence")
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = sps.get("Modality", "") or "OT"
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = _copied(sps, "ScheduledProtocolCodeSequence")
    ds.PerformedSeriesSequence = []
    return ds


def _copied(dataset: Dataset, keyword: str) -> list[Dataset]:
    return [copy.deepcopy(item) for item in dataset.get(keyword) or []]


def ended(status: str, images: list[Dataset]) -> Dataset:
    """The N-SET modification list that ends an MPPS, listing the images by series."""
    now = datetime.now()
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = now.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = now.strftime("%H%M%S")
    by_series: dict[str, list[Dataset]] = {}
    for image in images:
        by_series.setdefault(str(image.SeriesInstanceUID), []).append(image)
    performed = []
    for series_uid, members in by_series.items():
        item = Dataset()
        item.PerformingPhysicianName = ""
        item.ProtocolName = str(members[0].get("ProtocolName", "")) or "EMULATED"
        item.OperatorsName = ""
        item.SeriesInstanceUID = series_uid
        item.SeriesDescription = str(members[0].get("SeriesDescription", ""))
        item.RetrieveAETitle = ""
        references = []
        for image in members:
            reference = Dataset()
            reference.ReferencedSOPClassUID = image.SOPClassUID
            reference.ReferencedSOPInstanceUID = image.SOPInstanceUID
            references.append(reference)
        item.ReferencedImageSequence = Sequence(references)
        item.ReferencedNonImageCompositeSOPInstanceSequence = []
        performed.append(item)
    ds.PerformedSeriesSequence = Sequence(performed)
    return ds


def images_for(item: Dataset, calling_ae: str, count: int = 1) -> list[Dataset]:
    """``count`` small secondary capture images of a worklist item, in one series."""
    sps = _sps(item)
    accession = str(item.get("AccessionNumber", ""))
    series_uid = _uid("series", calling_ae, accession, _study_of(item, calling_ae))
    now = datetime.now()
    images = []
    for number in range(1, count + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = UID(
            _uid("image", calling_ae, accession, series_uid, str(number))
        )
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = _study_of(item, calling_ae)
        ds.SeriesInstanceUID = series_uid
        for keyword in (
            "PatientName",
            "PatientID",
            "IssuerOfPatientID",
            "PatientBirthDate",
            "PatientSex",
            "AccessionNumber",
            "ReferringPhysicianName",
        ):
            if keyword in item:
                setattr(ds, keyword, item.get(keyword))
        ds.StudyDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.StudyID = ""
        ds.StudyDescription = str(item.get("RequestedProcedureDescription", ""))
        ds.Modality = str(sps.get("Modality", "") or "OT")
        ds.ConversionType = "WSD"  # workstation: the emulator made it up
        ds.SeriesNumber = 1
        ds.SeriesDescription = "MWLBROKER EMULATOR"
        ds.ProtocolName = "EMULATED"
        ds.InstanceNumber = number
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 16
        ds.Columns = 16
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = bytes((x * 16 + y * number) % 256 for x in range(16) for y in range(16))
        images.append(ds)
    return images


def mpps_uid_for(calling_ae: str, accession: str, sps_id: str = "") -> str:
    """The MPPS SOP Instance UID this emulator uses for a step: the same every time."""
    return _uid("mpps", calling_ae, accession, sps_id)


def study_uid_for(item: Dataset, calling_ae: str) -> str:
    """A Study Instance UID for an item that has none (the modality would make one)."""
    return _uid("study", calling_ae, str(item.get("AccessionNumber", "")))


def _study_of(item: Dataset, calling_ae: str) -> str:
    return str(item.get("StudyInstanceUID") or study_uid_for(item, calling_ae))


def _uid(*parts: str) -> str:
    return str(generate_uid(entropy_srcs=["mwlbroker-modality-emulator", *parts]))


def summary(item: Dataset) -> dict[str, str]:
    """What a technologist reads off a worklist item."""
    sps = _sps(item)
    start = f"{sps.get('ScheduledProcedureStepStartDate', '')}{sps.get('ScheduledProcedureStepStartTime', '')}"
    return {
        "accession_number": str(item.get("AccessionNumber", "")),
        "patient_id": str(item.get("PatientID", "")),
        "patient_name": str(item.get("PatientName", "")),
        "modality": str(sps.get("Modality", "")),
        "station_ae": str(sps.get("ScheduledStationAETitle", "")),
        "start": start,
        "sps_id": str(sps.get("ScheduledProcedureStepID", "")),
        "procedure": str(item.get("RequestedProcedureDescription", "")),
        "study_instance_uid": str(item.get("StudyInstanceUID", "")),
    }


# -- what the emulated modality remembers --------------------------------------------------------


class EmulatorState:
    """The items the emulated modality has picked, one JSON file each, by accession number."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, accession: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", accession) or "_"
        return self.folder / f"{safe}.json"

    def save(self, accession: str, item: Dataset, **extra: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"item": item.to_json_dict(), **extra}
        self._path(accession).write_text(json.dumps(record, indent=1), encoding="utf-8")

    def load(self, accession: str) -> tuple[Dataset, dict[str, Any]] | None:
        path = self._path(accession)
        if not path.exists():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        return Dataset.from_json(record.pop("item")), record
