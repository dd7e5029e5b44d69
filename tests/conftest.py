"""Real databases for every test that touches the queue: a SQLite file and a fresh
PostgreSQL database per test, each copied from a template migrated once per session."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from runwright.config import Settings
from runwright.db.engine import create_engine
from runwright.db.schema import upgrade

if TYPE_CHECKING:
    from tests.sshserver import SshServer

PG_SERVER = os.environ.get("RUNWRIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pg_url(database: str) -> str:
    return f"{PG_SERVER}/{database}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg_url("postgres"), autocommit=True, connect_timeout=5)


def need_service(reason: str) -> None:
    """With CI=true a missing service fails the test; elsewhere it skips it."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a test never skips a service it needs)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"rw_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        need_service(f"PostgreSQL at {PG_SERVER} is not reachable: {exc}")
    engine = create_engine(pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def make_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "runwright.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"rw_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield pg_url(name)
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: once on SQLite, once on PostgreSQL."""
    yield from make_database(request.param, request, tmp_path)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings with short timings so that leases, retries and polls fit in a test."""
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        heartbeat_interval=0.2,
        lease_timeout=1.5,
        poll_interval=0.2,
        shutdown_grace=2.0,
        retry_base=0.05,
        retry_cap=0.2,
    )


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SshServer]:
    """A real OpenSSH server on loopback with a local user ``rwtest`` (tests/sshserver.py):
    one per test process, so each xdist worker has its own."""
    from tests.sshserver import serve_or_need

    yield from serve_or_need()
