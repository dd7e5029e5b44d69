"""The registry of worker processes and the task types they serve."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runwright.db.engine import db_now, is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import runs, task_types, workers
from runwright.model.runs import WorkerInfo
from runwright.model.states import RunStatus


class WorkerRegistry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._now = db_now(engine)
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    def register(
        self,
        *,
        worker_id: str,
        hostname: str,
        pid: int,
        queues: Sequence[str],
        concurrency: int,
        types: Sequence[str],
    ) -> None:
        with translate_errors("register the worker"), write(self.engine) as conn:
            conn.execute(
                sa.insert(workers).values(
                    id=worker_id,
                    hostname=hostname,
                    pid=pid,
                    queues=list(queues),
                    concurrency=concurrency,
                    task_types=sorted(types),
                    started_at=self._now,
                    heartbeat_at=self._now,
                )
            )
            self._record_types(conn, types)

    def record_task_types(self, types: Sequence[str]) -> None:
        with translate_errors("record task types"), write(self.engine) as conn:
            self._record_types(conn, types)

    def _record_types(self, conn: sa.Connection, types: Sequence[str]) -> None:
        for name in sorted(set(types)):
            statement = self._insert(task_types).values(name=name, last_seen_at=self._now)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[task_types.c.name],
                    set_={"last_seen_at": self._now},
                )
            )

    def mark_stopping(self, worker_id: str) -> None:
        with translate_errors("mark the worker as stopping"), write(self.engine) as conn:
            conn.execute(sa.update(workers).where(workers.c.id == worker_id).values(stopping=True))

    def deregister(self, worker_id: str) -> None:
        with translate_errors("deregister the worker"), write(self.engine) as conn:
            conn.execute(sa.delete(workers).where(workers.c.id == worker_id))

    def live(self, max_age: float) -> list[WorkerInfo]:
        """Workers that sent a heartbeat within ``max_age`` seconds, with their running runs."""
        running = (
            sa.select(runs.c.worker_id, sa.func.count().label("n"))
            .where(runs.c.status == RunStatus.RUNNING.value)
            .group_by(runs.c.worker_id)
            .subquery()
        )
        statement = (
            sa.select(workers, sa.func.coalesce(running.c.n, 0).label("running"))
            .outerjoin(running, running.c.worker_id == workers.c.id)
            .where(workers.c.heartbeat_at >= self._now - max_age)
            .order_by(workers.c.started_at)
        )
        with translate_errors("list workers"), read(self.engine) as conn:
            rows = conn.execute(statement).all()
        return [
            WorkerInfo(
                id=row.id,
                hostname=row.hostname,
                pid=row.pid,
                queues=tuple(row.queues),
                concurrency=row.concurrency,
                task_types=tuple(row.task_types),
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                running=int(row.running),
            )
            for row in rows
        ]

    def purge_dead(self, max_age: float) -> int:
        """Forget workers silent for ``max_age`` seconds (their runs are recovered elsewhere)."""
        with translate_errors("forget dead workers"), write(self.engine) as conn:
            result = conn.execute(
                sa.delete(workers).where(workers.c.heartbeat_at < self._now - max_age)
            )
        return int(result.rowcount)

    def known_task_types(self) -> list[str]:
        with translate_errors("list task types"), read(self.engine) as conn:
            return list(
                conn.execute(sa.select(task_types.c.name).order_by(task_types.c.name)).scalars()
            )
