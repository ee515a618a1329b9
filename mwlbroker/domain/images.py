"""Images and documents a modality sends (C-STORE): what the broker indexes of each instance.

Pure Python: the DICOM edge reads these values out of the data set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StorageStatus(enum.IntEnum):
    """C-STORE response statuses of the Storage SCP (PS3.4 B.2.3)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # refused: out of resources (disk full, database unavailable)
    DATA_SET_DOES_NOT_MATCH = 0xA900  # error: data set does not match SOP class
    CANNOT_UNDERSTAND = 0xC000  # error: cannot understand


class StorageRefused(Exception):
    """An instance the SCP does not store: the status and a short error comment (64 max)."""

    def __init__(self, status: StorageStatus, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment[:64]


class MatchedBy(enum.StrEnum):
    """How a received study was matched to its order."""

    STUDY_INSTANCE_UID = "study uid"
    ACCESSION_NUMBER = "accession"  # with the Patient ID
    MANUAL = "manual"  # linked to one scheduled step by staff


@dataclass(frozen=True)
class ReceivedInstance:
    """The identifiers and descriptive attributes of one received SOP instance."""

    sop_instance_uid: str  # (0008,0018)
    sop_class_uid: str  # (0008,0016)
    study_instance_uid: str  # (0020,000D)
    series_instance_uid: str  # (0020,000E)
    transfer_syntax_uid: str = ""  # (0002,0010)
    patient_id: str = ""  # (0010,0020)
    issuer: str = ""  # (0010,0021)
    patient_name: str = ""  # (0010,0010)
    accession_number: str = ""  # (0008,0050)
    study_date: str = ""  # (0008,0020)
    study_description: str = ""  # (0008,1030)
    modality: str = ""  # (0008,0060)
    series_number: str = ""  # (0020,0011)
    series_description: str = ""  # (0008,103E)
    instance_number: str = ""  # (0020,0013)
    calling_ae: str = ""  # who sent it
