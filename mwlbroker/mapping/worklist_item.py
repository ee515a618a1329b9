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
from mwlbroker.domain.messages import HL7ErrorCode
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
        raise MappingError(
            f"{keyword} ({vr}) = {value!r}: {reason}", error_code=HL7ErrorCode.DATA_TYPE_ERROR
        ) from None
    return value


# -- the same item straight to DICOM JSON, for the intake hot path ------------------------------

# Text VRs whose value splits on backslash into several values; LT, ST, UT and UR never do.
_MULTI_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
_ELEMENT_INFO: dict[str, tuple[str, str]] = {}


def _info(keyword: str) -> tuple[str, str]:
    """(tag as 8 hex digits, VR) of a keyword, looked up once."""
    found = _ELEMENT_INFO.get(keyword)
    if found is None:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise MappingError(f"{keyword!r} is not a DICOM keyword")
        found = _ELEMENT_INFO[keyword] = (f"{tag:08X}", dictionary_VR(tag).split(" or ")[0])
    return found


def worklist_item_json(
    patient: Attributes,
    order: Attributes,
    step: MappedStep,
    status: StepStatus,
    charset: str = "ISO_IR 192",
) -> dict[str, Any]:
    """``item_to_json(build_worklist_item(...))`` without building a pydicom dataset.

    The mapping has already checked every value against its VR; this only writes the JSON
    model (PS3.18 F.2). Elements of VRs it does not write itself go through pydicom.
    """
    item: dict[str, Any] = {}
    _json_attributes(item, {"SpecificCharacterSet": charset})
    for attributes in (patient, order, step.procedure):
        _json_attributes(item, attributes)
    scheduled_step: dict[str, Any] = {}
    _json_attributes(scheduled_step, step.step)
    _json_attributes(scheduled_step, {"ScheduledProcedureStepStatus": str(status)})
    _json_attributes(item, {"ScheduledProcedureStepSequence": [scheduled_step]})
    return dict(sorted(item.items()))


def _json_attributes(target: dict[str, Any], attributes: Attributes) -> None:
    for keyword, value in attributes.items():
        if value is None or value is CLEAR:
            continue
        tag, vr = _info(keyword)
        target[tag] = _json_element(keyword, vr, value)


def _json_element(keyword: str, vr: str, value: Any) -> dict[str, Any]:
    tag = _info(keyword)[0]
    if vr == "SQ":
        if not isinstance(value, Iterable) or isinstance(value, str):
            raise MappingError(f"{keyword} is a sequence, got {value!r}")
        items = []
        for entry in value:
            if all(len(key) == 8 and isinstance(v, dict) for key, v in entry.items()):
                items.append(dict(sorted(entry.items())))  # already JSON (the SPS item)
                continue
            converted: dict[str, Any] = {}
            _json_attributes(converted, entry)
            items.append(dict(sorted(converted.items())))
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if not isinstance(value, str):
        raise MappingError(f"{keyword} ({vr}) needs text, got {value!r}")
    if vr == "PN":
        names = [part for part in value.split("\\")]
        return (
            {"vr": "PN", "Value": [_person_name(name) for name in names]} if value else {"vr": "PN"}
        )
    if vr in _MULTI_TEXT_VRS:
        return {"vr": vr, "Value": value.split("\\")} if value else {"vr": vr}
    if vr in _SINGLE_TEXT_VRS:
        return {"vr": vr, "Value": [value]} if value else {"vr": vr}
    # Numbers and anything unusual: let pydicom write exactly what it would.
    element = DataElement(int(tag, 16), vr, _element_value(keyword, vr, value))
    return element.to_json_dict(None, 1024)


def _person_name(name: str) -> dict[str, str]:
    groups = name.split("=")
    labels = ("Alphabetic", "Ideographic", "Phonetic")
    return {label: group for label, group in zip(labels, groups, strict=False) if group}
