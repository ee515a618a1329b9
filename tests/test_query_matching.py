"""Worklist matching rules of PS3.4 C.2.2.2, on items in the DICOM JSON model (no network)."""

from __future__ import annotations

import pytest

from mwlbroker.domain import query as q
from mwlbroker.domain.charsets import fold, transliterate
from mwlbroker.domain.query import Element, FindStatus, QueryError, parse_query


def item(
    *,
    name: str | dict = "DOE^JOHN",
    patient_id: str = "P1",
    accession: str = "A1",
    station: str = "CT1",
    modality: str = "CT",
    date: str = "20261127",
    time: str = "143000",
    study: str = "1.2.3",
) -> dict:
    pn = name if isinstance(name, dict) else {"Alphabetic": name}
    return {
        q.PATIENT_NAME: {"vr": "PN", "Value": [pn]},
        q.PATIENT_ID: {"vr": "LO", "Value": [patient_id]},
        q.ACCESSION_NUMBER: {"vr": "SH", "Value": [accession]},
        q.STUDY_INSTANCE_UID: {"vr": "UI", "Value": [study]},
        q.SPS_SEQUENCE: {
            "vr": "SQ",
            "Value": [
                {
                    q.SCHEDULED_STATION_AE_TITLE: {"vr": "AE", "Value": [station]},
                    q.MODALITY: {"vr": "CS", "Value": [modality]},
                    q.SPS_START_DATE: {"vr": "DA", "Value": [date]},
                    q.SPS_START_TIME: {"vr": "TM", "Value": [time]},
                }
            ],
        },
    }


def sps(*elements: Element) -> Element:
    return Element(q.SPS_SEQUENCE, "SQ", "ScheduledProcedureStepSequence", items=(elements,))


def date(value: str) -> Element:
    return Element(q.SPS_START_DATE, "DA", "ScheduledProcedureStepStartDate", value)


def time(value: str) -> Element:
    return Element(q.SPS_START_TIME, "TM", "ScheduledProcedureStepStartTime", value)


def name(value: str) -> Element:
    return Element(q.PATIENT_NAME, "PN", "PatientName", value)


def matches(elements: list[Element], stored: dict, insensitive: bool = False) -> bool:
    query = parse_query(elements)
    if insensitive:
        query = q.WorklistQuery(query.keys, pn_insensitive=True)
    matched = query.matches(stored)
    # The explainer's verdicts come from the same predicates: they agree on every case here.
    assert all(verdict.matched for verdict in query.explain(stored)) is matched
    return matched


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", True),  # universal
        ("*", True),  # a lone "*" is universal
        ("DOE^JOHN", True),
        ("DOE^JOHN^^", True),  # trailing empty components are not significant
        ("DOE", False),  # single value is the whole name
        ("DOE*", True),
        ("D?E^J*", True),
        ("doe*", False),  # case-sensitive by default
        ("*JOHN", True),
        ("DOE^JOHN=*", True),
        ("=*", True),
    ],
)
def test_person_name_matching(value, expected):
    assert matches([name(value)], item()) is expected


def test_person_name_can_ignore_case_and_accents():
    stored = item(name="MÜLLER^HANS")
    assert not matches([name("muller*")], stored)
    assert matches([name("muller*")], stored, insensitive=True)
    assert matches([name("Müller^Hans")], stored, insensitive=True)
    assert fold("Łódź ŒUVRE") == "lodz oeuvre"


def test_person_name_groups_are_matched_one_by_one():
    stored = item(name={"Alphabetic": "YAMADA^TARO", "Ideographic": "山田^太郎"})
    assert matches([name("YAMADA*")], stored)
    assert matches([name("=山田*")], stored)
    assert not matches([name("=田中*")], stored)


def test_case_sensitive_single_value_and_wildcard_for_other_vrs():
    modality = Element(q.MODALITY, "CS", "Modality", "ct")
    assert not matches([sps(modality)], item())
    assert matches([sps(Element(q.MODALITY, "CS", "Modality", "CT "))], item())
    assert matches([Element(q.PATIENT_ID, "LO", "PatientID", "P?")], item(patient_id="P1"))
    assert not matches([Element(q.PATIENT_ID, "LO", "PatientID", "P?")], item(patient_id="P12"))


def test_uid_list_matching():
    uids = Element(q.STUDY_INSTANCE_UID, "UI", "StudyInstanceUID", "1.2.4\\1.2.3")
    assert matches([uids], item(study="1.2.3"))
    assert not matches([uids], item(study="1.2.5"))
    with pytest.raises(QueryError):
        parse_query([Element(q.STUDY_INSTANCE_UID, "UI", "StudyInstanceUID", "1.2.*")])


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [
        ("20261127", "20261127", True),
        ("20261126-20261127", "20261127", True),
        ("-20261126", "20261127", False),
        ("20261127-", "20261127", True),
        ("20261128-", "20261127", False),
    ],
)
def test_date_range_matching(value, stored, expected):
    assert matches([sps(date(value))], item(date=stored)) is expected


