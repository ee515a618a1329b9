"""A scheduled step's status transition: what may change to what, decided in one place.

Five use cases move a step: an order update (XO rewrites a step, and a step it no longer lists
is REMOVED), an order control that sets a status (CA, OC, DC, SC, HD, RL), MPPS and received
images (STARTED, COMPLETED, DISCONTINUED) and the expiry job (EXPIRED). They differ in the
status they ask for; the rules every change obeys are here, once:

- a final step (COMPLETED, DISCONTINUED, CANCELED, REMOVED) never changes again: the RIS was
  told, and a modality may have performed it;
- a step already at the status asked for stays as it is (there is nothing to record);
- a use case may move only steps in some statuses (``only_from``): HD holds only steps not yet
  started, RL releases only HELD ones, a performed step starts only steps not yet started, and
  expiry takes only steps nobody has started.

A :class:`StepTransition` is what a change records: the status before and after. Writing it
(the step's row, its worklist dataset, a line of its order's history) is the services' job.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mwlbroker.domain.worklist import StepStatus

NOT_STARTED = frozenset({StepStatus.SCHEDULED, StepStatus.ARRIVED, StepStatus.READY})
"""Steps waiting to be performed: HD may hold them, and the expiry job may expire them."""

MAY_START = NOT_STARTED | {StepStatus.HELD, StepStatus.EXPIRED}
"""Steps a performed step (MPPS, or images) may start: a modality that kept an expired or held
item may still perform it, late."""

HELD_ONLY = frozenset({StepStatus.HELD})
"""Steps RL (release) acts on."""


@dataclass(frozen=True)
class StepTransition:
    """A step's status change: the status it had and the status it gets."""

    before: StepStatus
    after: StepStatus


def step_transition(
    current: StepStatus,
    target: StepStatus,
    *,
    only_from: Collection[StepStatus] | None = None,
) -> StepTransition | None:
    """The change from ``current`` to ``target``, or None when the step must stay as it is.

    A final step stays, a step already at ``target`` stays, and with ``only_from`` a step whose
    status is not among those stays.
    """
    if current.is_final or current == target:
        return None
    if only_from is not None and current not in only_from:
        return None
    return StepTransition(current, target)
