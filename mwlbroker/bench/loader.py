"""Bulk loader: synthetic orders straight into the store, with the datasets the intake would make.

Each order goes the intake's way as far as the rows: its ORM^O01 is read by the HL7 reader,
mapped by the site's mapping files, and its worklist item built by ``refresh_step``. Only the
writing differs: no message rows or history, and one insert per table and chunk. Building
rows is the slow part (about a millisecond an order, half of it the HL7 parse), so large
loads run in worker processes, one per core, each building and inserting a chunk at a time.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from mwlbroker.bench.synthetic import SyntheticOrders
from mwlbroker.bench.wlmscpfs import write_worklist_file
from mwlbroker.hl7v2.reader import parse_message
from mwlbroker.mapping.engine import MappingSet, load_mappings
from mwlbroker.services.worklist import merge, refresh_step
from mwlbroker.store.bulk import (
    OrderRow,
    PatientRow,
    StepRow,
    column_values,
    insert_rows,
    patient_pks,
)
from mwlbroker.store.db import Database

CHUNK = 2000  # orders per worker task and per insert transaction
_IN_PROCESS = 5000  # smaller loads are built here: starting workers costs more


@dataclass(frozen=True)
class GeneratorSpec:
    """What a worker needs to make the same orders as this process: all plain values."""

    run: str
    today: date
    per_day: int
    seed: int
    mappings: str | None  # mapping folder; None: the bundled mappings

    def orders(self) -> SyntheticOrders:
        return SyntheticOrders(self.run, self.today, per_day=self.per_day, seed=self.seed)


@dataclass
class OrderRows:
    """The column values of one order's patient, order and steps, ready to insert."""

    patient: dict[str, Any]
    order: dict[str, Any]
    steps: list[dict[str, Any]]


StepNote = tuple[str, str, str, str, str]
"""(station AE, modality, start date, patient ID, accession number) of a stored step."""


@dataclass
class Loaded:
    """What is in the worklist after loading: enough to know what each query must return."""

    steps: int = 0
    by_station_day: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_modality_day: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_patient: Counter[str] = field(default_factory=Counter)
    accession_numbers: list[str] = field(default_factory=list)

    def note(self, notes: list[StepNote]) -> None:
        for station, modality, day, patient_id, accession in notes:
            self.steps += 1
            self.by_station_day[(station, day)] += 1
            self.by_modality_day[(modality, day)] += 1
            self.by_patient[patient_id] += 1
            self.accession_numbers.append(accession)


def build_rows(
    spec: GeneratorSpec, first: int, count: int, worklist_files: str | None = None
) -> list[OrderRows]:
    """Rows for orders ``first`` .. ``first + count - 1`` (and their .wl files, if asked)."""
    mappings = _mappings(spec.mappings)
    generator = spec.orders()
    now = datetime.now(UTC)
    built = []
    for number in range(first, first + count):
        message = parse_message(generator.order(number).hl7())
        rows = order_rows(mappings, message, now)
        if worklist_files is not None:
            for step in rows.steps:
                write_worklist_file(Path(worklist_files), step["accession_number"], step["dataset"])
        built.append(rows)
    return built


def order_rows(mappings: MappingSet, message: Any, now: datetime) -> OrderRows:
    """The rows a new order (ORC-1 NW) for a new patient makes, as the order service builds them."""
    mapped = mappings.map_order(message)
    identity = mapped.patient
    assert identity.patient_id is not None, "the synthetic orders always name the patient"
    start = {"PatientID": identity.patient_id}
    if identity.issuer:
        start["IssuerOfPatientID"] = identity.issuer
    update = {
        k: v for k, v in identity.attributes.items() if k not in ("PatientID", "IssuerOfPatientID")
    }
    attributes = merge(start, update)
    patient = PatientRow(
        patient_id=identity.patient_id,
        issuer=identity.issuer,
        attributes=attributes,
        patient_name=_text(attributes, "PatientName")[:324],
        birth_date=_text(attributes, "PatientBirthDate")[:64],
        sex=_text(attributes, "PatientSex")[:64],
        created_at=now,
        updated_at=now,
    )
    order = OrderRow(
        placer_order_number=mapped.placer_order_number,
        filler_order_number=mapped.filler_order_number,
        profile=mapped.profile[:64],
        order_control=mapped.order_control,
        attributes=merge({}, mapped.order),
        created_at=now,
        updated_at=now,
    )
    steps = []
    for mapped_step in mapped.steps:
        step = StepRow(
            patient_id=patient.patient_id,
            status=mapped.step_status.value,
            attributes={
                "procedure": merge({}, mapped_step.procedure),
                "step": merge({}, mapped_step.step),
            },
            created_at=now,
            updated_at=now,
        )
        refresh_step(step, patient, order)
        steps.append(column_values(step))
    return OrderRows(column_values(patient), column_values(order), steps)


