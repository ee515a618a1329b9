"""Synthetic but realistic radiology orders: ORM^O01 v2.3.1 spread over stations, modalities, days.

A department of nine scanners does :data:`PER_DAY` exams a day. Order ``i`` is always the same
for the same run tag, and the days fill outwards from today (today, tomorrow, yesterday, the day
after, ...), one day's volume at a time: a worklist of any size N >= a few days' volume holds
the same number of items for today, so queries can be compared across sizes.
Every fourth order is a second exam for the patient of the order before it.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

PER_DAY = 200  # exams a day in the whole department
SEED = 20261127  # the same orders on every run, identifiers aside
SENDING_APPLICATION = "MWLBENCH"  # MSH-3 of every synthetic message
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mwlbroker:bench")


@dataclass(frozen=True)
class Station:
    """A scanner: its AE title and name, its modality, and its share of the department's exams."""

    ae_title: str
    name: str
    modality: str
    share: float


STATIONS = (
    Station("CT1", "CT MAIN", "CT", 0.13),
    Station("CT2", "CT EMERGENCY", "CT", 0.12),
    Station("MR1", "MR NEURO", "MR", 0.08),
    Station("MR2", "MR MSK", "MR", 0.07),
    Station("US1", "US ROOM 1", "US", 0.09),
    Station("US2", "US ROOM 2", "US", 0.08),
    Station("US3", "US ROOM 3", "US", 0.08),
    Station("CR1", "XR ROOM 1", "CR", 0.18),
    Station("CR2", "XR ROOM 2", "CR", 0.17),
)
_STATION_WEIGHTS = [s.share for s in STATIONS]

# Local procedure code and text (OBR-4), and the billing code (OBR-44), per modality.
PROCEDURES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "CT": (
        ("CT0101", "CT CHEST WITH CONTRAST", "71260", "CT THORAX W/CONTRAST"),
        ("CT0203", "CT ABDOMEN WITHOUT CONTRAST", "74150", "CT ABDOMEN W/O CONTRAST"),
        ("CT0301", "CT HEAD WITHOUT CONTRAST", "70450", "CT HEAD/BRAIN W/O CONTRAST"),
    ),
    "MR": (
        ("MR0101", "MR BRAIN WITHOUT CONTRAST", "70551", "MRI BRAIN W/O CONTRAST"),
        ("MR0301", "MR LUMBAR SPINE WITHOUT CONTRAST", "72148", "MRI LUMBAR SPINE W/O CONTRAST"),
        ("MR0402", "MR KNEE WITHOUT CONTRAST", "73721", "MRI JOINT LOWER EXTREMITY W/O"),
    ),
    "US": (
        ("US0401", "US ABDOMEN COMPLETE", "76700", "US EXAM ABDOMEN COMPLETE"),
        ("US0502", "US PELVIS", "76856", "US EXAM PELVIC COMPLETE"),
        ("US0601", "US THYROID", "76536", "US EXAM OF HEAD AND NECK"),
    ),
    "CR": (
        ("XR0501", "XR CHEST PA AND LATERAL", "71046", "X-RAY EXAM CHEST 2 VIEWS"),
        ("XR0601", "XR KNEE 3 VIEWS", "73562", "X-RAY EXAM OF KNEE 3"),
        ("XR0701", "XR HAND 3 VIEWS", "73130", "X-RAY EXAM OF HAND"),
    ),
}