@pytest.mark.parametrize(
    ("stored_date", "stored_time", "expected"),
    [
        ("20261127", "070000", False),  # before 27th 08:00
        ("20261127", "130000", True),  # afternoon of the first day: combined, not per day
        ("20261128", "070000", True),  # morning of the second day, before its 12:00
        ("20261128", "120030", True),  # "1200" as an upper bound includes 12:00:30
        ("20261128", "130000", False),
    ],
)
def test_combined_start_date_and_time_range(stored_date, stored_time, expected):
    query = [sps(date("20261127-20261128"), time("0800-1200"))]
    assert matches(query, item(date=stored_date, time=stored_time)) is expected


def test_time_range_alone_is_a_time_of_day():
    query = [sps(time("0800-1200"))]
    assert matches(query, item(date="20261127", time="0930"))
    assert not matches(query, item(date="20261128", time="1300"))


@pytest.mark.parametrize("bad", ["2026-11-27", "20261127-20261126", "-", "tomorrow", "2026112"])
def test_bad_dates_are_refused_with_the_offending_element(bad):
    with pytest.raises(QueryError) as caught:
        parse_query([sps(date(bad))])
    assert caught.value.status == FindStatus.UNABLE_TO_PROCESS
    assert caught.value.tag == q.SPS_START_DATE


def test_a_key_sequence_with_two_items_does_not_match_the_sop_class():
    two = Element(
        q.SPS_SEQUENCE,
        "SQ",
        "ScheduledProcedureStepSequence",
        items=((Element(q.MODALITY, "CS", "Modality", "CT"),),) * 2,
    )
    with pytest.raises(QueryError) as caught:
        parse_query([two])
    assert caught.value.status == FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS


def test_response_holds_exactly_the_requested_keys():
    query = parse_query(
        [
            Element("00080005", "CS", "SpecificCharacterSet", "ISO_IR 192"),
            name(""),
            Element("00101030", "DS", "PatientWeight", ""),  # not known: returned empty
            sps(Element(q.MODALITY, "CS", "Modality", ""), date("")),
        ]
    )
    response = query.response(item())
    assert set(response) == {q.PATIENT_NAME, "00101030", q.SPS_SEQUENCE}
    assert response["00101030"] == {"vr": "DS"}
    (step,) = response[q.SPS_SEQUENCE]["Value"]
    assert set(step) == {q.MODALITY, q.SPS_START_DATE}
    assert query.charset_requested


def test_profile_conditions_match_but_are_not_returned():
    query = parse_query([name("")])
    station = q.Key(q.SCHEDULED_STATION_AE_TITLE, "AE", "", q.SingleValue("CT2"), source="p")
    query = query.with_sps_condition(station, "filled")
    assert not query.matches(item(station="CT1"))
    assert query.matches(item(station="CT2"))
    assert set(query.response(item(station="CT2"))) == {q.PATIENT_NAME}
    assert query.notes == ("filled",)


def test_transliteration_keeps_what_the_character_set_can_hold():
    assert transliterate("DVOŘÁK^ŁUKASZ", "latin_1") == "DVORÁK^LUKASZ"
    assert transliterate("Øre Straße", "latin_1") == "Øre Straße"
    assert transliterate("Øre Straße", "ascii") == "Ore Strasse"
    assert transliterate("山田", "latin_1") == "??"


def test_query_retrieve_level_is_not_a_worklist_key():
    level = Element(q.QUERY_RETRIEVE_LEVEL, "CS", "QueryRetrieveLevel", "WORKLIST")
    query = parse_query([level, name("")])
    assert query.matches(item()) and set(query.response(item())) == {q.PATIENT_NAME}


def test_keys_as_given_keep_name_groups():
    given = q.identifier_json([name("YAMADA^TARO=山田^太郎")])
    assert given[q.PATIENT_NAME]["Value"] == [
        {"Alphabetic": "YAMADA^TARO", "Ideographic": "山田^太郎"}
    ]


# -- explaining a match key by key ---------------------------------------------------------------


def verdicts(elements: list[Element], stored: dict) -> dict[str, q.KeyVerdict]:
    return {v.key: v for v in parse_query(elements).explain(stored)}


