"""Take in an HL7 batch (or a file of many messages): every part through the one intake.

A batch groups messages for the journey only (HL7 v2.5 chapter 2.10.3): the unit of work is
still the message. So each part goes through :meth:`IngestService.ingest_many
<mwlbroker.services.ingest.IngestService.ingest_many>`, the intake every MLLP message takes,
in the order received: the same duplicate check, the same mapping, its own outcome (one bad
message does not undo the others). The MLLP listener answers the results with a response
batch; ``mwlbroker import`` counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from mwlbroker.hl7v2.batch import BatchFile, Part
from mwlbroker.services.ingest import IngestResult, IngestService

log = logging.getLogger("mwlbroker.ingest")

Progress = Callable[[int], None]
"""Told how many more parts were committed, after each group of them."""


def ingest_batch_file(
    ingest: IngestService,
    received: BatchFile,
    *,
    peer: str = "",
    progress: Progress | None = None,
) -> list[list[IngestResult]]:
    """Store and apply every part of ``received`` in order; the results, batch by batch.

    Text between messages that is none is stored as rejected (AR), with its line named in the
    reason. A header count that disagrees with what came is logged here and left in
    :attr:`BatchFile.all_problems` for the answer; it refuses nothing.
    """
    for problem in received.all_problems:
        log.warning(
            "HL7 batch from %s: %s",
            peer,
            problem,
            extra={"event": "batch_count_mismatch", "peer": peer, "problem": problem},
        )
    parts = received.parts
    results: list[IngestResult] = []
    step = max(ingest.max_batch, 1)
    for start in range(0, len(parts), step):
        chunk = parts[start : start + step]
        taken = ingest.ingest_many([part.raw for part in chunk], peer=peer)
        results.extend(_explained(part, result) for part, result in zip(chunk, taken, strict=True))
        if progress is not None:
            progress(len(chunk))
    grouped: list[list[IngestResult]] = []
    position = 0
    for batch in received.batches:
        grouped.append(results[position : position + len(batch.parts)])
        position += len(batch.parts)
    return grouped


def _explained(part: Part, result: IngestResult) -> IngestResult:
    """A part that is no message is answered with where it was, so the sender can find it."""
    if part.is_message:
        return result
    return replace(
        result,
        error=f"line {part.line} of the batch is not part of any HL7 message: {result.error}",
    )
