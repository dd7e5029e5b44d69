"""Schedules and their fire records."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import jobs, runs, schedule_fires, schedules


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    id: int
    job_id: int
    job: str
    cron: str
    timezone: str
    start_at: float | None
    end_at: float | None
    params: dict[str, Any]
    environment: str | None
    misfire: str
    enabled: bool
    description: str
    next_fire_at: float | None
    last_fire_at: float | None
    last_run_id: int | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    schedule_id: int
    fire_time: float
    status: str  # started, skipped, failed
    run_id: int | None
    reason: str | None
    created_at: float


def _schedule(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        job_id=row.job_id,
        job=row.job_name,
        cron=row.cron,
        timezone=row.timezone,
        start_at=row.start_at,
        end_at=row.end_at,
        params=dict(row.params or {}),
        environment=row.environment,
        misfire=row.misfire,
        enabled=bool(row.enabled),
        description=row.description,
        next_fire_at=row.next_fire_at,
        last_fire_at=row.last_fire_at,
        last_run_id=row.last_run_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_SELECT = sa.select(schedules, jobs.c.name.label("job_name")).join(
    jobs, jobs.c.id == schedules.c.job_id
)


class ScheduleRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = is_postgres(engine)
        self._insert = postgresql.insert if self._postgres else sqlite.insert

    def create(self, values: dict[str, Any]) -> Schedule:
        with translate_errors("create a schedule"), write(self.engine) as conn:
            new_id = conn.execute(
                sa.insert(schedules).values(**values).returning(schedules.c.id)
            ).scalar_one()
        found = self.get(new_id)
        assert found is not None
        return found

    def get(self, schedule_id: int) -> Schedule | None:
        with translate_errors("read a schedule"), read(self.engine) as conn:
            row = conn.execute(_SELECT.where(schedules.c.id == schedule_id)).first()
        return None if row is None else _schedule(row)

    def list(self, job_id: int | None = None) -> builtins.list[Schedule]:
        query = _SELECT.order_by(schedules.c.id)
        if job_id is not None:
            query = query.where(schedules.c.job_id == job_id)
        with translate_errors("list schedules"), read(self.engine) as conn:
            return [_schedule(row) for row in conn.execute(query)]

    def update(self, schedule_id: int, values: dict[str, Any]) -> bool:
        with translate_errors("change a schedule"), write(self.engine) as conn:
            result = conn.execute(
                sa.update(schedules).where(schedules.c.id == schedule_id).values(**values)
            )
        return result.rowcount > 0

    def delete(self, schedule_id: int) -> bool:
        with translate_errors("delete a schedule"), write(self.engine) as conn:
            conn.execute(
                sa.delete(schedule_fires).where(schedule_fires.c.schedule_id == schedule_id)
            )
            result = conn.execute(sa.delete(schedules).where(schedules.c.id == schedule_id))
        return result.rowcount > 0

    @contextlib.contextmanager
    def due(
        self, now: float, limit: int
    ) -> Iterator[tuple[Connection | None, builtins.list[Schedule]]]:
        """Enabled schedules whose fire time has come. On PostgreSQL their rows stay
        locked (``FOR UPDATE SKIP LOCKED``) until the block ends, so that several
        scheduler processes share the work instead of doing it twice; the connection
        given is the one holding the locks. SQLite has one writer at a time: no lock
        is held (None), and the compare-and-set in ``advance`` and the unique fire
        record keep two processes from firing twice."""
        query = (
            _SELECT.where(
                schedules.c.enabled.is_(True),
                schedules.c.next_fire_at.is_not(None),
                schedules.c.next_fire_at <= now,
            )
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=schedules)
            with translate_errors("fire schedules"), write(self.engine) as conn:
                yield conn, [_schedule(row) for row in conn.execute(query)]
            return
        with translate_errors("fire schedules"), read(self.engine) as conn:
            found = [_schedule(row) for row in conn.execute(query)]
        yield None, found

    def next_due(self) -> float | None:
        """The earliest fire time of the enabled schedules (the partial index has it)."""
        query = sa.select(sa.func.min(schedules.c.next_fire_at)).where(
            schedules.c.enabled.is_(True), schedules.c.next_fire_at.is_not(None)
        )
        with translate_errors("find the next fire time"), read(self.engine) as conn:
            found = conn.execute(query).scalar()
        return None if found is None else float(found)

    @contextlib.contextmanager
    def _on(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with translate_errors("record a fire"), write(self.engine) as own:
            yield own

    def record_fires(
        self, conn: Connection | None, fires: builtins.list[Fire]
    ) -> builtins.list[Fire]:
        """Record many fires at once; returns those recorded here (not by another
        scheduler first)."""
        if not fires:
            return []
        keys = sa.tuple_(schedule_fires.c.schedule_id, schedule_fires.c.fire_time)
        wanted = [(f.schedule_id, f.fire_time) for f in fires]
        statement = self._insert(schedule_fires).on_conflict_do_nothing(
            index_elements=[schedule_fires.c.schedule_id, schedule_fires.c.fire_time]
        )
        rows = [
            {
                "schedule_id": f.schedule_id,
                "fire_time": f.fire_time,
                "status": f.status,
                "run_id": f.run_id,
                "reason": f.reason,
                "created_at": f.created_at,
            }
            for f in fires
        ]
        with self._on(conn) as target:
            before = set()
            for chunk in range(0, len(wanted), 500):
                before |= {
                    (row[0], row[1])
                    for row in target.execute(
                        sa.select(schedule_fires.c.schedule_id, schedule_fires.c.fire_time).where(
                            keys.in_(wanted[chunk : chunk + 500])
                        )
                    )
                }
            target.execute(statement, rows)
        return [f for f in fires if (f.schedule_id, f.fire_time) not in before]

    def advance_many(
        self,
        conn: Connection | None,
        moves: builtins.list[tuple[Schedule, float | None, float | None, int | None]],
    ) -> None:
        """(schedule, next fire, last fire, last run) for many schedules, each a
        compare-and-set on the fire time it was read with."""
        if not moves:
            return
        statement = (
            sa.update(schedules)
            .where(
                schedules.c.id == sa.bindparam("b_id"),
                schedules.c.next_fire_at == sa.bindparam("b_old", type_=sa.Float),
            )
            .values(
                next_fire_at=sa.bindparam("b_next", type_=sa.Float),
                last_fire_at=sa.func.coalesce(
                    sa.bindparam("b_last", type_=sa.Float), schedules.c.last_fire_at
                ),
                last_run_id=sa.func.coalesce(
                    sa.bindparam("b_run", type_=sa.BigInteger), schedules.c.last_run_id
                ),
            )
        )
        rows = [
            {
                "b_id": schedule.id,
                "b_old": schedule.next_fire_at,
                "b_next": next_fire,
                "b_last": last_fire,
                "b_run": last_run,
            }
            for schedule, next_fire, last_fire, last_run in moves
        ]
        with self._on(conn) as target:
            # One statement for all (executemany): a compare-and-set per schedule.
            target.execute(statement, rows)

    def fires(self, schedule_id: int, limit: int = 20) -> builtins.list[Fire]:
        query = (
            sa.select(schedule_fires)
            .where(schedule_fires.c.schedule_id == schedule_id)
            .order_by(schedule_fires.c.fire_time.desc())
            .limit(limit)
        )
        with translate_errors("list fires"), read(self.engine) as conn:
            return [
                Fire(
                    schedule_id=row.schedule_id,
                    fire_time=row.fire_time,
                    status=row.status,
                    run_id=row.run_id,
                    reason=row.reason,
                    created_at=row.created_at,
                )
                for row in conn.execute(query)
            ]

    def next_fires(self, limit: int = 10) -> builtins.list[tuple[Schedule, float]]:
        """The schedules that fire soonest (for the dashboard)."""
        query = (
            _SELECT.where(schedules.c.enabled.is_(True), schedules.c.next_fire_at.is_not(None))
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
        )
        with translate_errors("list upcoming fires"), read(self.engine) as conn:
            return [
                (schedule, schedule.next_fire_at or 0.0)
                for schedule in (_schedule(row) for row in conn.execute(query))
            ]


def release_held(engine: Engine, now: float) -> builtins.list[int]:
    """Release, for each job with held runs and no other active run, its oldest held
    run (concurrency ``queue``). Returns the released run ids."""
    postgres = is_postgres(engine)
    with translate_errors("release queued runs"), read(engine) as conn:
        job_ids = [
            row[0]
            for row in conn.execute(
                sa.select(runs.c.job_id)
                .where(runs.c.held.is_(True), runs.c.status == "queued")
                .distinct()
            )
        ]
    released: builtins.list[int] = []
    for job_id in job_ids:
        with translate_errors("release a queued run"), write(engine) as conn:
            if postgres:
                # One releaser per job at a time: the check below must see the last release.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(4_200_000 + job_id)))
            active = conn.execute(
                sa.select(runs.c.id)
                .where(
                    runs.c.job_id == job_id,
                    runs.c.status.in_(["queued", "running"]),
                    runs.c.held.is_(False),
                )
                .limit(1)
            ).first()
            if active is not None:
                continue
            oldest = (
                sa.select(sa.func.min(runs.c.id))
                .where(runs.c.job_id == job_id, runs.c.held.is_(True), runs.c.status == "queued")
                .scalar_subquery()
            )
            row = conn.execute(
                sa.update(runs)
                .where(runs.c.id == oldest, runs.c.held.is_(True))
                .values(held=False, scheduled_at=now)
                .returning(runs.c.id)
            ).first()
            if row is not None:
                released.append(row[0])
                if postgres:
                    conn.execute(sa.text("SELECT pg_notify('runwright_runs', '')"))
    return released
