"""Variables for step references: global (job id 0) and per job."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import variables

GLOBAL = 0


@dataclass(frozen=True, slots=True)
class StoredVariable:
    job_id: int
    name: str
    value: str  # JSON text, or a Fernet token when sensitive
    sensitive: bool
    description: str
    created_at: float
    updated_at: float


def _row(row: Any) -> StoredVariable:
    return StoredVariable(
        job_id=row.job_id,
        name=row.name,
        value=row.value,
        sensitive=bool(row.sensitive),
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class VariableRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    def set(
        self,
        job_id: int,
        name: str,
        value: str,
        *,
        sensitive: bool,
        description: str,
        now: float,
    ) -> None:
        statement = self._insert(variables).values(
            job_id=job_id,
            name=name,
            value=value,
            sensitive=sensitive,
            description=description,
            created_at=now,
            updated_at=now,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[variables.c.job_id, variables.c.name],
            set_={
                "value": value,
                "sensitive": sensitive,
                "description": description,
                "updated_at": now,
            },
        )
        with translate_errors("save the variable"), write(self.engine) as conn:
            conn.execute(statement)

    def delete(self, job_id: int, name: str) -> bool:
        with translate_errors("delete the variable"), write(self.engine) as conn:
            result = conn.execute(
                sa.delete(variables).where(variables.c.job_id == job_id, variables.c.name == name)
            )
        return result.rowcount > 0

    def list(self, job_ids: builtins.list[int] | None = None) -> builtins.list[StoredVariable]:
        query = sa.select(variables).order_by(variables.c.job_id, variables.c.name)
        if job_ids is not None:
            query = query.where(variables.c.job_id.in_(job_ids))
        with translate_errors("list variables"), read(self.engine) as conn:
            return [_row(row) for row in conn.execute(query)]
