"""Retry backoff and the retry decision, as pure functions of their inputs."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runwright.model.retry import RetryPolicy, should_retry

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
jitters = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
attempts = st.integers(min_value=1, max_value=10_000)
seeds = st.integers(min_value=0, max_value=2**32)


class FixedRandom(random.Random):
    """A random source that always draws the same number in [0, 1)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def ceiling(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.cap, policy.base * 2.0 ** max(0, min(attempt - 1, 62)))


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.base, policy.cap, policy.jitter) == (1.0, 300.0, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1.0}, {"cap": -0.1}, {"jitter": -0.01}, {"jitter": 1.5}, {"jitter": math.nan}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="retry"):
        RetryPolicy(**kwargs)


def test_without_jitter_the_delay_doubles_until_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_extremes() -> None:
    policy = RetryPolicy(base=2.0, cap=100.0, jitter=0.5)
    assert policy.delay(3, FixedRandom(0.0)) == 8.0  # no reduction
    assert policy.delay(3, FixedRandom(0.999999)) == pytest.approx(4.0, rel=1e-5)


def test_attempt_numbers_below_one_use_the_base_delay() -> None:
    policy = RetryPolicy(base=3.0, cap=100.0, jitter=0.0)
    assert policy.delay(0, random.Random()) == 3.0
    assert policy.delay(-5, random.Random()) == 3.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(base=1.0, cap=60.0, jitter=0.0)
    assert policy.delay(10**9, random.Random()) == 60.0


def test_a_seeded_random_source_gives_reproducible_delays() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0, jitter=0.5)
    first = [policy.delay(n, random.Random(42)) for n in range(1, 10)]
    second = [policy.delay(n, random.Random(42)) for n in range(1, 10)]
    assert first == second


@given(base=seconds, cap=seconds, jitter=jitters, attempt=attempts, seed=seeds)
def test_delay_is_within_the_jitter_band_below_the_ceiling(
    base: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = RetryPolicy(base=base, cap=cap, jitter=jitter)
    top = ceiling(policy, attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert top * (1 - jitter) - 1e-9 * top <= delay <= top
    assert 0.0 <= delay <= cap
    assert math.isfinite(delay)


@given(base=seconds, cap=seconds, jitter=jitters, attempt=attempts, draw=st.floats(0.0, 0.9999))
def test_delay_never_exceeds_the_cap(
    base: float, cap: float, jitter: float, attempt: int, draw: float
) -> None:
    policy = RetryPolicy(base=base, cap=cap, jitter=jitter)
    assert policy.delay(attempt, FixedRandom(draw)) <= cap


@given(base=seconds, cap=seconds, attempt=attempts)
def test_without_jitter_delay_is_monotone_in_attempt(base: float, cap: float, attempt: int) -> None:
    policy = RetryPolicy(base=base, cap=cap, jitter=0.0)
    rng = random.Random(0)
    assert policy.delay(attempt, rng) <= policy.delay(attempt + 1, rng)
    assert policy.delay(attempt, rng) == ceiling(policy, attempt)


@given(base=st.floats(0.001, 1e3), cap=st.floats(0.001, 1e6), attempt=st.integers(1, 60))
def test_without_jitter_delay_is_the_capped_exponential(
    base: float, cap: float, attempt: int
) -> None:
    assume(base * 2.0 ** (attempt - 1) < 1e300)
    policy = RetryPolicy(base=base, cap=cap, jitter=0.0)
    assert policy.delay(attempt, random.Random()) == min(cap, base * 2.0 ** (attempt - 1))


@given(base=seconds, cap=seconds, jitter=jitters, attempt=attempts, draw=st.floats(0.0, 0.9999))
def test_more_jitter_never_lengthens_the_delay(
    base: float, cap: float, jitter: float, attempt: int, draw: float
) -> None:
    steady = RetryPolicy(base=base, cap=cap, jitter=0.0).delay(attempt, FixedRandom(draw))
    jittered = RetryPolicy(base=base, cap=cap, jitter=jitter).delay(attempt, FixedRandom(draw))
    assert jittered <= steady


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "expected"),
    [(1, 1, False), (1, 2, True), (2, 2, False), (2, 3, True), (3, 3, False), (4, 3, False)],
)
def test_should_retry_table(attempt: int, max_attempts: int, expected: bool) -> None:
    assert should_retry(attempt=attempt, max_attempts=max_attempts) is expected


@given(attempt=st.integers(0, 2000), max_attempts=st.integers(1, 1000))
def test_should_retry_while_attempts_remain(attempt: int, max_attempts: int) -> None:
    assert should_retry(attempt=attempt, max_attempts=max_attempts) == (attempt < max_attempts)


@given(max_attempts=st.integers(1, 200))
def test_a_run_is_tried_exactly_max_attempts_times(max_attempts: int) -> None:
    attempt = 1
    while should_retry(attempt=attempt, max_attempts=max_attempts):
        attempt += 1
    assert attempt == max_attempts
