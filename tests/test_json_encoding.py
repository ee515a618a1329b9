"""Worklist responses written from DICOM JSON: the same bytes pydicom writes, or a refusal.

Every case is checked against pydicom itself (``Dataset.from_json`` then pynetdicom's
``encode``), in Implicit and Explicit VR Little Endian; and the P-DATA packing of the DICOM
listener against the PDU size limit it must keep.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA

from mwlbroker.dicom.association_tuning import packed_pdvs
from mwlbroker.dicom.json_encoding import NotEncodable, encode_json
from mwlbroker.domain.worklist import MappedStep, StepStatus
from mwlbroker.mapping.worklist_item import worklist_item_json


def _pydicom(item: dict[str, Any], implicit: bool) -> bytes:
    data = encode(Dataset.from_json(item), implicit, True)
    assert data is not None
    return data


def _mapped_item() -> dict[str, Any]:
    """An item as the mappings write it: patient, order, procedure and SPS attributes."""
    return worklist_item_json(
        {
            "PatientName": "DVOŘÁK^JIŘÍ=山田^太郎=やまだ^たろう",
            "PatientID": "P1",
            "IssuerOfPatientID": "HOSP",
            "PatientBirthDate": "19700101",
            "PatientSex": "M",
        },
        {"AccessionNumber": "A1", "ReferringPhysicianName": "HOUSE^GREGORY"},
        MappedStep(
            procedure={
                "StudyInstanceUID": "1.2.3.45",  # odd length: padded with NUL
                "RequestedProcedureDescription": "CT chest",
                "RequestedProcedureCodeSequence": [
                    {"CodeValue": "73130", "CodingSchemeDesignator": "C4", "CodeMeaning": "X"}
                ],
                "PatientState": "",
            },
            step={
                "Modality": "CT",
                "ScheduledStationAETitle": "CT1",
                "ScheduledProcedureStepStartDate": "20261127",
                "ScheduledProcedureStepStartTime": "0930",
                "ScheduledProcedureStepDescription": "Thorax mit KM",
            },
        ),
        StepStatus.SCHEDULED,
    )


CASES: dict[str, dict[str, Any]] = {
    "mapped item": _mapped_item(),
    "requested but unknown keys come back empty": {
        "00080050": {"vr": "SH"},
        "00090010": {"vr": "UN"},  # a private key in implicit VR
        "00101030": {"vr": "DS"},
        "00280010": {"vr": "US"},
        "00321064": {"vr": "SQ"},
        "00400100": {"vr": "SQ", "Value": [{}]},
    },
    "several values, empty values, odd lengths": {
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
        "00080061": {"vr": "CS", "Value": ["CT", "MR", "PT"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}, {}, {"Phonetic": "x"}]},
        "00102000": {"vr": "LO", "Value": ["", "asthma"]},
        "00104000": {"vr": "LT", "Value": ["one line\\not a separator in LT"]},
        "00400100": {
            "vr": "SQ",
            "Value": [
                {"00400001": {"vr": "AE", "Value": ["CT1"]}},
                {"00400001": {"vr": "AE", "Value": ["CT22"]}},
            ],
        },
    },
    "long text": {
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
        "00324000": {"vr": "LT", "Value": ["ß" * 5000]},
    },
}


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_same_bytes_as_pydicom(case: str, implicit: bool) -> None:
    item = CASES[case]
    assert encode_json(item, implicit_vr=implicit, encoding="utf-8") == _pydicom(item, implicit)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_a_single_byte_character_set(implicit: bool) -> None:
    item = {
        "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "MÜLLER^JÜRGEN"}]},
        "00321060": {"vr": "LO", "Value": ["Hüfte"]},
    }
    data = encode_json(item, implicit_vr=implicit, encoding="latin_1")
    assert data == _pydicom(item, implicit)
    assert "MÜLLER^JÜRGEN".encode("latin_1") in data


@pytest.mark.parametrize(
    ("element", "encoding"),
    [
        ({"vr": "DS", "Value": [70.5]}, "utf-8"),  # numbers: pydicom formats them
        ({"vr": "US", "Value": [512]}, "utf-8"),
        ({"vr": "OB", "InlineBinary": "AAEC"}, "utf-8"),
        ({"vr": "OB", "BulkDataURI": "http://example.org/1"}, "utf-8"),
        ({"vr": "LO", "Value": [None]}, "utf-8"),
        ({"vr": "PN", "Value": ["DOE^JOHN"]}, "utf-8"),  # not the JSON model's PN object
        ({"vr": "LO", "Value": ["Dvořák"]}, "latin_1"),  # not in the character set
        ({"vr": "CS", "Value": ["É"]}, "utf-8"),  # CS is the default repertoire only
        ({"vr": "LO", "Value": ["x" * 70000]}, "utf-8"),  # longer than a 16-bit length
        ({"Value": ["no VR"]}, "utf-8"),
    ],
)
def test_what_it_leaves_to_pydicom(element: dict[str, Any], encoding: str) -> None:
    with pytest.raises(NotEncodable):
        encode_json({"00101030": element}, implicit_vr=False, encoding=encoding)


def _fragments(*sizes: int) -> list[P_DATA]:
    fragments = []
    for number, size in enumerate(sizes):
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((1, bytes([number]) * size))
        fragments.append(pdata)
    return fragments


def test_pdvs_are_packed_up_to_the_maximum_pdu_length() -> None:
    # each PDV item is 4 + 1 + len(value) bytes: 105, 55, 45, 100
    packed = list(packed_pdvs(_fragments(100, 50, 40, 95), 160))
    assert [[len(v) for _, v in p.presentation_data_value_list] for p in packed] == [
        [100, 50],
        [40, 95],
    ]
    for pdata in packed:
        assert sum(5 + len(v) for _, v in pdata.presentation_data_value_list) <= 160
    values = [v for p in packed for _, v in p.presentation_data_value_list]
    assert values == [f.presentation_data_value_list[0][1] for f in _fragments(100, 50, 40, 95)]


def test_pdvs_without_a_limit_go_in_one_pdu() -> None:
    (packed,) = packed_pdvs(_fragments(100, 50_000, 3), 0)
    assert [len(v) for _, v in packed.presentation_data_value_list] == [100, 50_000, 3]
