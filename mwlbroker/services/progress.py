"""Follow an exam as it is performed: MPPS and received images move the scheduled step on.

MPPS N-CREATE stores the performed step IN PROGRESS and links it, through its Scheduled Step
Attributes Sequence, to the scheduled steps it performs; those become STARTED and leave the
worklist. N-SET ends it COMPLETED or DISCONTINUED. Each received image is indexed (study,
series, instance) and its study matched to an order by Study Instance UID, else by Accession
Number with the Patient ID. The steps follow by the completion rule (``[progress]
complete_on``: MPPS COMPLETED, images received, or both). What matches nothing is kept:
unscheduled performed steps and unmatched studies wait for reconciliation.

Each use case is one transaction: the performed step or the image index, the scheduled steps,
their history and the status messages for the RIS commit together.

The work is done in three parts, each in its own module: :mod:`~mwlbroker.services.mpps`
(N-CREATE, N-SET), :mod:`~mwlbroker.services.image_receipt` (C-STORE, settling studies) and
:mod:`~mwlbroker.services.follow_up` (the completion rule). :class:`ProgressService` puts them
together with one set of listeners, for the DICOM edge, the web and the jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mwlbroker.domain.images import ReceivedInstance
from mwlbroker.domain.mpps import CompleteOn
from mwlbroker.services.follow_up import StatusListener, StepChange, StepFollowUp
from mwlbroker.services.image_receipt import ImageReceiptService, InstanceListener, ReceiptResult
from mwlbroker.services.mpps import MPPSService, PerformedResult
from mwlbroker.services.worklist import Context
from mwlbroker.store.db import Database
from mwlbroker.store.files import InstanceFiles
from mwlbroker.store.worklist import StepRow

__all__ = [
    "InstanceListener",
    "PerformedResult",
    "ProgressOptions",
    "ProgressService",
    "ReceiptResult",
    "StatusListener",
    "StepChange",
]


@dataclass(frozen=True)
class ProgressOptions:
    """The ``[progress]`` and ``[storage]`` settings exam progress works by."""

    complete_on: CompleteOn = CompleteOn.MPPS
    # A study's images count as received once it has been quiet this long (0: at once).
    images_quiet_seconds: float = 60.0
    storage_dir: Path | None = None  # where instance files are kept; None: index only
    keep_files: bool = False


class ProgressService:
    """Applies MPPS N-CREATE and N-SET and received images to the scheduled steps.

    ``listeners`` hear every step change (the outbound queue), ``instance_listeners`` every
    stored instance (the forward queue), and ``after_commit`` is called once such a change is
    committed (waking their senders); the three parts share these lists.
    """

    def __init__(self, db: Database, options: ProgressOptions | None = None) -> None:
        options = options or ProgressOptions()
        self.db = db
        self.options = options
        self.files = InstanceFiles(options.storage_dir) if options.storage_dir is not None else None
        self.listeners: list[StatusListener] = []
        self.instance_listeners: list[InstanceListener] = []
        self.after_commit: list[Callable[[], None]] = []
        self.follow_up = StepFollowUp(options.complete_on, self.listeners)
        self.mpps = MPPSService(db, self.follow_up, self.after_commit)
        self.images = ImageReceiptService(
            db,
            self.follow_up,
            images_quiet_seconds=options.images_quiet_seconds,
            files=self.files,
            keep_files=options.keep_files,
            instance_listeners=self.instance_listeners,
            after_commit=self.after_commit,
        )

    @property
    def complete_on(self) -> CompleteOn:
        """The completion rule: MPPS COMPLETED, images received, or both."""
        return self.options.complete_on

    @property
    def images_quiet_seconds(self) -> float:
        """How long a study must be quiet for its images to count as received."""
        return self.options.images_quiet_seconds

    @property
    def writes_files(self) -> bool:
        """Whether received instances are written to disk (kept, or spooled for forwarding)."""
        return self.images.writes_files

    def create_performed_step(
        self, sop_instance_uid: str, dataset: dict[str, Any], *, calling_ae: str = ""
    ) -> PerformedResult:
        """MPPS N-CREATE: see :meth:`MPPSService.create_performed_step`."""
        return self.mpps.create_performed_step(sop_instance_uid, dataset, calling_ae=calling_ae)

    def set_performed_step(
        self, sop_instance_uid: str, modification: dict[str, Any], *, calling_ae: str = ""
    ) -> PerformedResult:
        """MPPS N-SET: see :meth:`MPPSService.set_performed_step`."""
        return self.mpps.set_performed_step(sop_instance_uid, modification, calling_ae=calling_ae)

    def receive_instance(
        self, instance: ReceivedInstance, data: bytes | None = None
    ) -> ReceiptResult:
        """C-STORE: see :meth:`ImageReceiptService.receive_instance`."""
        return self.images.receive_instance(instance, data)

    def settle_studies(self, now: datetime | None = None) -> int:
        """Studies gone quiet: see :meth:`ImageReceiptService.settle_studies`."""
        return self.images.settle_studies(now)

    def follow(
        self, ctx: Context, steps: list[StepRow], event: str, said: str, *, quiet: bool = False
    ) -> list[StepChange]:
        """Bring steps to the status their performed steps and images call for, inside the
        caller's transaction (a performed step or study linked late, by staff or a new order)."""
        return self.follow_up.follow(ctx, steps, event, said, quiet=quiet)
