"""The steps of multi-step runs: one row per run and step, updated as it runs."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import run_steps


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStep:
    run_id: int
    step_id: str
    position: int
    uses: str
    status: str
    attempt: int
    tries: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: str | None = None
    output_summary: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "position": self.position,
            "uses": self.uses,
            "status": self.status,
            "attempt": self.attempt,
            "tries": self.tries,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "error": self.error,
            "error_type": self.error_type,
            "output_summary": self.output_summary,
        }


_FIELDS = (
    "position",
    "uses",
    "status",
    "attempt",
    "tries",
    "started_at",
    "finished_at",
    "error",
    "error_type",
    "output_summary",
)


class RunStepRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    def record(self, step: RunStep) -> None:
        values = {name: getattr(step, name) for name in _FIELDS}
        statement = self._insert(run_steps).values(
            run_id=step.run_id, step_id=step.step_id, **values
        )
        statement = statement.on_conflict_do_update(
            index_elements=[run_steps.c.run_id, run_steps.c.step_id], set_=values
        )
        with translate_errors("record a step"), write(self.engine) as conn:
            conn.execute(statement)

    def list(self, run_id: int) -> builtins.list[RunStep]:
        query = (
            sa.select(run_steps)
            .where(run_steps.c.run_id == run_id)
            .order_by(run_steps.c.position, run_steps.c.step_id)
        )
        with translate_errors("list the steps of a run"), read(self.engine) as conn:
            return [
                RunStep(
                    run_id=row.run_id, step_id=row.step_id, **{n: getattr(row, n) for n in _FIELDS}
                )
                for row in conn.execute(query)
            ]