def test_explain_gives_each_key_its_matching_type_values_and_outcome():
    station = Element(q.SCHEDULED_STATION_AE_TITLE, "AE", "ScheduledStationAETitle", "CT2")
    modality = Element(q.MODALITY, "CS", "Modality", "")
    elements = [
        name("DOE*"),
        Element(q.STUDY_INSTANCE_UID, "UI", "StudyInstanceUID", "1.2.4\\1.2.3"),
        sps(station, modality, date("20261127")),
    ]
    found = verdicts(elements, item(station="CT1"))
    assert list(found) == [
        "PatientName",
        "StudyInstanceUID",
        "ScheduledProcedureStepSequence",
        "ScheduledProcedureStepSequence>ScheduledStationAETitle",
        "ScheduledProcedureStepSequence>Modality",
        "ScheduledProcedureStepSequence>ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepSequence>date+time",
    ]
    assert found["PatientName"].as_dict() == {
        "key": "PatientName",
        "tag": q.PATIENT_NAME,
        "match": "wildcard",
        "query_value": "DOE*",
        "item_value": "DOE^JOHN",
        "matched": True,
        "source": "query",
    }
    assert found["StudyInstanceUID"].match == "uid-list"
    sequence = found["ScheduledProcedureStepSequence"]
    assert (sequence.match, sequence.found, sequence.matched) == ("sequence", "1 item", False)
    miss = found["ScheduledProcedureStepSequence>ScheduledStationAETitle"]
    assert (miss.match, miss.wanted, miss.found, miss.matched) == ("single", "CT2", "CT1", False)
    assert miss.tag == f"{q.SPS_SEQUENCE}>{q.SCHEDULED_STATION_AE_TITLE}"
    universal = found["ScheduledProcedureStepSequence>Modality"]
    assert (universal.match, universal.found, universal.matched) == ("universal", "CT", True)
    # the date became a combined date-time range: the date key itself is universal now
    when = found["ScheduledProcedureStepSequence>date+time"]
    assert (when.match, when.found, when.matched) == ("date-time range", "20261127143000", True)
    assert when.wanted == "20261127000000-20261127999999"
    assert [
        v.key for v in parse_query(elements).explain(item(station="CT2")) if not v.matched
    ] == []


def test_explain_a_date_miss_a_profile_condition_and_case_insensitive_names():
    query = parse_query([name("müller*"), sps(date("20261128-"))])
    query = q.WorklistQuery(query.keys, pn_insensitive=True)
    station = q.Key(q.SCHEDULED_STATION_AE_TITLE, "AE", "", q.SingleValue("CT2"), source="p")
    query = query.with_sps_condition(station, "filled")
    stored = item(name="MÜLLER^HANS", station="CT2", date="20261127")
    found = {v.key: v for v in query.explain(stored)}
    assert found["PatientName"].match == "wildcard (case/accent-insensitive)"
    assert found["PatientName"].matched
    assert found[f"ScheduledProcedureStepSequence>{q.SCHEDULED_STATION_AE_TITLE}"].source == "p"
    when = found["ScheduledProcedureStepSequence>date+time"]
    assert (when.wanted, when.found, when.matched) == ("20261128000000-", "20261127143000", False)
    assert not query.matches(stored)


def test_explain_an_item_without_the_sequence():
    stored = item()
    del stored[q.SPS_SEQUENCE]
    found = verdicts([sps(Element(q.MODALITY, "CS", "Modality", "CT"))], stored)
    assert not found["ScheduledProcedureStepSequence"].matched
    assert found["ScheduledProcedureStepSequence>Modality"].found == ""
    assert not found["ScheduledProcedureStepSequence>Modality"].matched


def test_a_logged_identifier_reads_back_as_the_same_elements():
    elements = [
        Element("00080005", "CS", "", "ISO_IR 192"),
        Element(q.ACCESSION_NUMBER, "SH", "", "A1"),
        name("YAMADA^TARO=山田^太郎"),
        Element(q.STUDY_INSTANCE_UID, "UI", "", "1.2.3\\1.2.4"),
        sps(Element(q.MODALITY, "CS", "", "CT"), date("20261127-")),
    ]
    logged = q.identifier_json(elements)
    again = q.elements_from_json(logged, keyword=lambda tag: "K" + tag)
    assert q.identifier_json(again) == logged
    assert again[0].keyword == "K00080005" and again[-1].items[0][0].keyword == "K00080060"
    conditions = [(c["match"], c["value"]) for c in parse_query(elements).describe()]
    assert [(c["match"], c["value"]) for c in parse_query(again).describe()] == conditions
    both = {"Alphabetic": "YAMADA^TARO", "Ideographic": "山田^太郎"}
    assert parse_query(again).matches(item(name=both, study="1.2.4"))
    assert not parse_query(again).matches(item(name={"Alphabetic": "YAMADA^TARO"}))
