"""The worklist item written straight to DICOM JSON equals what pydicom writes."""

from __future__ import annotations

import pytest

from mwlbroker.domain.worklist import CLEAR, MappedStep, StepStatus
from mwlbroker.hl7v2.reader import parse_message
from mwlbroker.mapping.engine import load_mappings
from mwlbroker.mapping.worklist_item import (
    build_worklist_item,
    item_from_json,
    item_to_json,
    worklist_item_json,
)
from tests.support.samples import sample_files

ORDERS = [p for p in sample_files() if "_adt_" not in p.name]
assert ORDERS, "no sample order message (all are ADT): the checks below would prove nothing"


@pytest.mark.parametrize("path", ORDERS, ids=lambda p: p.name)
def test_every_sample_item_is_the_same_both_ways(path):
    orders = load_mappings().map_orders(parse_message(path.read_bytes()))
    steps = [(mapped, step) for mapped in orders for step in mapped.steps]
    assert steps, f"{path.name} maps to no worklist item"
    for mapped, step in steps:
        slow = build_worklist_item(
            mapped.patient.attributes, mapped.order, step, mapped.step_status
        )
        fast = worklist_item_json(mapped.patient.attributes, mapped.order, step, mapped.step_status)
        assert fast == item_to_json(slow)
        assert item_from_json(fast) == slow


def test_unusual_values_are_the_same_both_ways():
    patient = {
        "PatientName": "YAMADA^TARO=山田^太郎=やまだ^たろう",
        "OtherPatientNames": "DOE^J\\DOE^JOHN",
        "PatientWeight": "72.5",
        "PatientSize": "1.8",
        "PatientID": "X1",
        "PatientComments": "multi\\line is one value",
        "PatientAddress": CLEAR,
        "EthnicGroup": None,
    }
    order = {"OtherPatientIDsSequence": [{"PatientID": "Y2", "IssuerOfPatientID": "OTHER"}]}
    step = MappedStep(
        {
            "RequestedProcedureCodeSequence": [
                {"CodeValue": "71260", "CodingSchemeDesignator": "C4"}
            ]
        },
        {"Modality": "CT", "ScheduledStationAETitle": "CT1"},
    )
    slow = build_worklist_item(patient, order, step, StepStatus.HELD)
    fast = worklist_item_json(patient, order, step, StepStatus.HELD)
    assert fast == item_to_json(slow)
