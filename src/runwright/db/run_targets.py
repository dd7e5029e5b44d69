"""Per-target results of runs: one row per run, step and target, updated as it runs."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import run_targets


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTarget:
    run_id: int
    step_id: str  # '' for a script or package run
    target: str
    address: str
    status: str
    target_id: int | None = None
    credential: str | None = None
    credentials_tried: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    exit_status: int | None = None
    output: str | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = self.duration
        return data


_KEY = ("run_id", "step_id", "target")
_FIELDS = tuple(name for name in RunTarget.__dataclass_fields__ if name not in _KEY)


class RunTargetRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    def record(self, rows: Sequence[RunTarget]) -> None:
        """Insert or update many rows in one transaction."""
        if not rows:
            return
        statement = self._insert(run_targets)
        statement = statement.on_conflict_do_update(
            index_elements=[run_targets.c.run_id, run_targets.c.step_id, run_targets.c.target],
            set_={name: statement.excluded[name] for name in _FIELDS},
        )
        with translate_errors("record the targets of a run"), write(self.engine) as conn:
            conn.execute(statement, [asdict(row) for row in rows])

    def list(self, run_id: int) -> builtins.list[RunTarget]:
        query = (
            sa.select(run_targets).where(run_targets.c.run_id == run_id).order_by(run_targets.c.id)
        )
        with translate_errors("list the targets of a run"), read(self.engine) as conn:
            return [
                RunTarget(**{name: getattr(row, name) for name in _KEY + _FIELDS})
                for row in conn.execute(query)
            ]
