"""A scheduled step's status transition: the one domain rule every use case goes through."""

from __future__ import annotations

import pytest

from mwlbroker.domain.mpps import performed_transition
from mwlbroker.domain.transitions import (
    HELD_ONLY,
    MAY_START,
    NOT_STARTED,
    StepTransition,
    step_transition,
)
from mwlbroker.domain.worklist import FINAL_STATUSES, StepStatus

OPEN = [status for status in StepStatus if not status.is_final]


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
@pytest.mark.parametrize("target", list(StepStatus))
def test_a_final_step_never_changes_again(final: StepStatus, target: StepStatus) -> None:
    assert step_transition(final, target) is None
    assert step_transition(final, target, only_from=set(StepStatus)) is None


@pytest.mark.parametrize("status", OPEN)
def test_a_step_already_at_the_target_stays(status: StepStatus) -> None:
    assert step_transition(status, status) is None


def test_an_open_step_moves_and_the_transition_says_from_what_to_what() -> None:
    change = step_transition(StepStatus.SCHEDULED, StepStatus.CANCELED)
    assert change == StepTransition(StepStatus.SCHEDULED, StepStatus.CANCELED)
    assert step_transition(StepStatus.STARTED, StepStatus.REMOVED) == StepTransition(
        StepStatus.STARTED, StepStatus.REMOVED
    )


@pytest.mark.parametrize("status", OPEN)
def test_only_from_limits_where_a_step_may_come_from(status: StepStatus) -> None:
    held = step_transition(status, StepStatus.HELD, only_from=NOT_STARTED)
    assert (held is not None) == (status in NOT_STARTED)
    released = step_transition(status, StepStatus.SCHEDULED, only_from=HELD_ONLY)
    assert (released is not None) == (status is StepStatus.HELD)
    expired = step_transition(status, StepStatus.EXPIRED, only_from=NOT_STARTED)
    assert (expired is not None) == (status in NOT_STARTED)


def test_the_sets_of_statuses_are_open_ones() -> None:
    assert not any(status.is_final for status in MAY_START | NOT_STARTED | HELD_ONLY)
    assert NOT_STARTED < MAY_START
    assert StepStatus.STARTED not in MAY_START


@pytest.mark.parametrize("status", list(StepStatus))
def test_a_performed_step_starts_only_a_step_not_yet_started(status: StepStatus) -> None:
    change = performed_transition(status, StepStatus.STARTED)
    assert (change is not None) == (status in MAY_START)


def test_a_performed_step_completes_a_started_step_and_never_goes_back() -> None:
    assert performed_transition(StepStatus.STARTED, StepStatus.COMPLETED) == StepTransition(
        StepStatus.STARTED, StepStatus.COMPLETED
    )
    assert performed_transition(StepStatus.COMPLETED, StepStatus.STARTED) is None
    assert performed_transition(StepStatus.STARTED, None) is None
