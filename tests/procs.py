"""Subprocess plumbing for the crash, restart and end-to-end tests.

Every process is started in its own session (its own process group) so that a test can
signal it, and everything a test started is killed in its ``finally``/fixture teardown.
Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from runwright.config import Settings
from runwright.db.engine import create_engine
from runwright.model.runs import SubmitRequest
from runwright.services.runtime import Runtime
from runwright.worker.registry import TaskRegistry, TaskSpec

REPO = Path(__file__).resolve().parent.parent
RUNWRIGHT = str(REPO / ".venv" / "bin" / "runwright")

HEARTBEAT_INTERVAL = 0.3
LEASE_TIMEOUT = 2.0
FAST_TIMINGS = {
    "RUNWRIGHT_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
    "RUNWRIGHT_LEASE_TIMEOUT": f"{LEASE_TIMEOUT:g}",
    "RUNWRIGHT_POLL_INTERVAL": "0.2",
    "RUNWRIGHT_RETRY_BASE": "0.05",
    "RUNWRIGHT_RETRY_CAP": "0.2",
}

# The task types of tests/tasks_crash.py, by name: importing that module here would register
# them in the test process's global default registry.
WORK, SLEEP, NOOP = "crash.work", "crash.sleep", "crash.noop"
CRASH_TYPES = (WORK, SLEEP, NOOP)

T = TypeVar("T")


# -- environment and one-shot commands ---------------------------------------------------
def cli_env(home: Path, *, fast: bool = True, **extra: str | None) -> dict[str, str]:
    """The environment of a runwright subprocess: no RUNWRIGHT_* leaking in from outside,
    ``tests.`` importable, wide plain output, and (by default) short timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWRIGHT_")}
    env.update(
        PYTHONPATH=str(REPO),
        RUNWRIGHT_HOME=str(home),
        COLUMNS="200",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    if fast:
        env.update(FAST_TIMINGS)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``runwright ARGS`` to completion (bounded by ``timeout``)."""
    return subprocess.run(
        [RUNWRIGHT, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# -- long-running processes ----------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    killed_at: float | None = None  # epoch seconds once SIGKILLed and reaped

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Signal the whole process group (no-op once it has been reaped)."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> float:
        """SIGKILL, reap, and return the epoch time by which the process was dead."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.killed_at = time.time()
        return self.killed_at

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None when still running after ``timeout`` s."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Processes:
    """The processes one test started; ``kill_all`` in a finally or fixture teardown."""

    logs: Path
    started: list[Proc] = field(default_factory=list)

    def start(
        self, name: str, args: Sequence[str], env: Mapping[str, str], *, program: str = RUNWRIGHT
    ) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{len(self.started):02d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [program, *args],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO,
            )
        proc = Proc(name=name, popen=popen, log=log)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            proc.signal(signal.SIGCONT)  # a stopped process cannot act on SIGKILL's exit
            proc.signal(signal.SIGKILL)
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)

    def tails(self, lines: int = 15) -> str:
        """The end of every process's output, for failure messages."""
        parts = []
        for proc in self.started:
            text = proc.output().splitlines()[-lines:]
            parts.append(f"--- {proc.name} (pid {proc.pid}) ---\n" + "\n".join(text))
        return "\n".join(parts)


def start_worker(
    procs: Processes,
    database_url: str,
    home: Path,
    *,
    concurrency: int = 4,
    tasks: str = "tests.tasks_crash",
    name: str = "worker",
    **env: str | None,
) -> Proc:
    return procs.start(
        name,
        [
            "--database-url",
            database_url,
            "worker",
            "--concurrency",
            str(concurrency),
            "--tasks",
            tasks,
        ],
        cli_env(home, **env),
    )


# -- the database, seen from the test process ----------------------------------------------
def stub_registry(names: Sequence[str] = CRASH_TYPES) -> TaskRegistry:
    """Task types known by name only: the test process submits, it never executes."""
    registry = TaskRegistry()
    for name in names:
        registry.register(TaskSpec(name=name, func=_never_called))
    return registry


def _never_called(ctx: Any) -> None:
    raise AssertionError("the test process does not execute runs")


def submit_many(database_url: str, home: Path, requests: Sequence[SubmitRequest]) -> list[int]:
    names = sorted({*CRASH_TYPES, *(r.type for r in requests)})
    runtime = Runtime.open(
        Settings(home=home, database_url=database_url), registry=stub_registry(names)
    )
    try:
        return runtime.runs.submit_many(requests)
    finally:
        runtime.close()


class Db:
    """Read-only SQL against the runs and workers tables (closed with ``close``)."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def status_counts(self) -> dict[str, int]:
        return {
            row.status: int(row.n)
            for row in self.rows("SELECT status, count(*) AS n FROM runs GROUP BY status")
        }

    def run(self, run_id: int) -> Any:
        return self.rows(
            "SELECT id, status, outcome, attempt, max_attempts, result, error, worker_id, "
            "lease_token, started_at, finished_at FROM runs WHERE id = :id",
            id=run_id,
        )[0]

    def wait_status(self, run_id: int, statuses: Sequence[str], *, timeout: float) -> Any:
        """The run's row once its status is one of ``statuses``."""

        def reached() -> Any:
            row = self.run(run_id)
            return row if row.status in statuses else None

        return wait_for(reached, timeout=timeout, what=f"run {run_id} to be {'/'.join(statuses)}")

    def wait_final(self, run_id: int, *, timeout: float) -> Any:
        return self.wait_status(run_id, ("succeeded", "failed", "canceled"), timeout=timeout)

    def close(self) -> None:
        self.engine.dispose()


# -- the ledger the crash tasks write ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Entry:
    event: str
    run_id: int
    attempt: int
    pid: int
    at: float


def read_ledger(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        event, run_id, attempt, pid, at = line.split()
        entries.append(Entry(event, int(run_id), int(attempt), int(pid), float(at)))
    return entries
