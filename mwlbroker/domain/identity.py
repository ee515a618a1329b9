"""Who is who: the same person under two Patient IDs, and two people under one.

Names are compared after Unicode normalisation (accents, case and punctuation dropped, so
"Müller" and "MULLER" are one name) with rapidfuzz's edit-distance ratios, taking the better of
the name as given and with family and given names swapped (a RIS that put the given name
first). Likely duplicates are looked for only among patients born on the same day and not of
different sexes: the birth date is the block that keeps the work near-linear at 100,000
patients, and it is the field front desks least often get wrong.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from mwlbroker.domain.charsets import fold

# Scores are 0..100 (rapidfuzz's scale). At 85 "SMITH^JONATHAN" and "SMYTH^JONATHON" still
# meet; twins "DOE^JOHN" and "DOE^JANE" (75) do not.
DUPLICATE_MIN_SCORE = 85.0
# Below this, two names given for one Patient ID are not a spelling fix but another person.
COLLISION_MAX_SCORE = 70.0
# (0010,0040) Patient's Sex | CS: M, F, O; anything else (empty, U) says nothing.
_KNOWN_SEXES = {"M", "F", "O"}
_NOT_A_LETTER = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class Person:
    """A patient as the matcher sees them."""

    pk: int
    patient_id: str
    issuer: str
    name: str  # (0010,0010) PN: FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX
    birth_date: str  # (0010,0030) DA: YYYYMMDD
    sex: str  # (0010,0040) CS


@dataclass(frozen=True)
class NameMatch:
    """How alike two names are (0..100), and whether they met with family and given swapped."""

    score: float
    swapped: bool


@dataclass(frozen=True)
class DuplicatePair:
    """Two patients who are likely one person; ``first.pk < second.pk``."""

    first: Person
    second: Person
    score: float
    reasons: tuple[str, ...] = field(default=())

    @property
    def key(self) -> tuple[int, int]:
        return (self.first.pk, self.second.pk)


def plain(text: str) -> str:
    """Lower case without accents or punctuation, single-spaced: "O'Brien-Müller" -> "o brien muller"."""
    return _NOT_A_LETTER.sub(" ", fold(text)).strip()


def name_parts(name: str) -> tuple[str, str]:
    """(family, given and middle) of a DICOM PN, each :func:`plain`; the first component group."""
    alphabetic = name.split("=", 1)[0]
    parts = alphabetic.split("^")
    family = plain(parts[0]) if parts else ""
    given = plain(" ".join(parts[1:3])) if len(parts) > 1 else ""
    return family, given


def name_similarity(a: str, b: str) -> NameMatch:
    """How alike two person names are, allowing typos, accents and swapped family/given names."""
    family_a, given_a = name_parts(a)
    family_b, given_b = name_parts(b)
    left = f"{family_a} {given_a}".strip()
    if not left or not f"{family_b}{given_b}":
        return NameMatch(0.0, False)
    as_given = f"{family_b} {given_b}".strip()
    swapped = f"{given_b} {family_b}".strip()
    direct = fuzz.ratio(left, as_given)
    crossed = fuzz.ratio(left, swapped)
    # Tokens in any order: "DOE^JOHN PAUL" against "DOE JOHN^PAUL" and similar misfiling.
    tokens = fuzz.token_sort_ratio(left, as_given)
    best = max(direct, crossed, tokens)
    return NameMatch(round(best, 1), crossed > direct and crossed >= tokens)


def sexes_differ(a: str, b: str) -> bool:
    """True when both sexes are known and not the same (an unknown one never rules out)."""
    a, b = a.strip().upper(), b.strip().upper()
    return a in _KNOWN_SEXES and b in _KNOWN_SEXES and a != b


def likely_duplicates(
    people: Iterable[Person],
    *,
    min_score: float = DUPLICATE_MIN_SCORE,
    dismissed: frozenset[tuple[int, int]] | set[tuple[int, int]] = frozenset(),
) -> list[DuplicatePair]:
    """Pairs of patients born the same day, of no differing sex, whose names are alike.

    ``dismissed`` holds (lower pk, higher pk) pairs staff said are not the same person. Patients
    without a birth date are not compared (there is no block to put them in). Best first.
    """
    blocks: dict[str, list[Person]] = defaultdict(list)
    for person in people:
        if len(person.birth_date) >= 8:
            blocks[person.birth_date[:8]].append(person)
    found: list[DuplicatePair] = []
    for members in blocks.values():
        if len(members) > 1:
            found.extend(_pairs_in_block(members, min_score, dismissed))
    found.sort(key=lambda pair: (-pair.score, pair.key))
    return found


def _pairs_in_block(
    members: list[Person], min_score: float, dismissed: frozenset[tuple[int, int]] | set
) -> Iterator[DuplicatePair]:
    members = sorted(members, key=lambda person: person.pk)
    for index, first in enumerate(members):
        for second in members[index + 1 :]:
            if (first.pk, second.pk) in dismissed or sexes_differ(first.sex, second.sex):
                continue
            match = name_similarity(first.name, second.name)
            if match.score < min_score:
                continue
            reasons = [f"same birth date {first.birth_date[:8]}"]
            if first.sex.strip() and first.sex.strip().upper() == second.sex.strip().upper():
                reasons.append(f"same sex {first.sex.strip().upper()}")
            reasons.append(
                f"names {match.score:g}% alike"
                + (", family and given swapped" if match.swapped else "")
            )
            yield DuplicatePair(first, second, match.score, tuple(reasons))


@dataclass(frozen=True)
class Observation:
    """Demographics one source (a message, an order) gave for a Patient ID."""

    name: str
    birth_date: str
    sex: str
    source: str  # e.g. "message 12 ADT^A08"
    message_id: int | None = None
    at: str = ""  # ISO time


def conflicts(observations: Iterable[Observation]) -> list[str]:
    """What the observations of one Patient ID disagree on in a way a typo fix would not.

    Two known birth dates or sexes that differ, or two names less alike than
    ``COLLISION_MAX_SCORE``: signs that the ID was given to two people.
    """
    seen = list(observations)
    found: list[str] = []
    births = sorted({o.birth_date for o in seen if o.birth_date})
    if len(births) > 1:
        found.append("birth date: " + " / ".join(births))
    sexes = sorted({o.sex.strip().upper() for o in seen if o.sex.strip().upper() in _KNOWN_SEXES})
    if len(sexes) > 1:
        found.append("sex: " + " / ".join(sexes))
    names = list(dict.fromkeys(o.name for o in seen if o.name))
    for index, name in enumerate(names):
        for other in names[index + 1 :]:
            match = name_similarity(name, other)
            if match.score < COLLISION_MAX_SCORE:
                found.append(f"name: {name} / {other} ({match.score:g}% alike)")
    return found
