"""How one attempt's ending becomes a Completion: success, failure, timeout, cancel."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runwright.errors import Cancelled, Retry
from runwright.model.retry import RetryPolicy
from runwright.model.runs import ClaimedRun
from runwright.model.states import Outcome
from runwright.worker import execute

# PostgreSQL cannot store NUL characters; such results are refused (tested below).
STORABLE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"))

POLICY = RetryPolicy(base=2.0, cap=60.0, jitter=0.5)


def claimed(*, attempt: int = 1, max_attempts: int = 1, timeout: float | None = None) -> ClaimedRun:
    return ClaimedRun(
        id=7,
        type="export",
        payload={"n": 1},
        queue="default",
        attempt=attempt,
        max_attempts=max_attempts,
        timeout=timeout,
        lease_token=41,
    )


def boom(message: str = "disk full") -> RuntimeError:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


# -- success ---------------------------------------------------------------------------
@pytest.mark.parametrize("result", [None, 0, 1.5, "text", True, [1, "a", None], {"a": {"b": [1]}}])
def test_success_records_a_json_result_with_the_lease_token(result: object) -> None:
    completion = execute.success(claimed(), result)
    assert completion.kind == "succeeded"
    assert completion.result == result
    assert (completion.run_id, completion.lease_token) == (7, 41)
    assert completion.error is None
    assert completion.outcome is None


@pytest.mark.parametrize("result", [object(), {1, 2}, b"bytes", {"when": random.Random()}])
def test_a_result_that_is_not_json_fails_the_run_with_a_clear_message(result: object) -> None:
    completion = execute.success(claimed(attempt=1, max_attempts=5), result)
    assert completion.kind == "failed"
    assert completion.outcome is Outcome.ERROR
    assert completion.result is None
    assert completion.error is not None
    assert "not JSON-serialisable" in completion.error
    assert "Return dicts, lists" in completion.error
    assert completion.lease_token == 41


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_result_with_nan_or_infinity_is_not_json(value: float) -> None:
    # JSON has no NaN or Infinity: PostgreSQL's jsonb refuses them (the worker's write fails)
    # and the REST API renders them as null, so such a result must fail the run like any
    # other result that is not JSON.
    completion = execute.success(claimed(), {"score": value})
    assert completion.kind == "failed"
    assert "not JSON" in (completion.error or "")


@given(
    result=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | STORABLE_TEXT
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(STORABLE_TEXT, inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_json_value_succeeds_unchanged(result: object) -> None:
    """Any JSON a database can store: finite numbers, text without NUL characters."""
    completion = execute.success(claimed(), result)
    assert completion.kind == "succeeded"
    assert completion.result is result


# -- failure ---------------------------------------------------------------------------
def test_a_failure_with_attempts_left_is_retried_after_the_policy_delay() -> None:
    run = claimed(attempt=2, max_attempts=3)
    completion = execute.failure(run, boom(), POLICY, random.Random(5))
    assert completion.kind == "retry"
    assert completion.delay == POLICY.delay(2, random.Random(5))
    assert 2.0 <= completion.delay <= 4.0
    assert "RuntimeError: disk full" in (completion.error or "")
    assert "Traceback" in (completion.error or "")
    assert completion.outcome is None


def test_the_last_failed_attempt_of_several_is_a_dead_letter() -> None:
    completion = execute.failure(
        claimed(attempt=3, max_attempts=3), boom(), POLICY, random.Random()
    )
    assert completion.kind == "failed"
    assert completion.outcome is Outcome.DEAD_LETTER
    assert "disk full" in (completion.error or "")


def test_a_failure_without_retries_is_an_error() -> None:
    completion = execute.failure(
        claimed(attempt=1, max_attempts=1), boom(), POLICY, random.Random()
    )
    assert completion.kind == "failed"
    assert completion.outcome is Outcome.ERROR


@given(attempt=st.integers(1, 50), max_attempts=st.integers(1, 50), seed=st.integers(0, 999))
def test_failure_retries_exactly_while_attempts_remain(
    attempt: int, max_attempts: int, seed: int
) -> None:
    completion = execute.failure(
        claimed(attempt=attempt, max_attempts=max_attempts), boom(), POLICY, random.Random(seed)
    )
    if attempt < max_attempts:
        assert completion.kind == "retry"
        assert 0.0 <= completion.delay <= POLICY.cap
    else:
        assert completion.kind == "failed"
        assert completion.outcome in {Outcome.ERROR, Outcome.DEAD_LETTER}


def test_retry_with_a_delay_is_honoured() -> None:
    completion = execute.failure(
        claimed(attempt=1, max_attempts=3),
        Retry(delay=42.5, reason="rate limited"),
        POLICY,
        random.Random(),
    )
    assert completion.kind == "retry"
    assert completion.delay == 42.5
    assert completion.error == "Retry requested: rate limited"


def test_retry_with_a_negative_delay_waits_zero_seconds() -> None:
    completion = execute.failure(
        claimed(attempt=1, max_attempts=2), Retry(delay=-3), POLICY, random.Random()
    )
    assert completion.delay == 0.0


def test_retry_without_a_delay_uses_the_policy() -> None:
    completion = execute.failure(
        claimed(attempt=1, max_attempts=2), Retry(), POLICY, random.Random(3)
    )
    assert completion.delay == POLICY.delay(1, random.Random(3))
    assert completion.error == "Retry requested: retry requested"


def test_retry_on_the_last_attempt_fails_the_run() -> None:
    completion = execute.failure(
        claimed(attempt=2, max_attempts=2),
        Retry(delay=1, reason="again"),
        POLICY,
        random.Random(),
    )
    assert completion.kind == "failed"
    assert completion.outcome is Outcome.DEAD_LETTER
    assert completion.error == "Retry requested: again"


@pytest.mark.parametrize(("attempt", "max_attempts"), [(1, 1), (1, 5), (5, 5)])
def test_cancelled_ends_the_run_as_canceled_whatever_the_attempts(
    attempt: int, max_attempts: int
) -> None:
    completion = execute.failure(
        claimed(attempt=attempt, max_attempts=max_attempts),
        Cancelled("stop"),
        POLICY,
        random.Random(),
    )
    assert completion.kind == "canceled"
    assert completion.lease_token == 41


def test_a_huge_traceback_is_cut_to_its_end() -> None:
    completion = execute.failure(
        claimed(), boom("x" * 50_000 + " THE END"), POLICY, random.Random()
    )
    assert completion.error is not None
    assert len(completion.error) <= execute.MAX_ERROR_CHARS + 1
    assert completion.error.startswith("…")
    assert completion.error.endswith("THE END")


def test_base_exceptions_are_described_too() -> None:
    completion = execute.failure(claimed(), KeyboardInterrupt(), POLICY, random.Random())
    assert completion.kind == "failed"
    assert "KeyboardInterrupt" in (completion.error or "")


# -- timeout and cancel ------------------------------------------------------------------
def test_a_timeout_with_attempts_left_is_retried() -> None:
    completion = execute.timed_out(
        claimed(attempt=1, max_attempts=2, timeout=0.5), POLICY, random.Random(9)
    )
    assert completion.kind == "retry"
    assert completion.delay == POLICY.delay(1, random.Random(9))
    assert completion.error == "Timed out after 0.5s (attempt 1 of 2)"


@pytest.mark.parametrize(("attempt", "max_attempts"), [(1, 1), (3, 3)])
def test_the_last_timeout_fails_as_timed_out(attempt: int, max_attempts: int) -> None:
    completion = execute.timed_out(
        claimed(attempt=attempt, max_attempts=max_attempts, timeout=30), POLICY, random.Random()
    )
    assert completion.kind == "failed"
    assert completion.outcome is Outcome.TIMED_OUT
    assert completion.error == f"Timed out after 30s (attempt {attempt} of {max_attempts})"


def test_canceled_by_request() -> None:
    completion = execute.canceled(claimed())
    assert completion.kind == "canceled"
    assert completion.error == "canceled by request"
    assert (completion.run_id, completion.lease_token) == (7, 41)


def test_a_result_with_a_nul_character_is_refused_with_a_clear_message() -> None:
    completion = execute.success(claimed(), {"text": "a\x00b"})
    assert completion.kind == "failed"
    assert completion.error is not None
    assert "NUL character" in completion.error
