"""PostgreSQL restarts under load: workers reconnect by themselves and lose no run.

The test starts a private PostgreSQL cluster (never the shared one on port 5432) on a
free port, so that restarting it disturbs nothing else. PostgreSQL refuses to run as
root: as root, initdb and pg_ctl run as the ``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from runwright.model.runs import SubmitRequest
from tests.conftest import need_service
from tests.procs import (
    NOOP,
    Db,
    Processes,
    cli_env,
    free_port,
    read_ledger,
    run_cli,
    start_worker,
    submit_many,
    wait_for,
)

pytestmark = pytest.mark.slow

RUNS = 2000
LATE_RUNS = 20


def _bindir() -> Path | None:
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "initdb").exists():
        return preferred
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class Cluster:
    """A throwaway PostgreSQL cluster: trust auth, 127.0.0.1 only, no fsync."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
                f"\n{self.log_tail()}"
            )
        return done

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        sockets = self.root / "sockets"
        sockets.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(sockets, entry.pw_uid, entry.pw_gid)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sockets}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def restart(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "-m",
            "fast",
            "restart",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", "immediate", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture
def private_pg() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        need_service("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            need_service("running PostgreSQL as root needs runuser to switch to postgres")
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            need_service("running PostgreSQL as root needs a 'postgres' user")
            raise
    # Not under pytest's tmp_path: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="runwright-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bindir, root, free_port())
    started = False
    try:
        cluster.init()
        cluster.start()
        started = True
        yield cluster
    finally:
        if started:
            with contextlib.suppress(AssertionError):
                cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _succeeded(db: Db) -> int | None:
    """Succeeded runs, or None while the database is unreachable."""
    try:
        return db.status_counts().get("succeeded", 0)
    except sa.exc.DBAPIError:
        return None


def test_workers_survive_postgres_restarts(private_pg: Cluster, tmp_path: Path) -> None:
    url = private_pg.create_database("runwright")
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    upgraded = run_cli(["--database-url", url, "db", "upgrade"], cli_env(home), timeout=60)
    assert upgraded.returncode == 0, upgraded.stderr

    procs = Processes(tmp_path / "logs")
    db = Db(url)
    restarts: list[tuple[float, float]] = []  # (pg_ctl restart took, work resumed after)
    try:
        workers = [start_worker(procs, url, home, name=f"worker{i}") for i in range(2)]
        wait_for(
            lambda: db.scalar("SELECT count(*) FROM workers") == 2,
            timeout=20,
            what="both workers to register",
        )
        payload = {"ledger": str(ledger)}
        ids = submit_many(
            url, home, [SubmitRequest(type=NOOP, payload=payload) for _ in range(RUNS)]
        )
        started = time.monotonic()
        for fraction in (0.25, 0.6):
            wait_for(
                lambda f=fraction: (_succeeded(db) or 0) >= f * RUNS,
                timeout=60,
                interval=0.02,
                what=f"{fraction:.0%} of the runs to succeed",
            )
            before = time.monotonic()
            private_pg.restart()
            restarted = time.monotonic()
            at_restart = _succeeded(db) or 0
            wait_for(
                lambda n=at_restart: (_succeeded(db) or 0) > n,
                timeout=30,
                interval=0.02,
                what="a run to succeed after the restart",
            )
            restarts.append((restarted - before, time.monotonic() - restarted))
        wait_for(
            lambda: _succeeded(db) == RUNS, timeout=90, interval=0.1, what="all runs to succeed"
        )
        all_done = time.monotonic() - started
        assert all(p.alive() for p in workers), procs.tails()

        late = submit_many(
            url, home, [SubmitRequest(type=NOOP, payload=payload) for _ in range(LATE_RUNS)]
        )
        submitted = time.monotonic()
        wait_for(
            lambda: _succeeded(db) == RUNS + LATE_RUNS,
            timeout=20,
            interval=0.05,
            what="runs submitted after the restarts to succeed",
        )
        late_latency = time.monotonic() - submitted
        rows = db.rows("SELECT id, status, outcome, attempt FROM runs")
        assert all(p.alive() for p in workers), procs.tails()
        logs = [p.output() for p in workers]
    finally:
        procs.kill_all()
        db.close()

    executed = Counter(entry.run_id for entry in read_ledger(ledger))
    print(
        "\n"
        + "; ".join(
            f"restart {i + 1}: pg_ctl {took:.2f}s, work resumed {resumed:.2f}s later"
            for i, (took, resumed) in enumerate(restarts)
        )
        + f"\n{RUNS} runs done in {all_done:.1f}s; {LATE_RUNS} late runs in {late_latency:.2f}s"
        f"; {sum(1 for n in executed.values() if n > 1)} runs executed more than once"
    )
    assert sorted(row.id for row in rows) == sorted(ids + late)
    assert {row.status for row in rows} == {"succeeded"}, Counter(r.status for r in rows)
    assert set(executed) == set(ids + late), "a succeeded run has no execution in the ledger"
    assert not any("loop crashed" in log for log in logs), "\n".join(logs)
