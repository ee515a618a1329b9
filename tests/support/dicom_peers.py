"""A modality's DICOM client for the tests: worklist query, MPPS N-CREATE and N-SET (pynetdicom),
images sent with DCMTK's storescu, and worklist queries with DCMTK's findscu.

Independent of the broker's own emulator (mwlbroker.dicom.modality): the data sets are written
out here, attribute by attribute, as PS3.4 Table F.7.2-1 lists them.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

MPPS = ModalityPerformedProcedureStep


# -- the modality -----------------------------------------------------------------------------------


class Modality:
    """A scanner's DICOM client: worklist query, N-CREATE and N-SET on one association."""

    def __init__(self, port: int, ae_title: str = "CT1") -> None:
        ae = AE(ae_title=ae_title)
        ae.add_requested_context(ModalityWorklistInformationFind)
        ae.add_requested_context(MPPS)
        self.assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
        assert self.assoc.is_established
        self.ae_title = ae_title

    def worklist(self, **keys: str) -> list[Dataset]:
        query = Dataset()
        query.PatientName = ""
        query.PatientID = ""
        query.AccessionNumber = keys.get("accession", "")
        query.StudyInstanceUID = ""
        query.RequestedProcedureID = ""
        step = Dataset()
        step.Modality = keys.get("modality", "")
        step.ScheduledProcedureStepID = ""
        step.ScheduledStationAETitle = ""
        query.ScheduledProcedureStepSequence = [step]
        found = []
        for status, identifier in self.assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None
            if status.Status == 0xFF00:
                found.append(identifier)
        return found

    def create(self, dataset: Dataset, uid: str | None) -> tuple[Dataset, Dataset | None]:
        status, reply = self.assoc.send_n_create(dataset, MPPS, uid)
        assert status is not None, "no N-CREATE response"
        return status, reply

    def set(self, uid: str, dataset: Dataset) -> Dataset:
        status, _ = self.assoc.send_n_set(dataset, MPPS, uid)
        assert status is not None, "no N-SET response"
        return status

    def close(self) -> None:
        self.assoc.release()


def in_progress(item: Dataset | None, *, study_uid: str | None = None) -> Dataset:
    """An N-CREATE attribute list for a worklist item, as PS3.4 Table F.7.2-1 asks."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    reference = Dataset()
    reference.StudyInstanceUID = study_uid or (item.StudyInstanceUID if item else generate_uid())
    reference.ReferencedStudySequence = []
    reference.AccessionNumber = item.AccessionNumber if item else ""
    reference.RequestedProcedureID = item.RequestedProcedureID if item else ""
    reference.RequestedProcedureDescription = ""
    reference.ScheduledProcedureStepID = (
        item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID if item else ""
    )
    reference.ScheduledProcedureStepDescription = ""
    reference.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [reference]
    ds.PatientName = item.PatientName if item else "UNKNOWN^PATIENT"
    ds.PatientID = item.PatientID if item else "EMERGENCY1"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT MAIN"
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20261127"
    ds.PerformedProcedureStepStartTime = "143500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT chest"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def ended(
    status: str = "COMPLETED", *, series: int = 1, images: list[Dataset] | None = None
) -> Dataset:
    """An N-SET modification list that ends the step, listing ``images`` (else made-up ones)."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261127"
    ds.PerformedProcedureStepEndTime = "144500"
    if images is None:
        images = [
            ct_image(study_uid=generate_uid(), series_uid=generate_uid()) for _ in range(series)
        ]
    by_series: dict[str, list[Dataset]] = {}
    for image in images:
        by_series.setdefault(image.SeriesInstanceUID, []).append(image)
    performed = []
    for series_uid, members in by_series.items():
        item = Dataset()
        item.PerformingPhysicianName = ""
        item.ProtocolName = "CHEST"
        item.OperatorsName = "TECH^ONE"
        item.SeriesInstanceUID = series_uid
        item.SeriesDescription = "AXIAL"
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


# -- images, and DCMTK's storescu to send them ------------------------------------------------------


def ct_image(
    *,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "PID1",
    patient_name: str = "DOE^JOHN",
    accession: str = "",
    number: int = 1,
    modality: str = "CT",
) -> Dataset:
    """A small but well-formed CT image (8 x 8, 12 bits) in the DICOM file format."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.AccessionNumber = accession
    ds.StudyDate = "20261127"
    ds.StudyTime = "143600"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = bytes(range(128))
    return ds


def write_images(folder: Path, images: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image in images:
        path = folder / f"{image.SOPInstanceUID}.dcm"
        image.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def storescu(port: int, *files: Path, aet: str = "CT1") -> subprocess.CompletedProcess[str]:
    """Send files with DCMTK's storescu, as a modality or a workstation would."""
    return subprocess.run(
        [
            "storescu",
            "-v",
            "-aet",
            aet,
            "-aec",
            "MWLBROKER",
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- DCMTK's findscu, as a modality asks for its worklist ------------------------------------------


@dataclass
class Found:
    """What findscu received: the final status as DCMTK names it, and each response."""

    status: str
    responses: list[Dataset]
    files: list[Path]
    output: str

    def values(self, keyword: str) -> list[str]:
        return sorted(str(ds.get(keyword, "")) for ds in self.responses)


_runs = itertools.count(1)


def findscu(
    port: int, *keys: str, tmp_path: Path, aet: str = "MODALITY", aec: str = "MWLBROKER"
) -> Found:
    """``findscu -W`` with ``-k`` keys; responses extracted to files and read back."""
    out = tmp_path / f"find{next(_runs)}"
    out.mkdir()
    command = ["findscu", "-v", "-W", "-aet", aet, "-aec", aec, "-X", "-od", str(out)]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(port)]
    done = subprocess.run(command, capture_output=True, timeout=60, env=dcmtk_env())
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    final = re.search(r"Received Final Find Response \(([^)]*)\)", output)
    files = sorted(out.glob("rsp*.dcm"))
    return Found(final[1] if final else "none", [dcmread(f) for f in files], files, output)


def dcmtk_env() -> dict[str, str]:
    """This environment in UTF-8, so that DCMTK prints names as they are."""
    return {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
