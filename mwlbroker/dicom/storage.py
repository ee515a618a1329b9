"""The Storage SCP's side of the AE: which SOP classes and transfer syntaxes it takes, and what
it reads out of each received instance for the index.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    MPEG2MPML,
    MPEG4HP41,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import sop_class
from pynetdicom.events import Event

from mwlbroker.domain.images import ReceivedInstance, StorageRefused, StorageStatus

# The image and document SOP classes radiology modalities send (PS3.4 B.5).
STORAGE_SOP_CLASSES = tuple(
    getattr(sop_class, name)
    for name in (
        "ComputedRadiographyImageStorage",
        "DigitalXRayImageStorageForPresentation",
        "DigitalXRayImageStorageForProcessing",
        "DigitalMammographyXRayImageStorageForPresentation",
        "DigitalMammographyXRayImageStorageForProcessing",
        "BreastTomosynthesisImageStorage",
        "CTImageStorage",
        "EnhancedCTImageStorage",
        "MRImageStorage",
        "EnhancedMRImageStorage",
        "UltrasoundImageStorage",
        "UltrasoundMultiFrameImageStorage",
        "EnhancedUSVolumeStorage",
        "SecondaryCaptureImageStorage",
        "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
        "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
        "MultiFrameTrueColorSecondaryCaptureImageStorage",
        "XRayAngiographicImageStorage",
        "EnhancedXAImageStorage",
        "XRayRadiofluoroscopicImageStorage",
        "EnhancedXRFImageStorage",
        "XRay3DAngiographicImageStorage",
        "NuclearMedicineImageStorage",
        "PositronEmissionTomographyImageStorage",
        "EnhancedPETImageStorage",
        "VLPhotographicImageStorage",
        "VLEndoscopicImageStorage",
        "GrayscaleSoftcopyPresentationStateStorage",
        "SegmentationStorage",
        "EncapsulatedPDFStorage",
        "EncapsulatedCDAStorage",
        "BasicTextSRStorage",
        "EnhancedSRStorage",
        "ComprehensiveSRStorage",
        "Comprehensive3DSRStorage",
        "KeyObjectSelectionDocumentStorage",
        "XRayRadiationDoseSRStorage",
    )
)

# Uncompressed first; the compressed syntaxes are kept as received, never decoded.
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2K,
    RLELossless,
    MPEG2MPML,
    MPEG4HP41,
)


def read_instance(event: Event, calling_ae: str) -> ReceivedInstance:
    """What the index keeps of a C-STORE request's data set; raises :class:`StorageRefused`."""
    request = event.request
    sop_instance_uid = str(request.AffectedSOPInstanceUID or "")
    sop_class_uid = str(request.AffectedSOPClassUID or "")
    try:
        dataset: Dataset = event.dataset
        values = {
            keyword: _text(dataset, keyword)
            for keyword in (
                "SOPInstanceUID",
                "SOPClassUID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "PatientID",
                "IssuerOfPatientID",
                "PatientName",
                "AccessionNumber",
                "StudyDate",
                "StudyDescription",
                "Modality",
                "SeriesNumber",
                "SeriesDescription",
                "InstanceNumber",
            )
        }
    except Exception as error:  # pydicom raises many types for a malformed data set
        raise StorageRefused(
            StorageStatus.CANNOT_UNDERSTAND, f"data set cannot be decoded: {error}"
        ) from None
    if values["SOPClassUID"] and values["SOPClassUID"] != sop_class_uid:
        # PS3.4 B.2.3: the data set is not an instance of the class it was sent as
        raise StorageRefused(
            StorageStatus.DATA_SET_DOES_NOT_MATCH,
            "(0008,0016) SOP Class UID differs from the request's",
        )
    if values["SOPInstanceUID"] and values["SOPInstanceUID"] != sop_instance_uid:
        raise StorageRefused(
            StorageStatus.CANNOT_UNDERSTAND,
            "(0008,0018) SOP Instance UID differs from the request's",
        )
    for keyword, tag in (("StudyInstanceUID", "0020,000D"), ("SeriesInstanceUID", "0020,000E")):
        if not values[keyword]:
            raise StorageRefused(
                StorageStatus.CANNOT_UNDERSTAND, f"({tag}) {keyword} is missing or empty"
            )
    return ReceivedInstance(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        study_instance_uid=values["StudyInstanceUID"],
        series_instance_uid=values["SeriesInstanceUID"],
        transfer_syntax_uid=str(event.context.transfer_syntax),
        patient_id=values["PatientID"],
        issuer=values["IssuerOfPatientID"],
        patient_name=values["PatientName"],
        accession_number=values["AccessionNumber"],
        study_date=values["StudyDate"],
        study_description=values["StudyDescription"],
        modality=values["Modality"],
        series_number=values["SeriesNumber"],
        series_description=values["SeriesDescription"],
        instance_number=values["InstanceNumber"],
        calling_ae=calling_ae,
    )


def _text(dataset: Dataset, keyword: str) -> str:
    value: Any = dataset.get(keyword)
    if value is None:
        return ""
    return str(value).strip()