_FAMILY = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCÍA", "MÜLLER", "SCHMIDT", "NGUYEN",
    "DVOŘÁK", "KOWALSKI", "O'BRIEN", "ROSSI", "JANSEN", "NØRGAARD", "DUBOIS", "LEFÈVRE", "PATEL",
    "KIM", "SILVA", "HANSEN", "NOVÁK", "ANDERSSON", "MARTIN", "MURPHY", "WAGNER", "COHEN", "ÖZTÜRK",
)  # fmt: skip
_GIVEN = {
    "F": ("ANNA", "MARIA", "EMMA", "SOPHIE", "JULIA", "LAURA", "ZOË", "HANNA", "CHLOÉ", "LINDA"),
    "M": ("JOHN", "DAVID", "PETER", "JAN", "LUCAS", "MARTIN", "JOSÉ", "THOMAS", "JIŘÍ", "ANDREW"),
}
_DOCTORS = (
    ("1234", "SMITH", "ROBERT"), ("5678", "JONES", "MARY"), ("2233", "PATEL", "RAJ"),
    ("3344", "NGUYEN", "LINDA"), ("4455", "BAKER", "SUSAN"), ("6677", "HOFFMANN", "KLAUS"),
)  # fmt: skip
_REASONS = (
    "Suspected pulmonary embolism", "Follow-up", "Pain", "Trauma", "Rule out fracture",
    "Headache", "Staging", "Screening",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticOrder:
    """One order with one requested procedure and one scheduled step, as the RIS knows it."""

    number: int
    control_id: str  # MSH-10
    patient_id: str  # PID-3.1
    family_name: str
    given_name: str
    birth_date: str  # YYYYMMDD
    sex: str
    patient_class: str  # PV1-2: O outpatient, I inpatient, E emergency
    placer: str  # ORC-2
    filler: str  # ORC-3
    accession_number: str  # OBR-18
    requested_procedure_id: str  # OBR-19
    sps_id: str  # OBR-20
    station: Station  # OBR-21 and OBR-24
    procedure: tuple[str, str, str, str]
    start: str  # YYYYMMDDHHMMSS, ORC-7.4
    priority: str  # ORC-7.6: R or S
    study_instance_uid: str  # ZDS-1
    ordering: tuple[str, str, str]
    referring: tuple[str, str, str]
    reason: str
    message_time: str  # MSH-7

    @property
    def start_date(self) -> str:
        return self.start[:8]

    @property
    def modality(self) -> str:
        return self.station.modality

    def hl7(self) -> bytes:
        """The order as an ORM^O01 (HL7 v2.3.1, MSH-18 UNICODE UTF-8), segments ending in CR."""
        placer, filler = f"{self.placer}^RIS", f"{self.filler}^RIS"
        timing = f"^^^{self.start}^^{self.priority}"
        ordering = "{}^{}^{}^^^DR".format(*self.ordering)
        code, text, billing, billing_text = self.procedure
        obr = [""] * 45
        obr[:5] = ["OBR", "1", placer, filler, f"{code}^{text}^L"]
        obr[13] = self.reason  # OBR-13 Relevant Clinical Information
        obr[16] = ordering  # OBR-16 Ordering Provider
        obr[18] = self.accession_number  # OBR-18 Placer Field 1
        obr[19] = self.requested_procedure_id  # OBR-19 Placer Field 2
        obr[20] = self.sps_id  # OBR-20 Filler Field 1
        obr[21] = f"{self.station.ae_title}^{self.station.name}"  # OBR-21 Filler Field 2
        obr[24] = self.station.modality  # OBR-24 Diagnostic Service Section ID
        obr[27] = timing  # OBR-27 Quantity/Timing
        obr[31] = f"^{self.reason}"  # OBR-31 Reason for Study
        obr[44] = f"{billing}^{billing_text}^C4"  # OBR-44 Procedure Code
        ward = (
            "ER" if self.patient_class == "E" else ("WARD3" if self.patient_class == "I" else "OPD")
        )
        segments = [
            f"MSH|^~\\&|{SENDING_APPLICATION}|HOSPITAL|MWLBROKER|RADIOLOGY|{self.message_time}||"
            f"ORM^O01|{self.control_id}|P|2.3.1||||||UNICODE UTF-8",
            f"PID|1||{self.patient_id}^^^HOSPITAL^MR||{self.family_name}^{self.given_name}||"
            f"{self.birth_date}|{self.sex}|||12 MAIN ST^^SPRINGFIELD^IL^62701^USA^H",
            f"PV1|1|{self.patient_class}|{ward}^RAD^^HOSPITAL|||||"
            "{}^{}^{}^^^DR||RAD||||||||".format(*self.referring)
            + f"{self.patient_class}|V{self.placer}^^^HOSPITAL^VN",
            f"ORC|NW|{placer}|{filler}||SC||{timing}||{self.message_time}|CLERK01^ADAMS^JANE||"
            f"{ordering}",
            "|".join(obr).rstrip("|"),
            f"ZDS|{self.study_instance_uid}^100^Application^DICOM",
        ]
        return ("\r".join(segments) + "\r").encode("utf-8")


class SyntheticOrders:
    """The orders of one bench run, each built from its number alone.

    ``run`` (letters and digits) goes into every identifier, so that runs against the same
    broker never reuse an order number, accession number or control ID.
    """

    def __init__(self, run: str, today: date, *, per_day: int = PER_DAY, seed: int = SEED):
        self.run = run
        self.today = today
        self.per_day = per_day
        self.seed = seed

    def day_of(self, number: int) -> date:
        """Today, then tomorrow, yesterday, the day after tomorrow, ...: one day's volume each."""
        block = number // self.per_day
        distance = (block + 1) // 2
        return self.today + timedelta(days=distance if block % 2 else -distance)

    def patient_number(self, number: int) -> int:
        return number - 1 if number % 4 == 3 else number

    def order(self, number: int) -> SyntheticOrder:
        rng = random.Random(f"{self.seed}/{number}")
        station = rng.choices(STATIONS, weights=_STATION_WEIGHTS)[0]
        procedure = rng.choice(PROCEDURES[station.modality])
        minutes = 7 * 60 + 5 * rng.randrange(144)  # 07:00 to 18:55, five-minute slots
        day = self.day_of(number)
        start = f"{day:%Y%m%d}{minutes // 60:02d}{minutes % 60:02d}00"
        patient = self.patient_number(number)
        prng = random.Random(f"{self.seed}/patient/{patient}")
        sex = prng.choice("FM")
        born = date(1930, 1, 1) + timedelta(days=prng.randrange(365 * 90))
        tag = f"{self.run}{number:07d}"
        emergency = station.ae_title == "CT2" and rng.random() < 0.5
        return SyntheticOrder(
            number=number,
            control_id=f"B{tag}",
            patient_id=f"P{self.run}{patient:07d}",
            family_name=prng.choice(_FAMILY),
            given_name=prng.choice(_GIVEN[sex]),
            birth_date=f"{born:%Y%m%d}",
            sex=sex,
            patient_class="E" if emergency else rng.choice("OOOI"),
            placer=f"PL{tag}",
            filler=f"FL{tag}",
            accession_number=f"A{tag}",
            requested_procedure_id=f"R{tag}",
            sps_id=f"S{tag}",
            station=station,
            procedure=procedure,
            start=start,
            priority="S" if emergency or rng.random() < 0.03 else "R",
            study_instance_uid=f"2.25.{uuid.uuid5(_UID_NAMESPACE, f'{self.run}/{number}').int}",
            ordering=rng.choice(_DOCTORS),
            referring=rng.choice(_DOCTORS),
            reason=rng.choice(_REASONS),
            message_time=f"{self.today:%Y%m%d}{rng.randrange(7, 18):02d}{rng.randrange(60):02d}00",
        )

    def orders(self, first: int, count: int) -> list[SyntheticOrder]:
        return [self.order(number) for number in range(first, first + count)]


# The mapping profile the bench's broker runs with: the IHE default, plus the scanner, which
# this synthetic RIS names in OBR-21 (a real site often routes by procedure code instead:
# see mappings/site-example.yaml).
MAPPING_PROFILE = """\
profile: bench
description: mwlbroker bench's synthetic RIS - the scheduled station is named in OBR-21
extends: ihe-swf
priority: 10
messages:
  ORM^O01:
    step:
      ScheduledStationAETitle: OBR-21.1   # OBR-21 Filler Field 2: station AE title
      ScheduledStationName: OBR-21.2      # ... and station name
      ScheduledProcedureStepDescription: {field: OBR-4.2, transform: {truncate: 64}}
"""
