"""The run state machine: which statuses follow which, and how a used-up failure is named."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runwright.model.states import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    Outcome,
    RunStatus,
    can_transition,
    failure_outcome,
)

statuses = st.sampled_from(list(RunStatus))


def reachable(start: RunStatus) -> set[RunStatus]:
    seen = {start}
    todo = deque([start])
    while todo:
        for target in ALLOWED_TRANSITIONS[todo.popleft()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_status_has_an_entry_and_targets_are_statuses() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(RunStatus)
    for targets in ALLOWED_TRANSITIONS.values():
        assert targets <= set(RunStatus)


def test_final_statuses_are_exactly_succeeded_failed_canceled() -> None:
    assert {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED} == FINAL_STATUSES
    assert [s for s in RunStatus if s.is_final] == [
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELED,
    ]
    assert not RunStatus.QUEUED.is_final
    assert not RunStatus.RUNNING.is_final


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_final_statuses_have_no_outgoing_transition(status: RunStatus) -> None:
    assert ALLOWED_TRANSITIONS[status] == frozenset()
    assert not any(can_transition(status, target) for target in RunStatus)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (RunStatus.QUEUED, RunStatus.RUNNING),  # claim
        (RunStatus.QUEUED, RunStatus.CANCELED),  # cancel before it starts
        (RunStatus.RUNNING, RunStatus.SUCCEEDED),
        (RunStatus.RUNNING, RunStatus.FAILED),
        (RunStatus.RUNNING, RunStatus.CANCELED),
        (RunStatus.RUNNING, RunStatus.QUEUED),  # retry, release, recovery
    ],
)
def test_the_queue_operations_are_allowed(current: RunStatus, target: RunStatus) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (RunStatus.QUEUED, RunStatus.SUCCEEDED),  # never finishes without running
        (RunStatus.QUEUED, RunStatus.FAILED),
        (RunStatus.QUEUED, RunStatus.QUEUED),
        (RunStatus.RUNNING, RunStatus.RUNNING),
        (RunStatus.SUCCEEDED, RunStatus.QUEUED),  # a re-run is a new run
        (RunStatus.FAILED, RunStatus.QUEUED),
        (RunStatus.CANCELED, RunStatus.RUNNING),
    ],
)
def test_other_transitions_are_refused(current: RunStatus, target: RunStatus) -> None:
    assert not can_transition(current, target)


@given(current=statuses, target=statuses)
def test_can_transition_agrees_with_the_table(current: RunStatus, target: RunStatus) -> None:
    assert can_transition(current, target) == (target in ALLOWED_TRANSITIONS[current])


@given(current=statuses, target=statuses)
def test_no_status_follows_a_final_one(current: RunStatus, target: RunStatus) -> None:
    if current.is_final:
        assert not can_transition(current, target)


@given(status=statuses)
def test_every_status_can_reach_a_final_status(status: RunStatus) -> None:
    assert reachable(status) & FINAL_STATUSES


@given(status=statuses)
def test_no_status_transitions_to_itself(status: RunStatus) -> None:
    assert not can_transition(status, status)


def test_statuses_and_outcomes_are_their_stored_strings() -> None:
    assert [s.value for s in RunStatus] == ["queued", "running", "succeeded", "failed", "canceled"]
    assert RunStatus("running") is RunStatus.RUNNING
    assert Outcome("worker_lost") is Outcome.WORKER_LOST
    assert str(Outcome.DEAD_LETTER) == "dead_letter"


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "timed_out", "expected"),
    [
        (1, 1, False, Outcome.ERROR),  # no retries configured: a plain error
        (3, 3, False, Outcome.DEAD_LETTER),  # retries used up
        (5, 3, False, Outcome.DEAD_LETTER),
        (1, 3, False, Outcome.ERROR),  # failed for good before using up its retries
        (1, 1, True, Outcome.TIMED_OUT),
        (3, 3, True, Outcome.TIMED_OUT),
    ],
)
def test_failure_outcome_table(
    attempt: int, max_attempts: int, timed_out: bool, expected: Outcome
) -> None:
    outcome = failure_outcome(attempt=attempt, max_attempts=max_attempts, timed_out=timed_out)
    assert outcome is expected


@given(attempt=st.integers(1, 1000), max_attempts=st.integers(1, 1000))
def test_a_timeout_is_always_named_timed_out(attempt: int, max_attempts: int) -> None:
    outcome = failure_outcome(attempt=attempt, max_attempts=max_attempts, timed_out=True)
    assert outcome is Outcome.TIMED_OUT


@given(attempt=st.integers(1, 1000), max_attempts=st.integers(1, 1000))
def test_failure_outcome_is_dead_letter_exactly_when_retries_were_used_up(
    attempt: int, max_attempts: int
) -> None:
    outcome = failure_outcome(attempt=attempt, max_attempts=max_attempts)
    assert outcome in {Outcome.ERROR, Outcome.DEAD_LETTER}
    used_up = max_attempts > 1 and attempt >= max_attempts
    assert (outcome is Outcome.DEAD_LETTER) == used_up
