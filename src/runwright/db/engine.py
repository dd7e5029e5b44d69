"""Engines for SQLite (WAL, immediate write transactions) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from runwright.errors import ConfigError

WRITE_OPTION = "runwright_write"


def normalize_url(url: str) -> str:
    """Accept the URLs people type (``postgresql://``, ``postgres://``) and pick psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, worker: bool = False) -> Engine:
    """An engine for ``url``. ``worker=True`` gives a worker's queue connections on
    PostgreSQL asynchronous commit: a claim, heartbeat or completion is acknowledged
    before its WAL is flushed. A database *crash* (not a restart) can then forget the
    last few milliseconds of them; leases make such runs run again (at least once)."""
    url = normalize_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"RUNWRIGHT_DATABASE_URL {url!r} is not a database URL; "
            "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"options": "-c synchronous_commit=off"} if worker else {}
        return sa.create_engine(
            parsed,
            pool_size=10,
            max_overflow=20,
            pool_recycle=3600,
            connect_args=connect_args,
        )
    raise ConfigError(
        f"Database {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL."
    )


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=10,
        max_overflow=20,
        poolclass=sa.pool.QueuePool,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Manage transactions ourselves so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that later writes can fail with SQLITE_BUSY without
        # waiting; writers therefore take the write lock when they begin.
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on success, rolled back on error."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


PG_NOW_SQL = "extract(epoch from clock_timestamp())::float8"


def db_now(engine: Engine) -> sa.ColumnElement[float]:
    """The database clock as epoch seconds: leases are judged by it, not by hosts' clocks."""
    if is_postgres(engine):
        return sa.literal_column(PG_NOW_SQL, sa.Float)
    return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
