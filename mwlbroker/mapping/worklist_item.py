"""Build the Modality Worklist response item for one scheduled step (PS3.4 K.6), and its JSON.

The item holds the patient, order and requested procedure attributes at the top level and the
step's attributes inside a one-item Scheduled Procedure Step Sequence (0040,0100). It is kept
in the DICOM JSON model (PS3.18 F.2) so the store can save it and serve it back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import validate_value

from mwlbroker.domain.errors import MappingError
from mwlbroker.domain.worklist import CLEAR, Attributes, MappedOrder, MappedStep, StepStatus

_INTEGER_VRS = frozenset({"US", "UL", "SS", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})


def build_worklist_item(
    patient: Attributes,
    order: Attributes,
    step: MappedStep,
    status: StepStatus,
    charset: str = "ISO_IR 192",
) -> Dataset:
    """A complete MWL response item; attributes whose value is CLEAR or None are left out.

    Raises :class:`MappingError` when a value does not fit its attribute's VR.
    """
    item = Dataset()
    item.SpecificCharacterSet = charset  # (0008,0005) Specific Character Set
    for attributes in (patient, order, step.procedure):
        _set_attributes(item, attributes)
    scheduled_step = Dataset()
    _set_attributes(scheduled_step, step.step)
    # (0040,0020) Scheduled Procedure Step Status | CS, decided by the status table
    scheduled_step.ScheduledProcedureStepStatus = str(status)
    item.ScheduledProcedureStepSequence = Sequence([scheduled_step])  # (0040,0100)
    return item


def worklist_items(order: MappedOrder, charset: str = "ISO_IR 192") -> list[Dataset]:
    """The worklist item of each step of a mapped order, in message order."""
    return [
        build_worklist_item(order.patient.attributes, order.order, step, order.step_status, charset)
        for step in order.steps
    ]


def item_to_json(item: Dataset) -> dict[str, Any]:
    """The item in the DICOM JSON model (PS3.18 F.2), ready for ``json.dumps``."""
    return item.to_json_dict()


def item_from_json(data: Mapping[str, Any]) -> Dataset:
    """An item back from its DICOM JSON model."""
    return Dataset.from_json(dict(data))


def dataset_from_attributes(attributes: Attributes) -> Dataset:
    """A dataset from keyword -> value (lists of dicts become sequences); CLEAR and None skipped."""
    dataset = Dataset()
    _set_attributes(dataset, attributes)
    return dataset


def _set_attributes(dataset: Dataset, attributes: Attributes) -> None:
    for keyword, value in attributes.items():
        if value is None or value is CLEAR:
            continue
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise MappingError(f"{keyword!r} is not a DICOM keyword")
        vr = dictionary_VR(tag).split(" or ")[0]
        dataset.add(DataElement(tag, vr, _element_value(keyword, vr, value)))


def _element_value(keyword: str, vr: str, value: Any) -> Any:
    if vr == "SQ":
        if not isinstance(value, Iterable) or isinstance(value, str):
            raise MappingError(f"{keyword} is a sequence, got {value!r}")
        return Sequence([dataset_from_attributes(item) for item in value])
    if not isinstance(value, str):
        raise MappingError(f"{keyword} ({vr}) needs text, got {value!r}")
    try:
        if vr in _INTEGER_VRS:
            return [int(part) for part in value.split("\\")] if "\\" in value else int(value)
        if vr in _FLOAT_VRS:
            return [float(part) for part in value.split("\\")] if "\\" in value else float(value)
        for part in value.split("\\"):
            validate_value(vr, part, pydicom_config.RAISE)
    except ValueError as error:
        reason = str(error).split(" Please see")[0]
        raise MappingError(f"{keyword} ({vr}) = {value!r}: {reason}") from None
    return value
