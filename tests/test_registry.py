"""The HL7 v2 registry is the one list of what the broker takes, and the intake routes by it."""

from __future__ import annotations

from typing import Any

from mwlbroker.hl7v2 import registry
from mwlbroker.hl7v2.registry import Meaning
from mwlbroker.mapping.profile import ORDER_MESSAGES, PRIOR_ID_TRIGGERS
from mwlbroker.services.ingest import build_routes


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, message: Any) -> Any:
        return message

    def apply(self, session: Any, prepared: Any, row: Any) -> None:
        return None


def test_route_finds_a_registered_type_and_its_applier():
    found = registry.route("OMG^O19")
    assert found is not None
    assert (found.applier, found.type_name, found.trigger.meaning) == (
        "orders",
        "OMG^O19",
        Meaning.ORDER,
    )
    assert registry.route("OMG^O21") is None  # a trigger the entry lacks
    assert registry.route("ORU^R01") is None  # a code the registry lacks
    assert registry.route("ADT") is None  # no trigger, no route


def test_merge_triggers_have_one_meaning_each():
    assert {"A18", "A34", "A36", "A39", "A40"} == registry.MERGE_TRIGGERS
    assert {"A47"} == registry.CHANGE_ID_TRIGGERS
    # what the mapping reads MRG-1 for; A35 merges accounts only and A06 / A07 may carry an
    # MRG with the prior visit, so neither names a prior patient
    assert {"A18", "A34", "A36", "A39", "A40", "A47"} == PRIOR_ID_TRIGGERS
    assert not registry.UPDATE_TRIGGERS & PRIOR_ID_TRIGGERS
    assert {"A02", "A03", "A06", "A07", "A11", "A12", "A13"} == registry.VISIT_TRIGGERS
    assert {"A24", "A37"} == registry.LINK_TRIGGERS
    assert not registry.VISIT_TRIGGERS & (PRIOR_ID_TRIGGERS | registry.LINK_TRIGGERS)


def test_every_order_type_names_the_segment_of_one_item():
    assert ORDER_MESSAGES == {"ORM^O01": "OBR", "OMI^O23": "IPC", "OMG^O19": "OBR"}
    for entry in registry.REGISTRY:
        if entry.applier == "orders":
            assert entry.item_segment, entry.code


def test_section_keys_are_the_type_names_and_whole_type_codes():
    keys = registry.section_keys()
    assert set(registry.type_names()) <= set(keys)
    assert {"ADT", "SIU"} <= set(keys) and "ORM" not in keys
    assert len(keys) == len(set(keys))


def test_routes_take_only_mapped_types_with_an_applier():
    orders, patients = _Named("orders"), _Named("patients")
    table = build_routes({"orders": orders, "patients": patients}, {"ORM^O01", "ADT^A40"})
    assert table == {"ORM^O01": orders, "ADT^A40": patients}
    everything = build_routes({"orders": orders})  # no mapping given: every registered type
    assert set(everything) == set(registry.type_names("orders"))


def test_the_broker_has_an_applier_for_every_registered_name(broker):
    assert {entry.applier for entry in registry.REGISTRY} <= set(broker.ingest.appliers)
