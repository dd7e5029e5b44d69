"""Turn one attempt of a task into a ``Completion``: pure decisions around the call."""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from typing import Any

from runwright.errors import Cancelled, ExecutionFailed, Retry
from runwright.model.retry import RetryPolicy, should_retry
from runwright.model.runs import ClaimedRun, Completion, clean_text, json_problem
from runwright.model.states import Outcome, failure_outcome

MAX_ERROR_CHARS = 8000


@dataclass(frozen=True, slots=True)
class Finished:
    """A result with the outcome that details the success (a run on targets)."""

    value: Any
    outcome: Outcome


def success(run: ClaimedRun, result: Any) -> Completion:
    outcome = None
    if isinstance(result, Finished):
        result, outcome = result.value, result.outcome
    problem = json_problem(result, "The task's result") if result is not None else None
    if problem:
        return Completion(
            run_id=run.id,
            lease_token=run.lease_token,
            kind="failed",
            outcome=failure_outcome(attempt=1, max_attempts=1),
            error=f"{problem}. Return dicts, lists, strings, finite numbers, booleans or None.",
        )
    return Completion(
        run_id=run.id, lease_token=run.lease_token, kind="succeeded", result=result, outcome=outcome
    )


def failure(
    run: ClaimedRun,
    error: BaseException,
    policy: RetryPolicy,
    rng: random.Random,
) -> Completion:
    """Retry while attempts remain, else fail with ``error`` or ``dead_letter``."""
    if isinstance(error, Cancelled):
        return Completion(
            run_id=run.id, lease_token=run.lease_token, kind="canceled", error="canceled"
        )
    text = describe(error)
    if isinstance(error, ExecutionFailed):
        text = clean_text(error.message)  # the job's output already holds its traceback
    if should_retry(attempt=run.attempt, max_attempts=run.max_attempts):
        delay = policy.delay(run.attempt, rng)
        if isinstance(error, Retry) and error.delay is not None:
            delay = max(0.0, error.delay)
        return Completion(
            run_id=run.id, lease_token=run.lease_token, kind="retry", error=text, delay=delay
        )
    return Completion(
        run_id=run.id,
        lease_token=run.lease_token,
        kind="failed",
        outcome=_final_outcome(run, error),
        error=text,
    )


def _final_outcome(run: ClaimedRun, error: BaseException) -> Outcome:
    if isinstance(error, ExecutionFailed) and error.outcome != Outcome.ERROR.value:
        return Outcome(error.outcome)
    return failure_outcome(attempt=run.attempt, max_attempts=run.max_attempts)


def timed_out(run: ClaimedRun, policy: RetryPolicy, rng: random.Random) -> Completion:
    text = f"Timed out after {run.timeout:g}s (attempt {run.attempt} of {run.max_attempts})"
    if should_retry(attempt=run.attempt, max_attempts=run.max_attempts):
        return Completion(
            run_id=run.id,
            lease_token=run.lease_token,
            kind="retry",
            error=text,
            delay=policy.delay(run.attempt, rng),
        )
    return Completion(
        run_id=run.id,
        lease_token=run.lease_token,
        kind="failed",
        outcome=failure_outcome(attempt=run.attempt, max_attempts=run.max_attempts, timed_out=True),
        error=text,
    )


def unstorable(completion: Completion, reason: str) -> Completion:
    """A failure to record instead of a completion the database refused."""
    return Completion(
        run_id=completion.run_id,
        lease_token=completion.lease_token,
        kind="failed",
        outcome=Outcome.ERROR,
        error=f"The run ended ({completion.kind}) but the database refused to store it: {reason}",
    )


def canceled(run: ClaimedRun) -> Completion:
    return Completion(
        run_id=run.id, lease_token=run.lease_token, kind="canceled", error="canceled by request"
    )


def describe(error: BaseException) -> str:
    if isinstance(error, Retry):
        return clean_text(f"Retry requested: {error.reason}")
    text = clean_text("".join(traceback.format_exception(error)).strip())
    if len(text) > MAX_ERROR_CHARS:
        text = "…" + text[-MAX_ERROR_CHARS:]
    return text
