"""Schedules over a real database (SQLite and PostgreSQL): creation checks, firing with
an explicit clock, one run per fire time whoever fires it, concurrency policies (skip,
queue with held runs released one at a time by a real worker), failed fires, enabling."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.config import Settings
from runwright.db.runs import RunFilter
from runwright.db.schedules import ScheduleRepository, release_held
from runwright.errors import InvalidRequest, NotFound
from runwright.model.runs import Run
from runwright.model.states import RunStatus
from runwright.services.jobs import JobSettings
from runwright.services.runtime import Runtime
from runwright.services.schedules import ScheduleService, ScheduleSpec
from runwright.worker.context import TaskContext
from runwright.worker.registry import TaskRegistry, TaskSpec
from tests.helpers import admin_headers, running_worker, wait_for_run, wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ECHO, NAP = "trig.echo", "trig.nap"
HOUR = 3600.0


def make_registry() -> TaskRegistry:
    registry = TaskRegistry()

    def echo(ctx: TaskContext) -> Any:
        return ctx.payload

    def nap(ctx: TaskContext) -> Any:
        time.sleep(0.4)
        return {"napped": ctx.run_id}

    registry.register(TaskSpec(name=ECHO, func=echo))
    registry.register(TaskSpec(name=NAP, func=nap))
    return registry


@contextlib.contextmanager
def opened(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.open(settings, create_schema=True, registry=make_registry())
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    with opened(settings) as rt:
        yield rt


def task_job(runtime: Runtime, name: str, task_type: str = ECHO, **settings: Any) -> None:
    runtime.jobs.create(name, JobSettings(kind="task", task_type=task_type, **settings))


def runs_of(runtime: Runtime, job: str) -> list[Run]:
    return sorted(runtime.runs.list(RunFilter(jobs=[job], limit=500)), key=lambda r: r.id)


def spec(cron: str = "0 * * * *", **extra: Any) -> ScheduleSpec:
    return ScheduleSpec(cron=cron, **extra)


PARAMS = [
    {"name": "day", "type": "date", "required": True},
    {"name": "limit", "type": "integer", "default": 10},
]


# -- creation ----------------------------------------------------------------------------------
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"cron": "0 6 * *"}, "cron '0 6 * *' has 4 fields; use 5"),
    ({"cron": "99 * * * *"}, "cron '99 * * * *' is not valid: Bad minute."),
    ({"timezone": "Europe/Paris-ish"}, "time zone 'Europe/Paris-ish' is not known"),
    ({"misfire": "run_all"}, "misfire must be skip (missed fire times are dropped) or"),
    ({"start_at": 2000.0, "end_at": 1000.0}, "end must be later than start."),
    ({"start_at": 1000.0, "end_at": 1000.0}, "end must be later than start."),
    ({"params": {"limit": 5}}, "parameter 'day' is required (a date like 2026-11-22)"),
    ({"params": {"day": "tomorrow"}}, "parameter 'day' must be a date like 2026-11-22"),
    (
        {"params": {"day": "2026-01-01", "dya": 1}},
        "Unknown parameter 'dya' of job 'export'; its parameters are: day (date), limit (integer).",
    ),
    ({"params": {"day": "2026-01-01", "limit": "x"}}, "Invalid parameters of job 'export'"),
]


def test_create_checks_cron_zone_misfire_and_params_against_the_job(runtime: Runtime) -> None:
    task_job(runtime, "export", parameters=PARAMS)
    for given, message in REFUSED:
        values = {"cron": "0 * * * *", "params": {"day": "2026-01-01"}, **given}
        with pytest.raises(InvalidRequest) as caught:
            runtime.schedules.create("export", ScheduleSpec(**values))
        assert message in caught.value.message, given
    assert runtime.schedules.list() == []


def test_create_for_an_unknown_job_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match="Job 'nope' does not exist"):
        runtime.schedules.create("nope", spec())


def test_create_stores_coerced_params_and_the_next_fire_time(runtime: Runtime) -> None:
    task_job(runtime, "export", parameters=PARAMS)
    before = time.time()
    schedule = runtime.schedules.create(
        "export",
        spec(
            "  30 6   * * 1-5 ",
            timezone="Europe/Berlin",
            params={"day": "2026-11-22", "limit": "25"},
            description="weekday export",
        ),
    )
    assert schedule.cron == "30 6 * * 1-5"
    assert schedule.params == {"day": "2026-11-22", "limit": 25}
    assert (schedule.job, schedule.timezone, schedule.misfire) == (
        "export",
        "Europe/Berlin",
        "skip",
    )
    assert schedule.enabled
    assert schedule.next_fire_at is not None
    assert before < schedule.next_fire_at <= before + 4 * 86400
    assert schedule.last_fire_at is None
    assert runtime.schedules.upcoming(schedule.id, 3)[0] == schedule.next_fire_at
    assert [s.id for s in runtime.schedules.list("export")] == [schedule.id]


def test_a_job_without_parameters_takes_any_schedule_params(runtime: Runtime) -> None:
    task_job(runtime, "free")
    schedule = runtime.schedules.create("free", spec(params={"anything": [1, "2"]}))
    assert schedule.params == {"anything": [1, "2"]}


def test_the_api_answers_422_with_the_message(runtime: Runtime) -> None:
    task_job(runtime, "export", parameters=PARAMS)
    with TestClient(
        create_app(runtime),
        raise_server_exceptions=False,
        headers=admin_headers(runtime),
    ) as client:
        bad = client.post("/api/jobs/export/schedules", json={"cron": "* * *", "params": {}})
        assert bad.status_code == 422
        assert "has 3 fields" in bad.json()["error"]
        missing = client.post("/api/jobs/export/schedules", json={"cron": "0 6 * * *"})
        assert missing.status_code == 422
        assert "parameter 'day' is required" in missing.json()["error"]
        zone = client.post(
            "/api/jobs/export/schedules",
            json={"cron": "0 6 * * *", "timezone": "Moon/Base", "params": {"day": "2026-01-01"}},
        )
        assert (zone.status_code, "time zone 'Moon/Base' is not known" in zone.text) == (422, True)
        good = client.post(
            "/api/jobs/export/schedules",
            json={
                "cron": "0 6 * * *",
                "timezone": "America/New_York",
                "params": {"day": "2026-01-01"},
            },
        )
        assert good.status_code == 201, good.text
        upcoming = client.get(f"/api/schedules/{good.json()['id']}/next", params={"count": 2})
        assert upcoming.status_code == 200
        assert all(f.endswith(("-05:00", "-04:00")) for f in upcoming.json()["fires"])
        assert all("T06:00:00" in f for f in upcoming.json()["fires"])


# -- firing ------------------------------------------------------------------------------------
def test_tick_fires_a_run_with_the_schedule_as_its_trigger(runtime: Runtime) -> None:
    task_job(runtime, "export", parameters=PARAMS)
    schedule = runtime.schedules.create("export", spec(params={"day": "2026-11-22"}))
    fire = schedule.next_fire_at
    assert fire is not None

    early = runtime.schedules.tick(now=fire - 1)
    assert (early.started, early.skipped, early.failed) == (0, 0, 0)
    assert runs_of(runtime, "export") == []

    report = runtime.schedules.tick(now=fire + 0.5)
    assert (report.started, report.skipped, report.failed, report.missed) == (1, 0, 0, 0)
    [run] = runs_of(runtime, "export")
    assert (run.trigger, run.trigger_id, run.fired_at) == ("schedule", schedule.id, fire)
    assert run.payload == {"day": "2026-11-22", "limit": 10}
    assert run.idempotency_key == f"schedule:{schedule.id}:{fire:.3f}"
    assert run.status is RunStatus.QUEUED
    assert not run.held

    after = runtime.schedules.get(schedule.id)
    assert (after.last_fire_at, after.last_run_id, after.next_fire_at) == (
        fire,
        run.id,
        fire + HOUR,
    )
    [record] = runtime.schedules.fires(schedule.id)
    assert (record.fire_time, record.status, record.run_id, record.reason) == (
        fire,
        "started",
        run.id,
        None,
    )


def test_the_fired_run_is_executed_by_a_worker(runtime: Runtime) -> None:
    task_job(runtime, "echo")
    schedule = runtime.schedules.create("echo", spec("* * * * * *", params={"n": 1}))
    assert schedule.next_fire_at is not None
    runtime.schedules.tick(now=schedule.next_fire_at)
    [run] = runs_of(runtime, "echo")
    with running_worker(runtime, concurrency=1):
        done = wait_for_run(runtime, run.id)
    assert (done.status, done.result) == (RunStatus.SUCCEEDED, {"n": 1})


def test_ticking_twice_for_the_same_fire_time_makes_one_run(runtime: Runtime) -> None:
    task_job(runtime, "once")
    schedule = runtime.schedules.create("once", spec())
    fire = schedule.next_fire_at
    assert fire is not None
    assert runtime.schedules.tick(now=fire).started == 1
    again = runtime.schedules.tick(now=fire)
    assert (again.started, again.skipped, again.failed) == (0, 0, 0)
    assert runtime.schedules.tick(now=fire + 1).started == 0
    assert len(runs_of(runtime, "once")) == 1
    assert len(runtime.schedules.fires(schedule.id)) == 1


def test_two_services_on_one_database_fire_each_time_once(settings: Settings) -> None:
    with opened(settings) as first, opened(settings) as second:
        task_job(first, "shared")
        schedule = first.schedules.create("shared", spec())
        fire = schedule.next_fire_at
        assert fire is not None
        assert first.schedules.tick(now=fire + 0.2).started == 1
        assert second.schedules.tick(now=fire + 0.2).started == 0
        assert [r.fired_at for r in runs_of(second, "shared")] == [fire]


def test_a_second_scheduler_with_a_stale_view_makes_no_second_run(settings: Settings) -> None:
    """The other scheduler read the schedule before the first one moved it on (SQLite
    takes no row lock): the idempotency key, the unique fire record and the
    compare-and-set on next_fire_at must each hold."""
    with opened(settings) as first, opened(settings) as second:
        task_job(first, "raced")
        schedule = first.schedules.create("raced", spec())
        fire = schedule.next_fire_at
        assert fire is not None
        stale = ScheduleRepository(second.engine).get(schedule.id)
        assert stale is not None
        assert first.schedules.tick(now=fire + 0.1).started == 1

        repository = ScheduleRepository(second.engine)

        @contextlib.contextmanager
        def stale_due(now: float, limit: int) -> Iterator[tuple[None, list[Any]]]:
            yield None, [stale]

        repository.due = stale_due  # type: ignore[method-assign]
        late = ScheduleService(schedules=repository, jobs=second.jobs, misfire_grace=60)
        report = late.tick(now=fire + 0.1)
        assert (report.started, report.skipped, report.failed) == (0, 0, 0)

        [run] = runs_of(first, "raced")
        assert run.fired_at == fire
        assert [f.run_id for f in first.schedules.fires(schedule.id)] == [run.id]
        current = first.schedules.get(schedule.id)
        assert current.next_fire_at == fire + HOUR
        assert current.last_run_id == run.id


def test_two_services_ticking_at_once_fire_every_second_exactly_once(settings: Settings) -> None:
    with opened(settings) as first, opened(settings) as second:
        task_job(first, "busy")
        schedule = first.schedules.create("busy", spec("* * * * * *"))
        start = schedule.next_fire_at
        assert start is not None
        fires = [start + k for k in range(12)]
        barrier = threading.Barrier(2, timeout=10)
        errors: list[BaseException] = []
        started = [0, 0]

        def ticker(index: int, service: ScheduleService) -> None:
            try:
                for moment in fires:
                    barrier.wait()
                    started[index] += service.tick(now=moment + 0.05).started
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        threads = [
            threading.Thread(target=ticker, args=(i, rt.schedules))
            for i, rt in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        runs = runs_of(first, "busy")
        assert sorted(r.fired_at or 0 for r in runs) == fires
        assert sum(started) == len(fires)
        assert sorted(f.fire_time for f in first.schedules.fires(schedule.id, limit=100)) == fires


# -- misfires ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("misfire", "runs"), [("skip", 0), ("catch_up", 1)])
def test_downtime_skips_or_catches_up_once(runtime: Runtime, misfire: str, runs: int) -> None:
    task_job(runtime, "hourly")
    schedule = runtime.schedules.create("hourly", spec("0 * * * *", misfire=misfire))
    first = schedule.next_fire_at
    assert first is not None
    now = first + 5 * HOUR + 1800  # the scheduler was down five and a half hours
    report = runtime.schedules.tick(now=now)
    assert report.started == runs
    assert report.missed == 6 - runs
    fired = runs_of(runtime, "hourly")
    assert [r.fired_at for r in fired] == ([first + 5 * HOUR] if runs else [])
    after = runtime.schedules.get(schedule.id)
    assert after.next_fire_at == first + 6 * HOUR
    assert runtime.schedules.tick(now=now).started == 0


def test_a_schedule_far_behind_catches_up_once_without_looping(runtime: Runtime) -> None:
    task_job(runtime, "seconds")
    schedule = runtime.schedules.create("seconds", spec("* * * * * *", misfire="catch_up"))
    assert schedule.next_fire_at is not None
    now = schedule.next_fire_at + 7 * 86400 + 0.5
    started = time.monotonic()
    report = runtime.schedules.tick(now=now)
    assert time.monotonic() - started < 10
    assert report.started == 1
    assert len(runs_of(runtime, "seconds")) == 1
    assert (runtime.schedules.get(schedule.id).next_fire_at or 0) > now


# -- concurrency policies ----------------------------------------------------------------------
def test_concurrency_skip_records_a_skipped_fire_with_the_reason(runtime: Runtime) -> None:
    task_job(runtime, "single", concurrency="skip")
    schedule = runtime.schedules.create("single", spec("* * * * * *"))
    fire = schedule.next_fire_at
    assert fire is not None
    assert runtime.schedules.tick(now=fire).started == 1
    [active] = runs_of(runtime, "single")  # no worker: it stays queued, hence active

    report = runtime.schedules.tick(now=fire + 1)
    assert (report.started, report.skipped) == (0, 1)
    assert [r.id for r in runs_of(runtime, "single")] == [active.id]
    newest, oldest = runtime.schedules.fires(schedule.id)
    assert (oldest.status, oldest.run_id) == ("started", active.id)
    assert (newest.fire_time, newest.status, newest.run_id) == (fire + 1, "skipped", None)
    assert newest.reason is not None
    assert f"already has run {active.id} active" in newest.reason
    assert "concurrency is 'skip'" in newest.reason
    assert runtime.schedules.get(schedule.id).next_fire_at == fire + 2


def test_concurrency_queue_releases_held_runs_one_at_a_time_in_order(runtime: Runtime) -> None:
    task_job(runtime, "serial", task_type=NAP, concurrency="queue")
    schedule = runtime.schedules.create("serial", spec("* * * * * *"))
    fire = schedule.next_fire_at
    assert fire is not None
    for k in range(3):
        assert runtime.schedules.tick(now=fire + k).started == 1
    held = runs_of(runtime, "serial")
    assert [(r.status, r.held, r.fired_at) for r in held] == [
        (RunStatus.QUEUED, True, fire + k) for k in range(3)
    ]
    ids = [r.id for r in held]

    released: list[int] = []
    with running_worker(runtime, concurrency=4):
        time.sleep(0.3)
        assert runs_of(runtime, "serial")[0].status is RunStatus.QUEUED  # held: not claimed

        def all_done() -> bool:
            released.extend(release_held(runtime.engine, time.time()))
            return all(runtime.runs.get(i).status.is_final for i in ids)

        wait_until(all_done, timeout=30, interval=0.05, what="the held runs to finish")
    assert released == ids
    done = [runtime.runs.get(i) for i in ids]
    assert all(r.status is RunStatus.SUCCEEDED and not r.held for r in done)
    for earlier, later in itertools.pairwise(done):
        assert earlier.finished_at is not None
        assert later.started_at is not None
        assert later.started_at >= earlier.finished_at, "two runs of a 'queue' job overlapped"


def test_release_held_waits_for_the_active_run(runtime: Runtime) -> None:
    task_job(runtime, "waits", concurrency="queue")
    schedule = runtime.schedules.create("waits", spec("* * * * * *"))
    fire = schedule.next_fire_at
    assert fire is not None
    runtime.schedules.tick(now=fire)
    runtime.schedules.tick(now=fire + 1)
    first, second = runs_of(runtime, "waits")
    assert release_held(runtime.engine, time.time()) == [first.id]
    assert release_held(runtime.engine, time.time()) == []  # the first is queued, not held
    assert runtime.runs.get(second.id).held
    runtime.runs.cancel(first.id)
    assert release_held(runtime.engine, time.time()) == [second.id]
    assert release_held(runtime.engine, time.time()) == []


# -- failed fires, parameters, enabling --------------------------------------------------------
def test_a_disabled_job_makes_a_failed_fire_with_the_reason(runtime: Runtime) -> None:
    task_job(runtime, "off")
    schedule = runtime.schedules.create("off", spec())
    fire = schedule.next_fire_at
    assert fire is not None
    runtime.jobs.update("off", JobSettings(enabled=False))
    report = runtime.schedules.tick(now=fire)
    assert (report.started, report.failed) == (0, 1)
    assert runs_of(runtime, "off") == []
    [record] = runtime.schedules.fires(schedule.id)
    assert (record.status, record.run_id) == ("failed", None)
    assert record.reason == "Job 'off' is disabled; enable it with `runwright job update`."
    assert runtime.schedules.get(schedule.id).next_fire_at == fire + HOUR


def test_parameters_changed_after_creation_fail_the_fire_naming_them(runtime: Runtime) -> None:
    task_job(runtime, "evolving", parameters=[{"name": "day", "type": "date"}])
    schedule = runtime.schedules.create("evolving", spec(params={"day": "2026-01-01"}))
    fire = schedule.next_fire_at
    assert fire is not None
    runtime.jobs.update(
        "evolving",
        JobSettings(
            parameters=[
                {"name": "day", "type": "date"},
                {"name": "region", "type": "enum", "choices": ["eu", "us"], "required": True},
            ]
        ),
    )
    assert runtime.schedules.tick(now=fire).failed == 1
    [record] = runtime.schedules.fires(schedule.id)
    assert record.status == "failed"
    assert "parameter 'region' is required (one of 'eu', 'us')" in (record.reason or "")


def test_enabling_starts_from_now_without_catching_up(runtime: Runtime) -> None:
    task_job(runtime, "paused")
    schedule = runtime.schedules.create("paused", spec("* * * * *", misfire="catch_up"))
    off = runtime.schedules.set_enabled(schedule.id, False)
    assert not off.enabled
    # It was off for a day: its stored fire time lies far in the past.
    ScheduleRepository(runtime.engine).update(
        schedule.id, {"next_fire_at": time.time() - 86400 - 30}
    )
    assert runtime.schedules.tick(now=time.time()).started == 0  # disabled: not due

    before = time.time()
    on = runtime.schedules.set_enabled(schedule.id, True)
    assert on.enabled
    assert on.next_fire_at is not None
    assert before < on.next_fire_at <= before + 60
    report = runtime.schedules.tick(now=time.time())
    assert (report.started, report.missed) == (0, 0)
    assert runtime.schedules.tick(now=on.next_fire_at).started == 1
    assert [r.fired_at for r in runs_of(runtime, "paused")] == [on.next_fire_at]


def test_a_schedule_with_an_end_stops_firing(runtime: Runtime) -> None:
    task_job(runtime, "ending")
    now = time.time()
    schedule = runtime.schedules.create("ending", spec("* * * * * *", end_at=now + 2.5))
    fire = schedule.next_fire_at
    assert fire is not None
    moments = [fire + k for k in range(5)]
    for moment in moments:
        runtime.schedules.tick(now=moment)
    fired = [r.fired_at for r in runs_of(runtime, "ending")]
    assert fired == [m for m in moments if m <= now + 2.5]
    assert runtime.schedules.get(schedule.id).next_fire_at is None


def test_delete_removes_the_schedule_and_its_fires_not_its_runs(runtime: Runtime) -> None:
    task_job(runtime, "gone")
    schedule = runtime.schedules.create("gone", spec())
    assert schedule.next_fire_at is not None
    runtime.schedules.tick(now=schedule.next_fire_at)
    runtime.schedules.delete(schedule.id)
    with pytest.raises(NotFound, match=f"Schedule {schedule.id} does not exist"):
        runtime.schedules.get(schedule.id)
    with pytest.raises(NotFound):
        runtime.schedules.delete(schedule.id)
    assert len(runs_of(runtime, "gone")) == 1


def test_bug_a_schedule_created_in_the_repeated_hour_does_not_fire_the_past(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SRC BUG (model/schedule.py Timing.next_after, see tests/unit/test_schedule.py):
    created at 01:10 EST on 1 November 2026 (New York's second 01:10), a '30 1 * * *'
    catch_up schedule gets 01:30 EDT, forty minutes before its creation, as its next fire
    time; the next pass takes it for a misfire and starts a run for it at once."""
    created = datetime(2026, 11, 1, 1, 10, tzinfo=ZoneInfo("America/New_York"), fold=1)
    moment = created.timestamp()
    monkeypatch.setattr("runwright.services.schedules.time", SimpleNamespace(time=lambda: moment))
    task_job(runtime, "dst")
    schedule = runtime.schedules.create(
        "dst", spec("30 1 * * *", timezone="America/New_York", misfire="catch_up")
    )
    assert schedule.next_fire_at is not None
    problems = []
    if schedule.next_fire_at <= moment:
        problems.append(f"next_fire_at is {moment - schedule.next_fire_at:.0f}s before creation")
    runtime.schedules.tick(now=moment + 1)
    fired = [(r.trigger, r.fired_at) for r in runs_of(runtime, "dst")]
    if fired:
        problems.append(f"the first pass started runs for the past: {fired}")
    assert not problems, problems
