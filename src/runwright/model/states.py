"""Run statuses, outcomes and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


class Outcome(StrEnum):
    """Detail a status cannot carry."""

    ERROR = "error"
    DEAD_LETTER = "dead_letter"
    TIMED_OUT = "timed_out"
    WORKER_LOST = "worker_lost"
    CANCELED = "canceled"
    KILLED = "killed"  # a job's process ended by a signal it did not get from runwright
    OUT_OF_MEMORY = "out_of_memory"
    # A run that worked on targets (see model/targets.judge):
    COMPLETED_SUCCESS = "completed_success"
    COMPLETED_PARTIAL_FAILURE = "completed_partial_failure"
    COMPLETED_FAILURE = "completed_failure"
    COMPLETED_NO_TARGETS = "completed_no_targets"
    COMPLETED_NO_CREDENTIALS = "completed_no_credentials"
    FAILED_CREDENTIAL_RESOLUTION = "failed_credential_resolution"
    FAILED_UNEXPECTED = "failed_unexpected"


FINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED})

ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.QUEUED}
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELED: frozenset(),
}


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def failure_outcome(*, attempt: int, max_attempts: int, timed_out: bool = False) -> Outcome:
    """Outcome of a failed run whose last attempt is used up."""
    if timed_out:
        return Outcome.TIMED_OUT
    return Outcome.DEAD_LETTER if max_attempts > 1 and attempt >= max_attempts else Outcome.ERROR
