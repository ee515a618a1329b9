"""A modality's worklist query by scheduled date, as a scanner asks for today's exams.

PS3.4 K.6.1.2.2: ScheduledProcedureStepStartDate is a matching key inside the Scheduled
Procedure Step Sequence; the other keys asked for here are return keys, so each item comes
back with its start and end, its priority and its identifiers.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind


def worklist_on(
    port: int, date: str, *, modality: str = "", ae_title: str = "CT1"
) -> list[Dataset]:
    """The worklist items scheduled on ``date`` (DA, or a DA range such as ``A-B``)."""
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    query.AccessionNumber = ""
    query.StudyInstanceUID = ""
    query.RequestedProcedureID = ""
    query.RequestedProcedurePriority = ""
    step = Dataset()
    step.Modality = modality
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = ""
    step.ScheduledProcedureStepEndDate = ""
    step.ScheduledProcedureStepEndTime = ""
    step.ScheduledProcedureStepID = ""
    step.ScheduledStationAETitle = ""
    query.ScheduledProcedureStepSequence = [step]
    ae = AE(ae_title=ae_title)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    assert assoc.is_established
    found = []
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status is not None, "no C-FIND response"
            if status.Status in (0xFF00, 0xFF01):
                found.append(identifier)
            else:
                assert status.Status == 0x0000, f"C-FIND failed: 0x{status.Status:04X}"
    finally:
        assoc.release()
    return found


def accessions_on(port: int, date: str, **keys: str) -> list[str]:
    """The accession numbers of the items scheduled on ``date``, sorted."""
    return sorted(str(item.AccessionNumber) for item in worklist_on(port, date, **keys))
