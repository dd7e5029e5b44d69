"""Schedule arithmetic: cron expressions in a time zone, start and end, misfires.

Pure functions with the clock passed in. Cron is evaluated by cronsim in the
schedule's IANA time zone, which gives the daylight-saving rule:

- a wall-clock time that does not exist (spring forward, e.g. 02:30 when clocks
  jump from 02:00 to 03:00) fires once, at the first valid time after the gap;
- a wall-clock time that happens twice (fall back) fires once, at its first
  occurrence, for expressions with fixed hours and minutes; expressions that
  repeat within the hour (``*/15 * * * *``) follow real time and fire in both
  occurrences of the repeated hour.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from runwright.errors import InvalidRequest

MISFIRE_POLICIES = ("skip", "catch_up")
MAX_DUE = 1000  # fire times looked at in one pass (a schedule far behind is a misfire)


def check_cron(expression: str) -> str:
    """5 fields (minute hour day month weekday) or 6 (seconds first)."""
    text = " ".join(expression.split())
    fields = len(text.split(" ")) if text else 0
    if fields not in (5, 6):
        raise InvalidRequest(
            f"cron {expression!r} has {fields} fields; use 5 (minute hour day month weekday, "
            "e.g. '30 6 * * 1-5') or 6 with seconds first (e.g. '*/10 * * * * *')."
        )
    try:
        CronSim(text, datetime(2026, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError) as exc:
        raise InvalidRequest(f"cron {expression!r} is not valid: {exc}.") from exc
    return text


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(
            f"time zone {name!r} is not known; use an IANA name such as UTC, Europe/Berlin "
            "or America/New_York."
        ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    cron: str
    timezone: str = "UTC"
    start_at: float | None = None
    end_at: float | None = None

    def zone(self) -> ZoneInfo:
        return check_timezone(self.timezone)

    def next_after(self, moment: float) -> float | None:
        """The first fire time strictly after ``moment`` (epoch), or None past the end."""
        return _next_after(self, moment)

    def _compute_next(self, moment: float) -> float | None:
        after = moment
        if self.start_at is not None and self.start_at - 1e-6 > after:
            after = self.start_at - 1e-6
        start = datetime.fromtimestamp(after, self.zone())
        fires = iter(CronSim(self.cron, start))
        try:
            fire = next(fires).timestamp()
            # In the repeated hour of a fall-back day (fold=1) cronsim may answer with the
            # first occurrence of a wall time, which lies before ``after``: move on.
            for _ in range(100):
                if fire > after:
                    break
                fire = next(fires).timestamp()
        except StopIteration:
            return None
        if fire <= after:
            return None
        if self.end_at is not None and fire > self.end_at:
            return None
        return fire

    def upcoming(self, moment: float, count: int) -> list[float]:
        fires: list[float] = []
        cursor = moment
        while len(fires) < count:
            fire = self.next_after(cursor)
            if fire is None:
                break
            fires.append(fire)
            cursor = fire
        return fires

    def due(self, first: float, now: float) -> list[float]:
        """Fire times from ``first`` (itself a fire time) up to ``now``, at most MAX_DUE."""
        fires: list[float] = []
        fire: float | None = first
        while fire is not None and fire <= now and len(fires) < MAX_DUE:
            fires.append(fire)
            fire = self.next_after(fire)
        return fires


@functools.lru_cache(maxsize=4096)
def _next_after(timing: Timing, moment: float) -> float | None:
    # Many schedules share an expression and a fire time (every hour on the hour):
    # a scheduler pass computes each distinct one once.
    return timing._compute_next(moment)


@dataclass(frozen=True, slots=True)
class FirePlan:
    fire: list[float]  # fire times that start a run now
    missed: list[float]  # fire times that were due but will not run
    next_fire: float | None


def plan(timing: Timing, next_fire: float, now: float, misfire: str, grace: float) -> FirePlan:
    """What to do with a schedule whose ``next_fire`` has come.

    Fire times late by at most ``grace`` seconds start their run. Older ones (the
    scheduler was down) are misfires: ``skip`` drops them (the schedule runs again
    at its next fire time); ``catch_up`` starts one run now for the whole missed
    window, never one per missed tick.
    """
    due = timing.due(next_fire, now)
    on_time = [f for f in due if now - f <= grace]
    late = [f for f in due if now - f > grace]
    fire = list(on_time)
    if late and misfire == "catch_up" and not on_time:
        fire = [late[-1]]
        late = late[:-1]
    last = due[-1] if due else next_fire
    following = timing.next_after(max(last, now) if len(due) >= MAX_DUE else last)
    return FirePlan(fire=fire, missed=late, next_fire=following)
