"""Coerce an instance's patient and order attributes to the broker's record (the RIS is the
source of truth), keeping what they were in the Original Attributes Sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

UTF8 = "ISO_IR 192"


def coerce(
    dataset: Dataset,
    values: Mapping[str, str],
    *,
    at: datetime,
    system: str = "MWLBROKER",
    source: str = "",
) -> list[str]:
    """Set each keyword's value where it differs; returns the keywords changed.

    The values replaced (absent ones as empty elements) go into a new item of (0400,0561)
    Original Attributes Sequence, as PS3.3 C.12.1.1.9.2 asks of a system that coerces.
    """
    originals = Dataset()
    changed = []
    for keyword, value in values.items():
        current = dataset.get(keyword)
        if _same(current, value):
            continue
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")
        if keyword in dataset:
            element = dataset[keyword]
            originals.add(DataElement(element.tag, element.VR, element.value))
        else:
            originals.add(DataElement(tag, dictionary_VR(tag), None))  # it was absent
        changed.append(keyword)
    if not changed:
        return []
    if any(not values[k].isascii() for k in changed) and _charset(dataset) != UTF8:
        # Decode every text value in the old character set first, then write all in UTF-8.
        dataset.decode()
        dataset.SpecificCharacterSet = UTF8  # (0008,0005)
    for keyword in changed:
        setattr(dataset, keyword, values[keyword])
    item = Dataset()
    item.ModifiedAttributesSequence = [originals]  # (0400,0550)
    item.AttributeModificationDateTime = at.strftime("%Y%m%d%H%M%S")  # (0400,0562)
    item.ModifyingSystem = system[:64]  # (0400,0563)
    item.SourceOfPreviousValues = source[:64]  # (0400,0564)
    item.ReasonForTheAttributeModification = "COERCE"  # (0400,0565)
    history = list(dataset.get("OriginalAttributesSequence") or [])
    dataset.OriginalAttributesSequence = [*history, item]  # (0400,0561)
    return changed


def _same(current: object, value: str) -> bool:
    if current is None:
        return value == ""
    return str(current).strip() == value.strip()


def _charset(dataset: Dataset) -> str:
    value = dataset.get("SpecificCharacterSet", "")
    return value if isinstance(value, str) else "(code extensions)"  # several terms: ISO 2022
