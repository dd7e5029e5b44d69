"""Schedule arithmetic with the clock passed in: cron in a time zone, daylight saving,
seconds, start and end, and plan() deciding what runs after a delay or downtime."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runwright.errors import InvalidRequest
from runwright.model.schedule import (
    MAX_DUE,
    Timing,
    check_cron,
    check_timezone,
    plan,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def local(zone: ZoneInfo, moments: list[float]) -> list[str]:
    return [datetime.fromtimestamp(m, zone).isoformat() for m in moments]


# -- next_after and upcoming ---------------------------------------------------------------------
def test_weekday_mornings_in_utc() -> None:
    timing = Timing(cron="30 6 * * 1-5")
    saturday = at(UTC, 2026, 11, 21, 12, 0)
    assert local(UTC, timing.upcoming(saturday, 3)) == [
        "2026-11-23T06:30:00+00:00",
        "2026-11-24T06:30:00+00:00",
        "2026-11-25T06:30:00+00:00",
    ]


def test_next_after_is_strictly_after_the_moment() -> None:
    timing = Timing(cron="* * * * *")
    minute = at(UTC, 2026, 5, 1, 10, 0)
    assert timing.next_after(minute) == minute + 60
    assert timing.next_after(minute - 0.5) == minute
    assert timing.next_after(minute - 60) == minute


def test_a_berlin_morning_follows_the_local_clock_across_summer_time() -> None:
    timing = Timing(cron="30 6 * * *", timezone="Europe/Berlin")
    winter = timing.next_after(at(UTC, 2026, 1, 15, 0, 0))
    summer = timing.next_after(at(UTC, 2026, 7, 15, 0, 0))
    assert local(UTC, [winter, summer]) == [
        "2026-01-15T05:30:00+00:00",  # CET, UTC+1
        "2026-07-15T04:30:00+00:00",  # CEST, UTC+2
    ]
    assert local(BERLIN, [winter, summer]) == [
        "2026-01-15T06:30:00+01:00",
        "2026-07-15T06:30:00+02:00",
    ]


def test_new_york_nine_o_clock_in_winter_and_summer() -> None:
    timing = Timing(cron="0 9 * * *", timezone="America/New_York")
    assert local(UTC, timing.upcoming(at(UTC, 2026, 3, 6, 15, 0), 3)) == [
        "2026-03-07T14:00:00+00:00",  # EST
        "2026-03-08T13:00:00+00:00",  # EDT from 8 March 2026
        "2026-03-09T13:00:00+00:00",
    ]


def test_upcoming_in_berlin_and_new_york_for_the_same_expression() -> None:
    moment = at(UTC, 2026, 6, 1, 0, 0)
    berlin = Timing(cron="0 12 * * *", timezone="Europe/Berlin").upcoming(moment, 2)
    new_york = Timing(cron="0 12 * * *", timezone="America/New_York").upcoming(moment, 2)
    assert local(UTC, berlin) == ["2026-06-01T10:00:00+00:00", "2026-06-02T10:00:00+00:00"]
    assert local(UTC, new_york) == ["2026-06-01T16:00:00+00:00", "2026-06-02T16:00:00+00:00"]


# -- daylight saving -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # Berlin: 29 March 2026, 02:00 -> 03:00
        (BERLIN, (2026, 3, 29), "2026-03-29T03:00:00+02:00"),
        # New York: 8 March 2026, 02:00 -> 03:00
        (NEW_YORK, (2026, 3, 8), "2026-03-08T03:00:00-04:00"),
    ],
)
def test_spring_forward_a_0230_job_fires_once_at_0300_on_the_gap_day(
    zone: ZoneInfo, day: tuple[int, int, int], expected: str
) -> None:
    timing = Timing(cron="30 2 * * *", timezone=str(zone))
    start = at(zone, *day, 0, 0) - 2 * 86400
    fires = local(zone, timing.upcoming(start, 5))
    on_gap_day = [f for f in fires if f.startswith("{:04d}-{:02d}-{:02d}".format(*day))]
    assert on_gap_day == [expected]
    assert len(fires) == 5
    assert [f[11:19] for f in fires] == ["02:30:00", "02:30:00", "03:00:00", "02:30:00", "02:30:00"]


def test_spring_forward_an_hourly_job_skips_the_missing_hour_without_firing_twice() -> None:
    timing = Timing(cron="0 * * * *", timezone="Europe/Berlin")
    fires = timing.upcoming(at(BERLIN, 2026, 3, 29, 0, 30), 4)
    assert local(BERLIN, fires) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
        "2026-03-29T05:00:00+02:00",
    ]
    assert [b - a for a, b in itertools.pairwise(fires)] == [3600.0] * 3


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (BERLIN, (2026, 10, 25), "2026-10-25T02:30:00+02:00"),  # 03:00 -> 02:00
        (NEW_YORK, (2026, 11, 1), "2026-11-01T02:30:00-05:00"),  # 02:00 -> 01:00
    ],
)
def test_fall_back_a_0230_job_fires_once(
    zone: ZoneInfo, day: tuple[int, int, int], expected: str
) -> None:
    timing = Timing(cron="30 2 * * *", timezone=str(zone))
    fires = local(zone, timing.upcoming(at(zone, *day, 0, 0) - 86400, 3))
    assert [f for f in fires if f.startswith("{:04d}-{:02d}-{:02d}".format(*day))] == [expected]


def test_fall_back_a_0130_job_in_new_york_fires_at_its_first_occurrence_only() -> None:
    timing = Timing(cron="30 1 * * *", timezone="America/New_York")
    fires = local(NEW_YORK, timing.upcoming(at(NEW_YORK, 2026, 10, 31, 12, 0), 3))
    assert fires == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]


def test_fall_back_every_30_minutes_fires_in_both_occurrences_of_the_repeated_hour() -> None:
    timing = Timing(cron="*/30 * * * *", timezone="Europe/Berlin")
    fires = timing.upcoming(at(BERLIN, 2026, 10, 25, 1, 10), 6)
    assert local(BERLIN, fires) == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    assert [b - a for a, b in itertools.pairwise(fires)] == [1800.0] * 5


def test_fall_back_in_new_york_every_30_minutes_follows_real_time() -> None:
    timing = Timing(cron="*/30 * * * *", timezone="America/New_York")
    fires = timing.upcoming(at(NEW_YORK, 2026, 11, 1, 0, 50), 6)
    assert [f[11:] for f in local(NEW_YORK, fires)] == [
        "01:00:00-04:00",
        "01:30:00-04:00",
        "01:00:00-05:00",
        "01:30:00-05:00",
        "02:00:00-05:00",
        "02:30:00-05:00",
    ]


@pytest.mark.parametrize(
    ("zone", "moment", "cron", "expected"),
    [
        # 01:10 EST, the second 01:10 of 1 November 2026 in New York
        (NEW_YORK, (2026, 11, 1, 1, 10), "30 1 * * *", "2026-11-02T01:30:00-05:00"),
        (NEW_YORK, (2026, 11, 1, 1, 0), "1 0,1 * * *", "2026-11-02T00:01:00-05:00"),
        # 02:10 CET, the second 02:10 of 25 October 2026 in Berlin
        (BERLIN, (2026, 10, 25, 2, 10), "30 2 * * *", "2026-10-26T02:30:00+01:00"),
    ],
)
def test_bug_next_after_never_goes_back_in_the_repeated_hour(
    zone: ZoneInfo, moment: tuple[int, ...], cron: str, expected: str
) -> None:
    """SRC BUG (model/schedule.py Timing.next_after): from a moment in the second
    occurrence of a repeated hour, a fixed-hour expression gets the *first* occurrence's
    time back, up to an hour before the moment: "30 1 * * *" from 01:10 EST answers 01:30
    EDT (40 minutes earlier). cronsim is handed datetime.fromtimestamp(moment, zone) with
    fold=1 and matches the wall time without it. A schedule created or enabled then gets a
    next_fire_at in the past: a misfire at once, and with catch_up a run for a fire time
    from before the schedule existed; GET /api/schedules/{id}/next lists it as next."""
    start = at(zone, *moment, fold=1)
    timing = Timing(cron=cron, timezone=str(zone))
    fire = timing.next_after(start)
    assert fire is not None
    assert fire > start, f"{local(zone, [fire])[0]} is before {local(zone, [start])[0]}"
    assert local(zone, [fire]) == [expected]


# -- seconds, start and end ------------------------------------------------------------------------
def test_six_fields_put_the_seconds_first() -> None:
    base = at(UTC, 2026, 5, 1, 10, 0)
    assert Timing(cron="*/10 * * * * *").upcoming(base, 4) == [
        base + 10,
        base + 20,
        base + 30,
        base + 40,
    ]
    every_second = Timing(cron="* * * * * *").upcoming(base + 0.4, 3)
    assert every_second == [base + 1, base + 2, base + 3]
    assert local(UTC, Timing(cron="30 0 6 * * *").upcoming(base, 2)) == [
        "2026-05-02T06:00:30+00:00",
        "2026-05-03T06:00:30+00:00",
    ]
    assert check_cron("  */10   * * * *  * ") == "*/10 * * * * *"


def test_start_at_is_the_first_possible_fire_and_itself_a_fire_time() -> None:
    start = at(UTC, 2026, 5, 1, 10, 0)
    timing = Timing(cron="*/15 * * * *", start_at=start)
    assert timing.next_after(start - 86400) == start
    assert timing.next_after(start - 1) == start
    assert timing.next_after(start) == start + 900
    later = Timing(cron="*/15 * * * *", start_at=start + 60)
    assert later.next_after(0.0) == start + 900


def test_end_at_is_inclusive_and_nothing_fires_after_it() -> None:
    start = at(UTC, 2026, 5, 1, 10, 0)
    timing = Timing(cron="*/15 * * * *", start_at=start, end_at=start + 1800)
    assert timing.upcoming(start - 1, 10) == [start, start + 900, start + 1800]
    assert timing.next_after(start + 1800) is None
    assert timing.next_after(start + 10**6) is None
    assert Timing(cron="*/15 * * * *", end_at=start + 1799).upcoming(start - 1, 10) == [
        start,
        start + 900,
    ]


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "cron '* * * *' has 4 fields; use 5 (minute hour day month weekday"),
        ("* * * * * * *", "has 7 fields; use 5"),
        ("", "cron '' has 0 fields"),
        ("   ", "has 0 fields"),
        ("61 * * * *", "cron '61 * * * *' is not valid: Bad minute."),
        ("* 24 * * *", "is not valid: Bad hour."),
        ("0 0 30 2 *", "is not valid: Bad day-of-month."),
        ("* * * 13 *", "is not valid: Bad month."),
        ("* * * * 8", "is not valid: Bad day-of-week."),
        ("a b c d e", "is not valid: Bad minute."),
        ("60 * * * * *", "is not valid: Bad second."),
    ],
)
def test_invalid_cron_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_cron(expression)
    assert message in caught.value.message


def test_the_field_count_message_gives_examples_of_both_forms() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_cron("0 6 *")
    assert "'30 6 * * 1-5'" in caught.value.message
    assert "6 with seconds first (e.g. '*/10 * * * * *')" in caught.value.message


@pytest.mark.parametrize("name", ["Mars/Olympus", "CET+1", "", "../../etc/passwd", "europe/berlin"])
def test_unknown_time_zones_are_refused_with_examples(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_timezone(name)
    assert caught.value.message == (
        f"time zone {name!r} is not known; use an IANA name such as UTC, Europe/Berlin "
        "or America/New_York."
    )


def test_known_time_zones() -> None:
    assert str(check_timezone("Europe/Berlin")) == "Europe/Berlin"
    assert str(check_timezone("UTC")) == "UTC"


# -- plan ------------------------------------------------------------------------------------------
MINUTE = Timing(cron="* * * * *")
T0 = at(UTC, 2026, 5, 1, 10, 0)


def test_plan_on_time_fires_the_due_time_and_moves_on() -> None:
    decided = plan(MINUTE, T0, T0, "skip", grace=60)
    assert (decided.fire, decided.missed, decided.next_fire) == ([T0], [], T0 + 60)
    late_a_bit = plan(MINUTE, T0, T0 + 0.8, "skip", grace=60)
    assert (late_a_bit.fire, late_a_bit.next_fire) == ([T0], T0 + 60)


def test_plan_a_lag_within_the_grace_fires_each_due_time() -> None:
    seconds = Timing(cron="* * * * * *")
    decided = plan(seconds, T0, T0 + 4.5, "skip", grace=10)
    assert decided.fire == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    assert decided.missed == []
    assert decided.next_fire == T0 + 5
    both = plan(MINUTE, T0, T0 + 90, "skip", grace=120)
    assert (both.fire, both.missed, both.next_fire) == ([T0, T0 + 60], [], T0 + 120)


def test_plan_the_exact_grace_still_counts_as_on_time() -> None:
    assert plan(MINUTE, T0, T0 + 60, "skip", grace=60).fire == [T0, T0 + 60]
    assert plan(MINUTE, T0, T0 + 60.001, "skip", grace=60).missed == [T0]


def test_plan_downtime_with_skip_runs_nothing_for_the_missed_times() -> None:
    hourly = Timing(cron="0 * * * *")
    now = T0 + 5 * 3600 + 1800  # down five and a half hours
    decided = plan(hourly, T0, now, "skip", grace=60)
    assert decided.fire == []
    assert decided.missed == [T0 + h * 3600 for h in range(6)]
    assert decided.next_fire == T0 + 6 * 3600
    assert decided.next_fire > now


def test_plan_downtime_with_skip_still_runs_a_time_that_is_within_the_grace() -> None:
    now = T0 + 600.5
    decided = plan(MINUTE, T0, now, "skip", grace=60)
    assert decided.fire == [T0 + 600]
    assert decided.missed == [T0 + m * 60 for m in range(10)]
    assert decided.next_fire == T0 + 660


def test_plan_downtime_with_catch_up_starts_exactly_one_run_for_the_window() -> None:
    hourly = Timing(cron="0 * * * *")
    now = T0 + 5 * 3600 + 1800
    decided = plan(hourly, T0, now, "catch_up", grace=60)
    assert decided.fire == [T0 + 5 * 3600]  # one run, for the latest missed time
    assert decided.missed == [T0 + h * 3600 for h in range(5)]
    assert decided.next_fire == T0 + 6 * 3600


def test_plan_catch_up_with_an_on_time_fire_needs_no_extra_run() -> None:
    decided = plan(MINUTE, T0, T0 + 600.5, "catch_up", grace=60)
    assert decided.fire == [T0 + 600]
    assert len(decided.missed) == 10


@pytest.mark.parametrize("misfire", ["skip", "catch_up"])
def test_plan_far_behind_does_not_loop_forever_and_lands_in_the_future(misfire: str) -> None:
    seconds = Timing(cron="* * * * * *")
    now = T0 + 30 * 86400 + 0.5  # a month of one-second fire times
    started = time.perf_counter()
    decided = plan(seconds, T0, now, misfire, grace=60)
    assert time.perf_counter() - started < 5
    assert len(decided.fire) + len(decided.missed) == MAX_DUE
    assert len(decided.fire) == (1 if misfire == "catch_up" else 0)
    assert decided.next_fire == T0 + 30 * 86400 + 1
    assert decided.next_fire is not None
    assert decided.next_fire > now


def test_plan_of_a_schedule_that_ended_has_no_next_fire() -> None:
    ending = Timing(cron="* * * * *", end_at=T0 + 120)
    decided = plan(ending, T0 + 120, T0 + 120, "skip", grace=60)
    assert (decided.fire, decided.next_fire) == ([T0 + 120], None)
    long_gone = plan(ending, T0, T0 + 86400, "catch_up", grace=60)
    assert (long_gone.fire, long_gone.missed, long_gone.next_fire) == (
        [T0 + 120],
        [T0, T0 + 60],
        None,
    )


def test_plan_across_the_spring_gap_in_berlin() -> None:
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    fire = at(BERLIN, 2026, 3, 29, 3, 0)
    decided = plan(timing, fire, fire + 5, "skip", grace=60)
    assert decided.fire == [fire]
    assert local(BERLIN, [decided.next_fire or 0]) == ["2026-03-30T02:30:00+02:00"]


# -- a property: increasing fire times that match the cron in their zone ---------------------------
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
TRANSITIONS = [
    at(UTC, 2026, 3, 29, 1, 0),
    at(UTC, 2026, 10, 25, 1, 0),
    at(UTC, 2026, 3, 8, 7, 0),
    at(UTC, 2026, 11, 1, 6, 0),
    at(UTC, 2026, 4, 4, 15, 0),
    at(UTC, 2026, 10, 3, 15, 30),
]


def field(low: int, high: int, max_step: int) -> st.SearchStrategy[tuple[str, set[int]]]:
    every = st.just(("*", set(range(low, high + 1))))
    step = st.integers(2, max_step).map(lambda n: (f"*/{n}", set(range(low, high + 1, n))))
    values = st.lists(st.integers(low, high), min_size=1, max_size=3, unique=True).map(
        lambda vs: (",".join(map(str, sorted(vs))), set(vs))
    )
    return st.one_of(every, step, values)


@st.composite
def crons(draw: st.DrawFn) -> tuple[str, list[set[int]], bool]:
    seconds = draw(st.booleans())
    fields = []
    if seconds:
        fields.append(draw(st.one_of(st.just(("0", {0})), field(0, 59, 30))))
    fields.append(draw(field(0, 59, 30)))
    fields.append(draw(field(0, 23, 12)))
    fields.append(("*", set(range(1, 32))))
    fields.append(("*", set(range(1, 13))))
    fields.append(draw(st.one_of(st.just(("*", set(range(7)))), field(0, 6, 3))))
    return " ".join(text for text, _ in fields), [values for _, values in fields], seconds


def matches(moment: datetime, sets: list[set[int]], seconds: bool) -> bool:
    parts = [moment.minute, moment.hour, moment.day, moment.month, moment.isoweekday() % 7]
    if seconds:
        parts.insert(0, moment.second)
    elif moment.second != 0:
        return False
    return all(value in allowed for value, allowed in zip(parts, sets, strict=True))


def after_a_gap(zone: ZoneInfo, fire: float) -> bool:
    """The first instant after clocks jumped forward (wall times in the gap do not exist)."""
    before = datetime.fromtimestamp(fire - 1, zone).utcoffset()
    now = datetime.fromtimestamp(fire, zone).utcoffset()
    return before is not None and now is not None and now > before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # found by this property: see test_bug_next_after_never_goes_back_in_the_repeated_hour
    cron=("1 0,1 * * *", [{1}, {0, 1}, set(range(1, 32)), set(range(1, 13)), set(range(7))], False),
    zone_name="America/New_York",
    anchor=at(UTC, 2026, 11, 1, 6, 0),
    offset=0.0,
)
@given(
    cron=crons(),
    zone_name=st.sampled_from(ZONES),
    anchor=st.sampled_from(TRANSITIONS),
    offset=st.floats(-3 * 86400, 3 * 86400, allow_nan=False),
)
def test_fire_times_increase_strictly_and_match_the_cron_in_their_zone(
    cron: tuple[str, list[set[int]], bool], zone_name: str, anchor: float, offset: float
) -> None:
    expression, sets, seconds = cron
    zone = ZoneInfo(zone_name)
    start = anchor + offset
    fires = Timing(cron=expression, timezone=zone_name).upcoming(start, 12)
    assert len(fires) == 12
    assert fires[0] > start
    assert all(b > a for a, b in itertools.pairwise(fires)), local(zone, fires)
    for fire in fires:
        moment = datetime.fromtimestamp(fire, zone)
        assert matches(moment, sets, seconds) or after_a_gap(zone, fire), (
            f"{expression} in {zone_name}: {moment.isoformat()} does not match"
        )


def next_candidate(cursor: int, sets: list[set[int]], seconds: bool) -> int:
    """The next second at or after ``cursor`` that could match, skipping whole days,
    hours and minutes that cannot (UTC has no daylight saving)."""
    while True:
        moment = datetime.fromtimestamp(cursor, UTC)
        *_, weekdays = sets
        hours = sets[2 if seconds else 1]
        minutes = sets[1 if seconds else 0]
        if moment.isoweekday() % 7 not in weekdays:
            cursor += 86400 - (cursor % 86400)
        elif moment.hour not in hours:
            cursor += 3600 - (cursor % 3600)
        elif moment.minute not in minutes:
            cursor += 60 - (cursor % 60)
        elif seconds and moment.second not in sets[0]:
            cursor += 1
        elif not seconds and moment.second != 0:
            cursor += 60 - (cursor % 60)
        else:
            return cursor


@settings(max_examples=60, deadline=None)
@given(cron=crons(), offset=st.floats(0, 30 * 86400, allow_nan=False))
def test_in_utc_no_matching_time_is_ever_skipped(
    cron: tuple[str, list[set[int]], bool], offset: float
) -> None:
    expression, sets, seconds = cron
    start = at(UTC, 2026, 1, 1, 0, 0) + offset
    fires = Timing(cron=expression).upcoming(start, 5)
    cursor = int(start) + 1
    for fire in fires:
        expected = next_candidate(cursor, sets, seconds)
        assert fire == expected, (
            f"{expression}: fired {datetime.fromtimestamp(fire, UTC)}, but "
            f"{datetime.fromtimestamp(expected, UTC)} matches first"
        )
        cursor = int(fire) + 1


@settings(max_examples=60, deadline=None)
@given(
    cron=crons(),
    zone_name=st.sampled_from(ZONES),
    start=st.floats(at(UTC, 2026, 1, 1, 0, 0), at(UTC, 2026, 12, 31, 0, 0), allow_nan=False),
    length=st.floats(1, 10 * 86400, allow_nan=False),
)
def test_fire_times_stay_between_start_and_end(
    cron: tuple[str, list[set[int]], bool], zone_name: str, start: float, length: float
) -> None:
    timing = Timing(cron=cron[0], timezone=zone_name, start_at=start, end_at=start + length)
    fires = timing.upcoming(start - timedelta(days=3).total_seconds(), 20)
    assert all(start <= f <= start + length for f in fires)
    if len(fires) < 20:
        assert timing.next_after(fires[-1] if fires else start - 1) is None
