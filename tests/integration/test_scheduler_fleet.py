"""Three `runwright scheduler` processes on one PostgreSQL database for about a minute,
firing one-second schedules: every fire time of every schedule makes exactly one run
(no gap, no duplicate) and one fire record, even when one scheduler is SIGKILLed
halfway and another one takes its place."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwright.config import Settings
from runwright.services.jobs import JobSettings
from runwright.services.runtime import Runtime
from runwright.services.schedules import ScheduleSpec
from tests.conftest import make_database
from tests.procs import Db, Processes, cli_env, stub_registry, wait_for

pytestmark = pytest.mark.slow

TICK = "fleet.tick"
SCHEDULES = 4
RUN_FOR = 60.0  # seconds of firing


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from make_database("postgres", request, tmp_path)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path / "logs")
    try:
        yield started
    finally:
        started.kill_all()


def test_a_fleet_of_schedulers_fires_every_second_exactly_once(
    postgres_url: str, tmp_path: Path, procs: Processes
) -> None:
    home = tmp_path / "home"
    runtime = Runtime.open(
        Settings(home=home, database_url=postgres_url), registry=stub_registry([TICK])
    )
    try:
        runtime.jobs.create("fleet", JobSettings(kind="task", task_type=TICK))
        schedules = [
            runtime.schedules.create(
                "fleet", ScheduleSpec(cron="* * * * * *", params={"lane": lane})
            )
            for lane in range(SCHEDULES)
        ]
        first_due = {s.id: s.next_fire_at for s in schedules}

        env = cli_env(home)
        args = ["--database-url", postgres_url, "scheduler"]
        fleet = [procs.start(f"scheduler-{i}", args, env) for i in range(3)]
        db = Db(postgres_url)
        try:

            def firing() -> bool:
                for proc in fleet:
                    assert proc.alive(), procs.tails()
                return bool(db.scalar("SELECT count(*) FROM schedule_fires") >= SCHEDULES)

            wait_for(firing, timeout=60, interval=0.2, what="the schedulers to fire")
            started = time.monotonic()
            time.sleep(RUN_FOR / 2)
            fleet[0].kill()  # at any point of its pass: its transaction is rolled back
            fleet.append(procs.start("scheduler-3", args, env))
            time.sleep(RUN_FOR - (time.monotonic() - started))
            for proc in fleet[1:]:
                assert proc.alive(), procs.tails()

            # Stop firing before stopping the processes: the check below is about the
            # fleet, not about what a process stopped mid-pass leaves behind.
            for schedule in schedules:
                runtime.schedules.set_enabled(schedule.id, False)
            time.sleep(1.5)
            for proc in fleet[1:]:
                proc.signal(signal.SIGTERM)
            for proc in fleet[1:]:
                assert proc.wait(timeout=30) is not None, procs.tails()

            for schedule in schedules:
                fired = [
                    row.fired_at
                    for row in db.rows(
                        "SELECT fired_at FROM runs WHERE trigger = 'schedule' "
                        "AND trigger_id = :id ORDER BY fired_at",
                        id=schedule.id,
                    )
                ]
                assert len(fired) >= RUN_FOR * 0.8, (schedule.id, len(fired), procs.tails())
                assert len(set(fired)) == len(fired), f"duplicate fires of {schedule.id}"
                gaps = [(a, b) for a, b in itertools.pairwise(fired) if b - a != 1.0]
                assert not gaps, f"schedule {schedule.id} skipped or repeated: {gaps[:5]}"
                assert fired[0] == first_due[schedule.id]  # late starts are caught up

                records = db.rows(
                    "SELECT fire_time, status, run_id FROM schedule_fires "
                    "WHERE schedule_id = :id ORDER BY fire_time",
                    id=schedule.id,
                )
                assert [r.fire_time for r in records] == fired
                assert {r.status for r in records} == {"started"}
                by_fire = {
                    row.fired_at: row.id
                    for row in db.rows(
                        "SELECT id, fired_at FROM runs WHERE trigger_id = :id", id=schedule.id
                    )
                }
                assert all(by_fire[r.fire_time] == r.run_id for r in records)
                lanes = db.rows(
                    "SELECT DISTINCT payload FROM runs WHERE trigger_id = :id", id=schedule.id
                )
                assert [row.payload for row in lanes] == [{"lane": schedules.index(schedule)}]
            assert db.scalar("SELECT count(*) FROM runs WHERE trigger <> 'schedule'") == 0
            for proc in fleet:
                assert "Traceback" not in proc.output(), proc.output()[-3000:]
        finally:
            db.close()
    finally:
        runtime.close()
