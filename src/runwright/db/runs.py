"""Run records: submit, read, list, cancel and the aggregates the API reports."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, Row

from runwright.db.engine import PG_NOW_SQL, db_now, is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import runs
from runwright.model.runs import Progress, Run, SubmitRequest
from runwright.model.states import Outcome, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    statuses: Sequence[RunStatus] = ()
    types: Sequence[str] = ()
    jobs: Sequence[str] = ()
    queues: Sequence[str] = ()
    before_id: int | None = None  # cursor: runs older than this id
    limit: int = 50


@dataclass(frozen=True, slots=True)
class CancelResult:
    run: Run
    changed: bool  # False when the run had already finished


def row_to_run(row: Row[Any]) -> Run:
    return Run(
        id=row.id,
        type=row.type,
        payload=row.payload,
        queue=row.queue,
        priority=row.priority,
        status=RunStatus(row.status),
        outcome=Outcome(row.outcome) if row.outcome else None,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        idempotency_key=row.idempotency_key,
        progress=Progress(percent=row.progress_percent, message=row.progress_message),
        result=row.result,
        error=row.error,
        worker_id=row.worker_id,
        cancel_requested=bool(row.cancel_requested),
        job=row.job,
        trigger=row.trigger,
        retry_of=row.retry_of,
        job_id=row.job_id,
        package_id=row.package_id,
        environment=row.environment,
        exit_code=row.exit_code,
        trigger_id=row.trigger_id,
        fired_at=row.fired_at,
        held=bool(row.held),
        log_count=row.log_count,
        created_at=row.created_at,
        scheduled_at=row.scheduled_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


HELD_UNTIL = 32503680000.0  # 3000-01-01: "not before it is released"

_RUN_COLUMNS = [
    c for c in runs.c if c.name not in {"lease_token", "lease_expires_at", "heartbeat_at"}
]


@functools.cache
def _pg_insert(names: tuple[str, ...]) -> str:
    """One run's INSERT for psycopg's executemany: the columns ``_values`` gives, with
    the database's clock for created_at, and for scheduled_at unless one is given."""
    return (
        f"INSERT INTO runs ({', '.join(names)}, created_at, scheduled_at) VALUES ("
        + ", ".join(f"%({name})s" for name in names)
        + f", {PG_NOW_SQL}, coalesce(%(scheduled_at)s::float8, {PG_NOW_SQL}))"
        + f" RETURNING {', '.join(c.name for c in _RUN_COLUMNS)}"
    )


class RunRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._now = db_now(engine)
        self._postgres = is_postgres(engine)
        self._insert = postgresql.insert(runs) if self._postgres else sqlite.insert(runs)

    def _values(self, request: SubmitRequest) -> dict[str, Any]:
        scheduled: Any = request.scheduled_at if request.scheduled_at is not None else self._now
        return {
            "type": request.type,
            "payload": request.payload,
            "queue": request.queue,
            "priority": request.priority,
            "status": RunStatus.QUEUED.value,
            "max_attempts": request.max_attempts,
            "timeout": request.timeout,
            "idempotency_key": request.idempotency_key,
            "job": request.job,
            "trigger": request.trigger,
            "retry_of": request.retry_of,
            "job_id": request.job_id,
            "package_id": request.package_id,
            "environment": request.environment,
            "trigger_id": request.trigger_id,
            "fired_at": request.fired_at,
            "held": request.held,
            "created_at": self._now,
            # A held run is out of the claim's reach until the scheduler releases it.
            "scheduled_at": HELD_UNTIL if request.held else scheduled,
        }

    def submit(self, request: SubmitRequest) -> tuple[Run, bool]:
        """Insert a queued run; with an idempotency key already used, return that run.

        The unique index decides, so two concurrent submits with one key make one run.
        Returns ``(run, created)``.
        """
        statement = (
            self._insert.values(**self._values(request))
            .on_conflict_do_nothing(index_elements=[runs.c.idempotency_key])
            .returning(*_RUN_COLUMNS)
        )
        with translate_errors("submit a run"), write(self.engine) as conn:
            row = conn.execute(statement).first()
            if row is None:
                existing = conn.execute(
                    sa.select(*_RUN_COLUMNS).where(
                        runs.c.idempotency_key == request.idempotency_key
                    )
                ).one()
                return row_to_run(existing), False
        return row_to_run(row), True

    def _many(self, requests: Sequence[SubmitRequest]) -> builtins.list[dict[str, Any]]:
        """Rows for an executemany insert: the database's clock fills created_at, and
        scheduled_at where the request names no time (see ``_many_insert``)."""
        rows = []
        for request in requests:
            values = self._values(request)
            values["created_at"] = None
            values["scheduled_at"] = HELD_UNTIL if request.held else request.scheduled_at
            rows.append(values)
        return rows

    def _many_insert(self) -> Any:
        return sa.insert(runs).values(
            created_at=self._now,
            scheduled_at=sa.func.coalesce(sa.bindparam("scheduled_at", type_=sa.Float), self._now),
        )

    def submit_many(self, requests: Sequence[SubmitRequest]) -> builtins.list[int]:
        """Insert many runs without idempotency keys in one transaction; returns their ids."""
        if not requests:
            return []
        statement = self._many_insert().returning(runs.c.id, sort_by_parameter_order=True)
        with translate_errors("submit runs"), write(self.engine) as conn:
            ids = list(conn.execute(statement, self._many(requests)).scalars())
        return ids

    def insert_on(
        self, conn: sa.Connection, requests: Sequence[SubmitRequest]
    ) -> builtins.list[Run]:
        """Insert runs without idempotency keys on the caller's transaction (which
        records more with them); returns them in the order given."""
        if not requests:
            return []
        if self._postgres:
            return self._insert_on_postgres(conn, requests)
        statement = self._many_insert().returning(*_RUN_COLUMNS, sort_by_parameter_order=True)
        return [row_to_run(row) for row in conn.execute(statement, self._many(requests))]

    def _insert_on_postgres(
        self, conn: sa.Connection, requests: Sequence[SubmitRequest]
    ) -> builtins.list[Run]:
        """psycopg's executemany with RETURNING: one short prepared statement sent for
        every run in one round trip. SQLAlchemy would send one INSERT with a VALUES
        row per run instead, a statement psycopg parses anew for every batch (half
        the cost of a batch of webhook calls)."""
        rows = self._many(requests)
        for row in rows:
            row["payload"] = Jsonb(row["payload"])
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor(row_factory=namedtuple_row) as cursor:
            names = tuple(k for k in rows[0] if k not in ("created_at", "scheduled_at"))
            cursor.executemany(_pg_insert(names), rows, returning=True)
            stored = []
            while True:
                stored.extend(cursor.fetchall())
                if not cursor.nextset():
                    break
        return [row_to_run(row) for row in stored]

    def submit_keyed(self, requests: Sequence[SubmitRequest]) -> dict[str, tuple[int, bool]]:
        """Insert many runs that all carry idempotency keys, in one transaction; a key
        already used keeps its run. Returns key -> (run id, created)."""
        keys = [r.idempotency_key for r in requests]
        if not requests or any(k is None for k in keys):
            raise ValueError("submit_keyed needs an idempotency key on every request")
        rows = self._many(requests)
        statement = self._insert.values(
            created_at=self._now,
            scheduled_at=sa.func.coalesce(sa.bindparam("scheduled_at", type_=sa.Float), self._now),
        ).on_conflict_do_nothing(index_elements=[runs.c.idempotency_key])
        lookup = sa.select(runs.c.idempotency_key, runs.c.id).where(
            runs.c.idempotency_key.in_(keys)
        )
        with translate_errors("submit runs"), write(self.engine) as conn:
            before = {key for key, _ in conn.execute(lookup)}
            conn.execute(statement, rows)
            after = {key: run_id for key, run_id in conn.execute(lookup)}
        return {key: (after[key], key not in before) for key in after}

    def get(self, run_id: int) -> Run | None:
        with translate_errors("read a run"), read(self.engine) as conn:
            row = conn.execute(sa.select(*_RUN_COLUMNS).where(runs.c.id == run_id)).first()
        return None if row is None else row_to_run(row)

    def by_idempotency_key(self, key: str) -> Run | None:
        with translate_errors("read a run"), read(self.engine) as conn:
            row = conn.execute(
                sa.select(*_RUN_COLUMNS).where(runs.c.idempotency_key == key)
            ).first()
        return None if row is None else row_to_run(row)

    def list(self, query: RunFilter) -> builtins.list[Run]:
        statement = sa.select(*_RUN_COLUMNS).order_by(runs.c.id.desc()).limit(query.limit)
        if query.statuses:
            statement = statement.where(runs.c.status.in_([s.value for s in query.statuses]))
        if query.types:
            statement = statement.where(runs.c.type.in_(list(query.types)))
        if query.jobs:
            statement = statement.where(runs.c.job.in_(list(query.jobs)))
        if query.queues:
            statement = statement.where(runs.c.queue.in_(list(query.queues)))
        if query.before_id is not None:
            statement = statement.where(runs.c.id < query.before_id)
        with translate_errors("list runs"), read(self.engine) as conn:
            return [row_to_run(row) for row in conn.execute(statement)]

    def cancel(self, run_id: int) -> CancelResult | None:
        """Cancel a queued run at once; flag a running one for its worker to stop."""
        with translate_errors("cancel a run"), write(self.engine) as conn:
            row = conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
                .values(
                    status=RunStatus.CANCELED.value,
                    outcome=Outcome.CANCELED.value,
                    finished_at=self._now,
                    cancel_requested=True,
                )
                .returning(*_RUN_COLUMNS)
            ).first()
            if row is None:
                row = conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
                    .values(cancel_requested=True)
                    .returning(*_RUN_COLUMNS)
                ).first()
            if row is not None:
                return CancelResult(run=row_to_run(row), changed=True)
            current = conn.execute(sa.select(*_RUN_COLUMNS).where(runs.c.id == run_id)).first()
        if current is None:
            return None
        return CancelResult(run=row_to_run(current), changed=False)

    def resume(self, run_id: int, *, types: Sequence[str]) -> Run | None:
        """Queue a failed or canceled run again as its next attempt (None: not allowed)."""
        with translate_errors("resume a run"), write(self.engine) as conn:
            row = conn.execute(
                sa.update(runs)
                .where(
                    runs.c.id == run_id,
                    runs.c.status.in_([RunStatus.FAILED.value, RunStatus.CANCELED.value]),
                    runs.c.type.in_(list(types)),
                )
                .values(
                    status=RunStatus.QUEUED.value,
                    outcome=None,
                    error=None,
                    result=None,
                    finished_at=None,
                    worker_id=None,
                    lease_expires_at=None,
                    heartbeat_at=None,
                    cancel_requested=False,
                    progress_percent=None,
                    progress_message=None,
                    max_attempts=runs.c.attempt + 1,
                    scheduled_at=self._now,
                )
                .returning(*_RUN_COLUMNS)
            ).first()
            if row is not None and is_postgres(self.engine):
                # The new-run trigger fires on INSERT only: wake the workers ourselves.
                conn.execute(sa.text("SELECT pg_notify('runwright_runs', '')"))
        return None if row is None else row_to_run(row)

    def counts(self) -> builtins.list[tuple[str, str, int]]:
        """(queue, status, count) for every pair present."""
        statement = sa.select(runs.c.queue, runs.c.status, sa.func.count()).group_by(
            runs.c.queue, runs.c.status
        )
        with translate_errors("count runs"), read(self.engine) as conn:
            return [(q, s, int(n)) for q, s, n in conn.execute(statement)]

    def duration_buckets(self, bounds: Sequence[float]) -> tuple[builtins.list[int], int, float]:
        """Cumulative counts of finished runs' durations at or under each bound,
        the total count and the sum of durations."""
        duration = runs.c.finished_at - runs.c.started_at
        columns: builtins.list[Any] = [
            sa.func.sum(sa.case((duration <= bound, 1), else_=0)) for bound in bounds
        ]
        columns += [sa.func.count(), sa.func.coalesce(sa.func.sum(duration), 0.0)]
        statement = sa.select(*columns).where(
            runs.c.finished_at.is_not(None), runs.c.started_at.is_not(None)
        )
        with translate_errors("measure run durations"), read(self.engine) as conn:
            row = conn.execute(statement).one()
        values = list(row)
        return [int(v or 0) for v in values[:-2]], int(values[-2]), float(values[-1])
