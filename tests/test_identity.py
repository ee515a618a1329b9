"""The duplicate-patient matcher and the collision rule, on plain data (no database needed)."""

from __future__ import annotations

import random
import time

import pytest

from mwlbroker.domain.identity import (
    DUPLICATE_MIN_SCORE,
    Observation,
    Person,
    conflicts,
    likely_duplicates,
    name_similarity,
)


def person(pk: int, name: str, birth: str = "19700101", sex: str = "M", pid: str = "") -> Person:
    return Person(pk, pid or f"P{pk}", "HOSP", name, birth, sex)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SMITH^JONATHAN", "SMYTH^JONATHON"),  # two typos
        ("SCHNEIDER^ANNA", "SCHNIEDER^ANNA"),  # transposed letters
        ("DOE^JOHN", "JOHN^DOE"),  # family and given swapped
        ("NGUYEN^THI MAI", "NGUYEN^MAI THI"),  # given names in another order
        ("Müller^Jürgen", "MULLER^JURGEN"),  # accents and case
        ("Dvořák^Antonín", "dvorak^antonin"),
        ("O'BRIEN^SEAN", "OBRIEN^SEÁN"),  # punctuation and an accent
        ("Łukasz^Żółć", "LUKASZ^ZOLC"),  # letters Unicode does not decompose
    ],
)
def test_the_same_name_written_differently_matches(a, b):
    assert name_similarity(a, b).score >= DUPLICATE_MIN_SCORE


def test_swapped_names_are_said_to_be_swapped():
    assert name_similarity("DOE^JOHN", "JOHN^DOE").swapped
    assert not name_similarity("DOE^JOHN", "DOE^JOHN").swapped


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SMITH^JOHN", "BROWN^MARY"),  # a true negative
        ("DOE^JOHN", "DOE^JANE"),  # twins: same family, same birthday, other given name
        ("GARCIA^LUIS", "GARCIA^MARIA"),
        ("", "DOE^JOHN"),  # no name says nothing
    ],
)
def test_different_people_do_not_match(a, b):
    assert name_similarity(a, b).score < DUPLICATE_MIN_SCORE


def test_duplicates_need_the_same_birth_date_and_no_differing_sex():
    people = [
        person(1, "SMITH^JONATHAN"),
        person(2, "SMYTH^JONATHON"),  # the same person: found
        person(3, "SMITH^JONATHAN", birth="19700102"),  # another birthday: not compared
        person(4, "SMITH^JONATHAN", sex="F"),  # another sex: ruled out
        person(5, "SMITH^JONATHAN", sex=""),  # sex unknown: does not rule out
        person(6, "BROWN^MARY"),  # same birthday, another person
        person(7, "SMITH^JONATHAN", birth=""),  # no birth date: no block to compare in
    ]
    pairs = likely_duplicates(people)
    assert {pair.key for pair in pairs} == {(1, 2), (1, 5), (2, 5), (4, 5)}
    best = pairs[0]
    assert best.key in {(1, 5)} and best.score == 100
    assert "same birth date 19700101" in best.reasons


def test_dismissed_pairs_are_left_out():
    people = [person(1, "DOE^JOHN"), person(2, "JOHN^DOE")]
    assert [p.key for p in likely_duplicates(people)] == [(1, 2)]
    assert likely_duplicates(people, dismissed={(1, 2)}) == []


def test_100k_patients_are_swept_in_seconds_and_planted_duplicates_found():
    rng = random.Random(7)
    families = [f"FAM{i:05d}" for i in range(20000)]
    givens = ["ANNA", "PETER", "MARIA", "JOHN", "LENA", "PAUL", "SARA", "TOM", "EVA", "MAX"]
    people = []
    for pk in range(1, 100_001):
        birth = f"{rng.randint(1930, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        people.append(
            person(pk, f"{rng.choice(families)}^{rng.choice(givens)}", birth, rng.choice("MF"))
        )
    planted = [
        Person(100_001, "X1", "HOSP", "MÜLLER^JÜRGEN", "19550505", "M"),
        Person(100_002, "X2", "HOSP", "MULLER^JURGEN", "19550505", "M"),
        Person(100_003, "X3", "HOSP", "KOWALSKA^ANNA", "19600606", "F"),
        Person(100_004, "X4", "HOSP", "ANNA^KOWALSKA", "19600606", "F"),
    ]
    started = time.perf_counter()
    pairs = likely_duplicates(people + planted)
    elapsed = time.perf_counter() - started
    keys = {pair.key for pair in pairs}
    assert {(100_001, 100_002), (100_003, 100_004)} <= keys
    # Blocking by birth date keeps it near-linear; all pairs would be 5 * 10^9 comparisons.
    assert elapsed < 20, f"{elapsed:.1f} s for 100,004 patients"


def test_conflicting_birth_dates_sexes_or_names_are_collisions():
    def seen(name: str, birth: str, sex: str) -> Observation:
        return Observation(name, birth, sex, "message")

    assert conflicts([seen("DOE^JOHN", "19700101", "M"), seen("DOE^JON", "19700101", "M")]) == []
    assert conflicts([seen("DOE^JOHN", "19700101", "M"), seen("DOE^JOHN", "", "")]) == []
    found = conflicts([seen("DOE^JOHN", "19700101", "M"), seen("SMITH^MARY", "19850505", "F")])
    assert [f.split(":")[0] for f in found] == ["birth date", "sex", "name"]
