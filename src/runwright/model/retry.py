"""When a failed attempt is tried again: exponential backoff with jitter and a cap."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``delay(n) = min(cap, base * 2 ** (n - 1))`` scaled by a jitter factor in [1-jitter, 1]."""

    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("retry base and cap must be >= 0 seconds")
        if not 0 <= self.jitter <= 1:
            raise ValueError("retry jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, min(attempt - 1, 62))
        ceiling = min(self.cap, self.base * (2.0**exponent))
        return ceiling * (1.0 - self.jitter * rng.random())


def should_retry(*, attempt: int, max_attempts: int) -> bool:
    """Whether another attempt remains after attempt number ``attempt`` failed."""
    return attempt < max_attempts
