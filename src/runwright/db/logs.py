"""Log lines of runs: written in batches (COPY on PostgreSQL), read in pages."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import log_lines, runs
from runwright.model.logs import LEVEL_ORDER, Level
from runwright.model.runs import LogLine

_COLUMNS = ("run_id", "seq", "ts", "stream", "level", "message", "step", "target")
_COPY = f"COPY log_lines ({', '.join(_COLUMNS)}) FROM STDIN"
_INSERT = f"INSERT INTO log_lines ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class LogRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = is_postgres(engine)

    def append(self, lines: Sequence[LogLine]) -> None:
        """Store a batch of lines in one transaction (the log-capture hot path)."""
        if not lines:
            return
        with translate_errors("store log lines"), write(self.engine) as conn:
            if self._postgres:
                # COPY is several times faster than INSERT for a batch of lines.
                dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
                with dbapi.cursor() as cursor, cursor.copy(_COPY) as copy:
                    for line in lines:
                        copy.write_row(line)
            else:
                # The driver's executemany on tuples: a fifth of the cost of building
                # a dict per line for SQLAlchemy.
                conn.exec_driver_sql(_INSERT, list(lines))

    def page(
        self,
        run_id: int,
        *,
        after: int = 0,
        limit: int = 1000,
        min_level: Level | None = None,
    ) -> builtins.list[LogLine]:
        """Lines with ``seq > after`` in order, optionally at or above a level."""
        where = ""
        if min_level is not None:
            wanted = [
                lvl.value for lvl, rank in LEVEL_ORDER.items() if rank >= LEVEL_ORDER[min_level]
            ]
            # Level names are our own constants, safe to write into the statement.
            where = " AND level IN (" + ", ".join(f"'{name}'" for name in wanted) + ")"
        mark = "%s" if self._postgres else "?"
        # Plain SQL through the driver: live followers read thousands of lines a second,
        # and SQLAlchemy's row processing would cost more than the query.
        statement = (
            f"SELECT {', '.join(_COLUMNS)} FROM log_lines WHERE run_id = {mark} AND seq > {mark}"
            f"{where} ORDER BY seq LIMIT {mark}"
        )
        with translate_errors("read log lines"), read(self.engine) as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(statement, (run_id, after, limit))
                rows = cursor.fetchall()
            finally:
                cursor.close()
        return list(map(LogLine._make, rows))

    def last_seq(self, run_id: int) -> int:
        with translate_errors("read log lines"), read(self.engine) as conn:
            value: Any = conn.execute(
                sa.select(sa.func.max(log_lines.c.seq)).where(log_lines.c.run_id == run_id)
            ).scalar()
        return int(value or 0)

    def set_count(self, run_id: int, count: int, exit_code: int | None) -> None:
        with translate_errors("record the run's output"), write(self.engine) as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(log_count=count, exit_code=exit_code)
            )