def load(
    db: Database,
    spec: GeneratorSpec,
    first: int,
    count: int,
    loaded: Loaded,
    *,
    worklist_files: Path | None = None,
    workers: int | None = None,
) -> None:
    """Store orders ``first`` .. ``first + count - 1``; ``loaded`` learns what was stored.

    Large loads run in worker processes that build and insert a chunk each, in its own
    transaction. Chunks start at multiples of :data:`CHUNK`, so that a patient shared by two
    orders (always neighbours, never across a multiple of four) is never inserted by two
    workers at once.
    """
    files = str(worklist_files) if worklist_files is not None else None
    chunks = _chunks(first, count)
    if count <= _IN_PROCESS:
        for start, size in chunks:
            loaded.note(_load_chunk(db, spec, start, size, files))
        return
    workers = workers or os.cpu_count() or 1
    url = db.url.render_as_string(hide_password=False)
    # spawn: this process has threads (the broker's log reader), which fork does not copy.
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_open_worker, initargs=(url,)
    ) as pool:
        starts, sizes = zip(*chunks, strict=True)
        for notes in pool.map(
            _load_chunk_in_worker, [spec] * len(chunks), starts, sizes, [files] * len(chunks)
        ):
            loaded.note(notes)


def _chunks(first: int, count: int) -> list[tuple[int, int]]:
    end = first + count
    edges = [first, *range((first // CHUNK + 1) * CHUNK, end, CHUNK), end]
    return [(low, high - low) for low, high in itertools.pairwise(edges) if high > low]


def _load_chunk(
    db: Database, spec: GeneratorSpec, first: int, count: int, files: str | None
) -> list[StepNote]:
    built = build_rows(spec, first, count, files)
    with db.transaction() as session:
        return _insert(session, built)


_worker_db: Database | None = None


def _open_worker(url: str) -> None:
    global _worker_db
    _worker_db = Database(url, pool_size=1)


def _load_chunk_in_worker(
    spec: GeneratorSpec, first: int, count: int, files: str | None
) -> list[StepNote]:
    assert _worker_db is not None, "started without _open_worker"
    return _load_chunk(_worker_db, spec, first, count, files)


def _insert(
    session: Any,
    chunk: list[OrderRows],
) -> list[StepNote]:
    keys = {(rows.patient["patient_id"], rows.patient["issuer"]) for rows in chunk}
    pks = patient_pks(session, keys)  # patients an earlier chunk stored
    patients: list[dict[str, Any]] = []
    for rows in chunk:
        key = (rows.patient["patient_id"], rows.patient["issuer"])
        if key not in pks:
            pks[key] = 0  # inserted below
            patients.append(rows.patient)
    for row, pk in zip(patients, insert_rows(session, PatientRow, patients), strict=True):
        pks[(row["patient_id"], row["issuer"])] = pk
    for rows in chunk:
        rows.order["patient_pk"] = pks[(rows.patient["patient_id"], rows.patient["issuer"])]
    steps = []
    notes: list[StepNote] = []
    orders = [rows.order for rows in chunk]
    for rows, order_id in zip(chunk, insert_rows(session, OrderRow, orders), strict=True):
        for step in rows.steps:
            step["order_id"] = order_id
            step["patient_pk"] = rows.order["patient_pk"]
            steps.append(step)
            day = (step["start_datetime"] or "")[:8]
            notes.append(
                (
                    step["station_ae"] or "",
                    step["modality"] or "",
                    day,
                    step["patient_id"],
                    step["accession_number"] or "",
                )
            )
    insert_rows(session, StepRow, steps)
    return notes


@lru_cache(maxsize=4)
def _mappings(folder: str | None) -> MappingSet:
    return load_mappings(Path(folder) if folder else None)


def _text(attributes: dict[str, Any], keyword: str) -> str:
    value = attributes.get(keyword)
    return value if isinstance(value, str) else ""
