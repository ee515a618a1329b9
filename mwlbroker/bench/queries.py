"""The worklist queries modalities make, what each must return, and how long each takes.

Every query asks for the same return keys, the ones a modality fills its exam screen with.
Each is timed on a new association, as most modalities ask: time to the first response (the
server's own latency) and to the final one (which includes the client's per-item cost), with
pynetdicom as the client; and by DCMTK ``findscu``'s wall time, process start included.
"""

from __future__ import annotations

import random
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom.dataset import Dataset

from mwlbroker.bench.loader import Loaded
from mwlbroker.bench.stats import summary
from mwlbroker.dicom.scu import WorklistSCU

CALLING_AE = "MWLBENCH"
STATION = "CT1"  # station + today
NARROW_MODALITY = "MR"  # modality + 3-day range
WIDE_MODALITY = "CR"  # the wide query: modality + 3-day range with a few hundred items

# (kind, label) in report order
KINDS = (
    ("station_today", "station + today"),
    ("modality_range", "modality + 3 days"),
    ("accession", "accession number"),
    ("patient_id", "patient ID"),
    ("wide", "wide (CR + 3 days)"),
)

_RETURN_KEYS = (
    "SpecificCharacterSet",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "RequestingPhysician",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "AdmissionID",
)
_SPS_RETURN_KEYS = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledStationName",
)
_SPS = "ScheduledProcedureStepSequence[0]"
_FINDSCU_TIMEOUTS = ["-to", "60", "-ta", "60", "-td", "60"]  # connect, ACSE, DIMSE: seconds


@dataclass(frozen=True)
class Query:
    """One query: its keys with their values (empty for return keys) and what must come back."""

    kind: str
    top: dict[str, str]
    sps: dict[str, str]
    expected: int

    def identifier(self) -> Dataset:
        """The C-FIND identifier: every return key, matching keys with their values."""
        dataset = Dataset()
        for keyword in _RETURN_KEYS:
            setattr(dataset, keyword, self.top.get(keyword, ""))
        item = Dataset()
        for keyword in _SPS_RETURN_KEYS:
            setattr(item, keyword, self.sps.get(keyword, ""))
        dataset.ScheduledProcedureStepSequence = [item]
        return dataset

    def findscu_keys(self) -> list[str]:
        """The same identifier as ``findscu -k`` arguments."""
        keys = [f"{k}={self.top[k]}" if self.top.get(k) else k for k in _RETURN_KEYS]
        keys += [
            f"{_SPS}.{k}={self.sps[k]}" if self.sps.get(k) else f"{_SPS}.{k}"
            for k in _SPS_RETURN_KEYS
        ]
        return keys


def plan(kind: str, loaded: Loaded, today: date, count: int, seed: int = 7) -> list[Query]:
    """``count`` queries of one kind on what ``loaded`` holds; lookups pick different items."""
    day = f"{today:%Y%m%d}"
    days = f"{today - timedelta(days=1):%Y%m%d}-{today + timedelta(days=1):%Y%m%d}"
    three = [f"{today + timedelta(days=d):%Y%m%d}" for d in (-1, 0, 1)]
    if kind == "station_today":
        query = Query(
            kind,
            {},
            {"ScheduledStationAETitle": STATION, "ScheduledProcedureStepStartDate": day},
            loaded.by_station_day[(STATION, day)],
        )
        return [query] * count
    if kind in ("modality_range", "wide"):
        modality = NARROW_MODALITY if kind == "modality_range" else WIDE_MODALITY
        expected = sum(loaded.by_modality_day[(modality, d)] for d in three)
        query = Query(
            kind, {}, {"Modality": modality, "ScheduledProcedureStepStartDate": days}, expected
        )
        return [query] * count
    picker = random.Random(f"{seed}/{kind}/{loaded.steps}")
    if kind == "accession":
        picks = picker.sample(loaded.accession_numbers, min(count, len(loaded.accession_numbers)))
        return [Query(kind, {"AccessionNumber": a}, {}, 1) for a in picks]
    if kind == "patient_id":
        patients = sorted(loaded.by_patient)
        picks = picker.sample(patients, min(count, len(patients)))
        return [Query(kind, {"PatientID": p}, {}, loaded.by_patient[p]) for p in picks]
    raise ValueError(f"unknown query kind {kind!r}")


@dataclass
class Timings:
    """The timings of one query kind against one server."""

    first_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    associate_ms: list[float] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return not self.failures and self.items == self.expected

    def as_dict(self) -> dict[str, object]:
        return {
            "items": self.items,
            "expected": self.expected,
            "correct": self.correct,
            "first_response_ms": summary(self.first_ms),
            "whole_query_ms": summary(self.total_ms),
            "associate_ms": summary(self.associate_ms),
            "failures": self.failures[:5],
        }


def time_scu(
    scu: WorklistSCU, host: str, port: int, called_ae: str, queries: list[Query], warmup: int = 1
) -> Timings:
    """Ask each query once on a new association (after ``warmup`` untimed ones)."""
    timings = Timings()
    for index, query in enumerate([*queries[:warmup], *queries]):
        identifier = query.identifier()
        try:
            result = scu.find(host, port, called_ae, identifier)
        except Exception as error:  # AssociationFailed, or the peer gone
            timings.failures.append(str(error))
            continue
        if index < warmup:
            continue
        if result.status != 0x0000:
            status = "none" if result.status is None else f"0x{result.status:04X}"
            timings.failures.append(f"{query.kind}: final status {status}")
        timings.first_ms.append(result.first_ms or 0.0)
        timings.total_ms.append(result.total_ms)
        timings.associate_ms.append(result.associate_ms)
        timings.items.append(len(result.responses))
        timings.expected.append(query.expected)
    return timings


def time_findscu(
    host: str, port: int, called_ae: str, queries: list[Query], warmup: int = 1
) -> list[float]:
    """findscu's wall time for each query, in milliseconds (after ``warmup`` untimed ones)."""
    walls = []
    for index, query in enumerate([*queries[:warmup], *queries]):
        command = ["findscu", "-W", "-aet", CALLING_AE, "-aec", called_ae, *_FINDSCU_TIMEOUTS]
        for key in query.findscu_keys():
            command += ["-k", key]
        command += [host, str(port)]
        started = time.perf_counter()
        # No timeout here: with one, subprocess polls for the exit with growing sleeps (up to
        # 50 ms), which would be measured too; findscu's own timeouts end a hung query.
        done = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        wall = (time.perf_counter() - started) * 1000
        if index >= warmup and done.returncode == 0:
            walls.append(wall)
    return walls
