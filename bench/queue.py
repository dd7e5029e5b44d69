"""Queue benchmark: drain and end-to-end throughput, and pickup latency, of runwright.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python bench/queue.py [--databases sqlite,postgres] [--runs 5000]
        [--latency-runs 200] [--concurrency 16]

Prints one JSON line per database (and per worker concurrency, given a list) on stdout
and progress on stderr. Every database is a fresh one, dropped at the end; every
subprocess is stopped, even on error, Ctrl-C or the time limit. The figures are taken
from the runs table (created_at, started_at, finished_at: the database clock), never
from this process's clock. See docs/benchmarks.md for what each figure means.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This file is called queue.py: take its folder off sys.path so that `import queue` (the
# standard library's, used by concurrent.futures) cannot find it, and put the repository
# root there instead so that `bench.noop_tasks` imports, here and in the subprocesses.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from psycopg import sql

import runwright
from runwright.config import Settings
from runwright.model.runs import SubmitRequest
from runwright.services.runtime import Runtime

TASK_MODULE = "bench.noop_tasks"
TASK_TYPE = "bench.noop"
DEFAULT_PG = os.environ.get(
    "RUNWRIGHT_BENCH_PG",
    os.environ.get("RUNWRIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432"),
)
STALL_SECONDS = 60.0  # no run finished for this long: the benchmark is stuck
_T0 = time.monotonic()


class BenchError(Exception):
    """A measurement could not be made; the message says why."""


class BenchAborted(BaseException):
    """Time limit or signal: unwind through every cleanup block."""


def progress(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- subprocesses ------------------------------------------------------------------------
class Processes:
    """The subprocesses this benchmark started, each logging to a file, all stopped at exit."""

    def __init__(self, logdir: Path) -> None:
        self._logdir = logdir
        self._running: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
        self._lock = threading.Lock()

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        path = self._logdir / f"{name}-{len(os.listdir(self._logdir))}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen(
                list(args),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            )
        with self._lock:
            self._running[proc.pid] = (proc, path)
        return proc

    def log_tail(self, proc: subprocess.Popen[bytes], lines: int = 15) -> str:
        entry = self._running.get(proc.pid)
        if entry is None:
            return ""
        try:
            text = entry[1].read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        """SIGTERM (graceful), then SIGKILL after ``timeout`` seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                progress(f"process {proc.pid} ignored SIGTERM for {timeout:g}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        with self._lock:
            self._running.pop(proc.pid, None)

    def stop_all(self) -> None:
        with self._lock:
            procs = [proc for proc, _ in self._running.values()]
        for proc in procs:
            try:
                self.stop(proc, timeout=10.0)
            except BaseException as exc:  # keep stopping the others
                progress(f"could not stop process {proc.pid}: {exc!r}")

    def kill_all(self) -> None:
        """Last resort from the watchdog thread: no waiting, no locks."""
        for proc, _ in list(self._running.values()):
            with contextlib.suppress(Exception):
                proc.kill()


def runwright_command() -> list[str]:
    script = Path(sys.executable).parent / "runwright"
    if script.exists():
        return [str(script)]
    found = shutil.which("runwright")
    if found:
        return [found]
    return [sys.executable, "-c", "from runwright.cli.main import main; main()"]


def child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["RUNWRIGHT_HOME"] = str(home)
    env.pop("RUNWRIGHT_DATABASE_URL", None)  # the URL is always passed on the command line
    env.pop("RUNWRIGHT_TASKS", None)
    return env


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_pct(seconds: float = 1.0) -> float | None:
    """How busy all CPUs were over ``seconds`` (Linux /proc/stat), None where unknown."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round(100.0 * (1 - (idle1 - idle0) / (total1 - total0)), 1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- databases ---------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_database(
    kind: str, workdir: Path, pg_server: str, pg_settings: Sequence[str] = ()
) -> Iterator[str]:
    """A new, empty database; a PostgreSQL one is dropped on the way out."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(f"{pg_server}/postgres", autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE DATABASE "{name}"')
            for setting in pg_settings:
                key, _, value = setting.partition("=")
                c.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(name),
                        sql.Identifier(key.strip()),
                        sql.Literal(value.strip()),
                    )
                )
    except psycopg.OperationalError as exc:
        raise BenchError(
            f"PostgreSQL at {pg_server} is not reachable ({exc}); start it "
            "(bash scripts/services.sh) or pass --pg-server / --databases sqlite"
        ) from exc
    progress(f"created database {name}")
    try:
        yield f"{pg_server}/{name}"
    finally:
        try:
            with psycopg.connect(f"{pg_server}/postgres", autocommit=True, connect_timeout=5) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            progress(f"dropped database {name}")
        except psycopg.Error as exc:
            progress(f"could not drop database {name}: {exc} (drop it by hand)")


def upgrade_schema(url: str, home: Path) -> None:
    done = subprocess.run(
        [*runwright_command(), "--database-url", url, "db", "upgrade"],
        env=child_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"`runwright db upgrade` failed:\n{done.stdout}{done.stderr}")


def database_version(engine: sa.Engine) -> str:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return "PostgreSQL " + str(conn.execute(sa.text("SHOW server_version")).scalar())
    return f"SQLite {sqlite3.sqlite_version}"


@dataclass(frozen=True, slots=True)
class Span:
    count: int
    finished: int
    succeeded: int
    first_created: float | None
    first_started: float | None
    last_finished: float | None


def span(engine: sa.Engine, lo: int, hi: int) -> Span:
    row = None
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*), count(finished_at),"
                " sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END),"
                " min(created_at), min(started_at), max(finished_at)"
                " FROM runs WHERE id BETWEEN :lo AND :hi"
            ),
            {"lo": lo, "hi": hi},
        ).one()
    return Span(int(row[0]), int(row[1]), int(row[2] or 0), row[3], row[4], row[5])


def max_held(engine: sa.Engine, lo: int, hi: int) -> int:
    """The most runs in [lo, hi] that were running at once, from started_at/finished_at.

    A worker claims only as many runs as it has free slots, so this should never exceed
    its concurrency (a finish and the claim it frees a slot for are one transaction,
    the finish written first; at equal timestamps finishes count first).
    """
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT started_at, finished_at FROM runs WHERE id BETWEEN :lo AND :hi"
                " AND started_at IS NOT NULL AND finished_at IS NOT NULL"
            ),
            {"lo": lo, "hi": hi},
        ).all()
    events = sorted([(r[0], 1) for r in rows] + [(r[1], -1) for r in rows])
    held = most = 0
    for _, change in events:
        held += change
        most = max(most, held)
    return most


def pickup_latencies_ms(engine: sa.Engine, ids: Sequence[int]) -> list[float]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT (started_at - created_at) * 1000.0 FROM runs"
                " WHERE id BETWEEN :lo AND :hi AND started_at IS NOT NULL"
            ),
            {"lo": min(ids), "hi": max(ids)},
        ).all()
    wanted = len(ids)
    if len(rows) != wanted:
        raise BenchError(f"only {len(rows)} of {wanted} latency runs have a started_at")
    return [float(r[0]) for r in rows]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "p99": round(cuts[98], 2),
        "max": round(max(values), 2),
    }


def wait_finished(
    engine: sa.Engine,
    lo: int,
    hi: int,
    what: str,
    proc: subprocess.Popen[bytes],
    processes: Processes,
    on_first_start: Callable[[], None] | None = None,
) -> Span:
    """Poll until every run in [lo, hi] has finished; fail fast if the process died."""
    total = hi - lo + 1
    last_done, last_change = -1, time.monotonic()
    started_seen = on_first_start is None
    while True:
        current = span(engine, lo, hi)
        if not started_seen and current.first_started is not None:
            started_seen = True
            assert on_first_start is not None
            on_first_start()
        if current.finished >= total:
            return current
        if proc.poll() is not None:
            raise BenchError(
                f"{what}: the runwright process exited with code {proc.returncode} after "
                f"{current.finished} of {total} runs; its log ends with:\n"
                f"{processes.log_tail(proc)}"
            )
        if current.finished != last_done:
            last_done, last_change = current.finished, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise BenchError(
                f"{what}: stuck at {current.finished} of {total} finished runs for "
                f"{STALL_SECONDS:g}s; the runwright process log ends with:\n"
                f"{processes.log_tail(proc)}"
            )
        # fast until the first claim (to sample the worker's CPU then), then slow enough
        # not to load the database: the figures come from its columns, not from here
        time.sleep(0.01 if not started_seen else 0.1)


def rate(count: int, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(count / seconds, 1)


def server_headers(home: Path) -> dict[str, str]:
    """The admin API token `runwright server` wrote to its home on start."""
    return {"Authorization": f"Bearer {(home / 'token').read_text().strip()}"}


def wait_healthy(url: str, proc: subprocess.Popen[bytes], processes: Processes) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"`runwright server` exited with code {proc.returncode}; its log ends "
                    f"with:\n{processes.log_tail(proc)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{url}/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise BenchError(f"`runwright server` did not answer {url}/healthz within 60s")


def paced(count: int, interval: float, submit: Callable[[], int]) -> tuple[list[int], list[float]]:
    """Submit ``count`` runs one by one, ``interval`` seconds apart (absolute schedule).

    Returns the ids and how long each submit call took here, in ms (the insert, its
    commit and, for the server, the HTTP round trip: the floor under a pickup latency).
    """
    ids: list[int] = []
    calls: list[float] = []
    start = time.perf_counter()
    for i in range(count):
        pause = start + i * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        began = time.perf_counter()
        ids.append(submit())
        calls.append((time.perf_counter() - began) * 1000)
    return ids, calls


# -- one database --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    runs: int
    latency_runs: int
    interval: float
    batch: int
    server_workers: int
    server: bool
    pg_server: str
    py_spy: Path | None
    py_spy_gil: bool
    analyze: bool
    pg_settings: tuple[str, ...]


def measure(kind: str, concurrency: int, opts: Options, processes: Processes) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rw-bench-")))
        home = workdir / "home"
        url = stack.enter_context(fresh_database(kind, workdir, opts.pg_server, opts.pg_settings))
        stack.callback(processes.stop_all)  # before the database is dropped (LIFO)
        upgrade_schema(url, home)
        settings = Settings(home=home, database_url=url, tasks=(TASK_MODULE,))
        runtime = Runtime.open(settings)  # the schema is already there: `db upgrade`
        stack.callback(runtime.close)
        engine = runtime.engine
        service = runtime.runs
        request = SubmitRequest(type=TASK_TYPE)
        n = opts.runs
        result: dict[str, Any] = {
            "database": kind,
            "database_version": database_version(engine),
            "concurrency": concurrency,
            "runs": n,
        }

        def bulk_enqueue() -> tuple[list[int], float]:
            ids: list[int] = []
            began = time.perf_counter()
            for start in range(0, n, opts.batch):
                ids += service.submit_many([request] * min(opts.batch, n - start))
            return ids, time.perf_counter() - began

        # 1. drain: a full queue, then one worker process
        progress(f"{kind} c={concurrency}: enqueueing {n} runs in batches of {opts.batch}")
        ids, seconds = bulk_enqueue()
        result["enqueue_bulk_runs_per_s"] = rate(n, seconds)
        held: dict[str, int] = {}
        if opts.analyze:
            with engine.begin() as conn:
                conn.execute(sa.text("ANALYZE runs"))
            result["analyzed"] = True
        progress(f"{kind}: enqueued at {result['enqueue_bulk_runs_per_s']} runs/s; starting worker")
        worker = processes.start(
            "worker",
            [
                *runwright_command(),
                "--database-url",
                url,
                "worker",
                "--concurrency",
                str(concurrency),
                "--tasks",
                TASK_MODULE,
            ],
            child_env(home),
        )
        spy = start_py_spy(opts, processes, worker.pid, f"{kind}-c{concurrency}-drain", home)
        cpu_at_start: list[float | None] = []
        done = wait_finished(
            engine,
            ids[0],
            ids[-1],
            "drain",
            worker,
            processes,
            on_first_start=lambda: cpu_at_start.append(cpu_seconds(worker.pid)),
        )
        cpu_at_end = cpu_seconds(worker.pid)
        if spy is not None:
            stop_py_spy(spy, processes)
        drain_s = (done.last_finished or 0) - (done.first_started or 0)
        result["drain_runs_per_s"] = rate(n, drain_s)
        held["drain"] = max_held(engine, ids[0], ids[-1])
        if cpu_at_start and cpu_at_start[0] is not None and cpu_at_end is not None and drain_s:
            # sampled every 10 ms around the drain: an approximation
            result["drain_worker_cpu_pct"] = round(100 * (cpu_at_end - cpu_at_start[0]) / drain_s)
        failed = n - done.succeeded
        progress(f"{kind}: drain {result['drain_runs_per_s']} runs/s over {drain_s:.2f}s")

        # 2. end to end: the worker is running and idle; enqueue as fast as possible
        time.sleep(1.0)
        progress(f"{kind}: end to end, {n} runs submitted one by one")
        began = time.perf_counter()
        ids = [service.submit(request).run.id for _ in range(n)]
        result["enqueue_single_runs_per_s"] = rate(n, time.perf_counter() - began)
        done = wait_finished(engine, ids[0], ids[-1], "end to end (single)", worker, processes)
        e2e_single = rate(n, (done.last_finished or 0) - (done.first_created or 0))
        held["e2e_single"] = max_held(engine, ids[0], ids[-1])
        failed += n - done.succeeded
        time.sleep(1.0)
        progress(f"{kind}: end to end, {n} runs submitted in batches of {opts.batch}")
        ids, _ = bulk_enqueue()
        done = wait_finished(engine, ids[0], ids[-1], "end to end (bulk)", worker, processes)
        e2e_bulk = rate(n, (done.last_finished or 0) - (done.first_created or 0))
        held["e2e_bulk"] = max_held(engine, ids[0], ids[-1])
        result["max_held"] = held
        if max(held.values()) > concurrency:
            progress(
                f"{kind}: WARNING: the worker held up to {max(held.values())} runs at once "
                f"with --concurrency {concurrency} (over-claim): {held}"
            )
        failed += n - done.succeeded
        result["e2e_runs_per_s"] = {"single": e2e_single, "bulk": e2e_bulk}
        progress(f"{kind}: end to end single {e2e_single} runs/s, bulk {e2e_bulk} runs/s")

        # 3. pickup latency of an idle worker process
        time.sleep(1.0)
        m = opts.latency_runs
        progress(f"{kind}: pickup latency, {m} runs {opts.interval * 1000:g} ms apart")
        ids, calls = paced(m, opts.interval, lambda: service.submit(request).run.id)
        result["submit_call_ms"] = percentiles(calls)
        done = wait_finished(engine, ids[0], ids[-1], "pickup latency", worker, processes)
        failed += m - done.succeeded
        result["pickup_ms"] = percentiles(pickup_latencies_ms(engine, ids))
        progress(f"{kind}: worker pickup {result['pickup_ms']}")
        processes.stop(worker)

        # 4. pickup latency of the all-in-one server, submitting over its REST API
        if opts.server:
            failed += measure_server(result, url, home, opts, processes, engine)
        result["failed_runs"] = failed
        return result
    raise AssertionError("unreachable")


def measure_server(
    result: dict[str, Any],
    url: str,
    home: Path,
    opts: Options,
    processes: Processes,
    engine: sa.Engine,
) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    progress(f"starting runwright server --workers {opts.server_workers} on {base}")
    server = processes.start(
        "server",
        [
            *runwright_command(),
            "--database-url",
            url,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(opts.server_workers),
            "--tasks",
            TASK_MODULE,
        ],
        child_env(home),
    )
    try:
        wait_healthy(base, server, processes)
        with httpx.Client(base_url=base, headers=server_headers(home), timeout=10.0) as http:

            def post() -> int:
                response = http.post("/api/runs", json={"type": TASK_TYPE})
                if response.status_code not in (200, 202):
                    raise BenchError(f"POST /api/runs: {response.status_code} {response.text}")
                return int(response.json()["id"])

            warm, _ = paced(10, opts.interval, post)  # first requests pay for lazy imports
            wait_finished(engine, warm[0], warm[-1], "server warm-up", server, processes)
            time.sleep(0.5)
            m = opts.latency_runs
            progress(f"server: pickup latency, {m} POSTs {opts.interval * 1000:g} ms apart")
            ids, calls = paced(m, opts.interval, post)
            result["server_submit_call_ms"] = percentiles(calls)
            done = wait_finished(engine, ids[0], ids[-1], "server pickup", server, processes)
        result["server_pickup_ms"] = percentiles(pickup_latencies_ms(engine, ids))
        result["server_workers"] = opts.server_workers
        progress(f"server pickup {result['server_pickup_ms']}")
        return m - done.succeeded
    finally:
        processes.stop(server)


# -- profiling (optional) --------------------------------------------------------------------
def start_py_spy(
    opts: Options, processes: Processes, pid: int, name: str, home: Path
) -> subprocess.Popen[bytes] | None:
    """py-spy on the worker: every thread's wall time (--idle) or, with --py-spy-gil,
    only the thread holding the GIL (where the process's Python CPU time goes)."""
    if opts.py_spy is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    opts.py_spy.mkdir(parents=True, exist_ok=True)
    mode = "gil" if opts.py_spy_gil else "wall"
    out = opts.py_spy / f"{name}-{mode}.txt"
    progress(f"py-spy recording the worker (pid {pid}, {mode}) to {out}")
    args = [spy, "record", "--pid", str(pid), "--format", "raw", "--threads"]
    args += ["--gil"] if opts.py_spy_gil else ["--idle"]
    args += ["--rate", "500", "--nonblocking", "--output", str(out)]
    proc = processes.start("py-spy", args, child_env(home))
    time.sleep(0.3)  # let it attach before the first claim
    return proc


def stop_py_spy(proc: subprocess.Popen[bytes], processes: Processes) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    processes.stop(proc)


# -- main ----------------------------------------------------------------------------------
def git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev


def add_common_arguments(parser: argparse.ArgumentParser, *, limit: str, py_spy: str) -> None:
    """Options both benchmarks take: databases, server, time limit, quiet wait, py-spy."""
    parser.add_argument(
        "--databases",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres (default: both)",
    )
    parser.add_argument(
        "--pg-server",
        default=DEFAULT_PG,
        help=f"PostgreSQL server to create databases on (default {DEFAULT_PG})",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help=f"abort after this many seconds (default: {limit})",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement wait up to this long for the machine's CPUs to be "
        "under 20%% busy (a shared machine skews the figures); default: do not wait",
    )
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help=py_spy)
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (CPU, not wall time)",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark runwright's queue: drain and end-to-end throughput, pickup "
        "latency. One JSON line per database (and concurrency) on stdout."
    )
    add_common_arguments(
        parser,
        limit="300 per JSON line, plus --wait-quiet",
        py_spy="record the worker with py-spy during each drain (raw stacks "
        "in DIR; slows the worker, so its figures are not comparable)",
    )
    parser.add_argument(
        "--runs", type=int, default=5000, help="runs per throughput measurement (default 5000)"
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=200,
        help="runs per pickup-latency measurement (default 200)",
    )
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=20.0,
        help="pause between two latency submits (default 20)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="runs per submit_many call when enqueueing in bulk (default 100)",
    )
    parser.add_argument(
        "--concurrency",
        default="16",
        help="worker --concurrency; a comma-separated list measures each (default 16)",
    )
    parser.add_argument(
        "--server-workers", type=int, default=4, help="runwright server --workers (default 4)"
    )
    parser.add_argument(
        "--no-server", action="store_true", help="skip the all-in-one server's pickup latency"
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="diagnostic: ANALYZE the runs table after the drain's enqueue, "
        "before the worker starts (fresh tables have no planner statistics)",
    )
    parser.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="diagnostic: ALTER DATABASE ... SET NAME = VALUE on the fresh PostgreSQL "
        "database, e.g. synchronous_commit=off (repeatable)",
    )
    args = parser.parse_args(argv)
    for setting in args.pg_set:
        if "=" not in setting:
            parser.error(f"--pg-set takes NAME=VALUE, not {setting!r}")
    args.database_list = [d.strip() for d in args.databases.split(",") if d.strip()]
    for name in args.database_list:
        if name not in ("sqlite", "postgres"):
            parser.error(f"unknown database {name!r}: use sqlite and/or postgres")
    try:
        args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency takes integers, e.g. 16 or 8,16,32,64")
    if not args.concurrency_list or min(args.concurrency_list) < 1:
        parser.error("--concurrency must be at least 1")
    if args.runs < 1 or args.latency_runs < 2 or args.batch < 1:
        parser.error("--runs and --batch must be at least 1, --latency-runs at least 2")
    return args


@contextlib.contextmanager
def time_limited(processes: Processes, limit: float) -> Iterator[None]:
    """Raise BenchAborted on SIGTERM, SIGINT or after ``limit`` seconds, then stop every
    subprocess; if the cleanup itself hangs for a minute, kill everything and exit."""
    aborting: list[int] = []

    def abort(signum: int, _frame: FrameType | None) -> None:
        if aborting:  # already unwinding: let the cleanup finish
            progress("already stopping; cleaning up")
            return
        aborting.append(signum)
        if signum == signal.SIGALRM:
            raise BenchAborted(f"time limit of {limit:g}s reached (--time-limit)")
        raise BenchAborted(f"stopped by signal {signal.Signals(signum).name}")

    def last_resort() -> None:
        progress("cleanup did not finish within 60s of the time limit; killing everything")
        processes.kill_all()
        os._exit(3)

    watchdog = threading.Timer(limit + 60, last_resort)
    watchdog.daemon = True
    watchdog.start()
    for signum in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, abort)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        processes.stop_all()
        watchdog.cancel()


def wait_until_quiet(wait_quiet: float) -> float | None:
    """Wait up to ``wait_quiet`` s for the CPUs to be under 20 % busy; returns the last
    reading (None when it cannot be read) and warns when the machine stayed busy."""
    busy = machine_busy_pct()
    waited_until = time.monotonic() + wait_quiet
    while busy is not None and busy > 20 and time.monotonic() < waited_until:
        progress(f"machine {busy:.0f}% busy; waiting for it to quiet down")
        time.sleep(4.0)
        busy = machine_busy_pct(2.0)
    if busy is not None and busy > 20:
        progress(
            f"WARNING: the machine's CPUs were {busy:.0f}% busy in the second "
            "before this measurement; other work will skew the figures"
        )
    return busy


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    combos = [(db, c) for db in args.database_list for c in args.concurrency_list]
    limit = args.time_limit or (300.0 + args.wait_quiet) * len(combos)
    opts = Options(
        runs=args.runs,
        latency_runs=args.latency_runs,
        interval=args.interval_ms / 1000,
        batch=args.batch,
        server_workers=args.server_workers,
        server=not args.no_server,
        pg_server=args.pg_server.rstrip("/"),
        py_spy=args.py_spy,
        py_spy_gil=args.py_spy_gil,
        analyze=args.analyze,
        pg_settings=tuple(args.pg_set),
    )
    common = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "runwright": runwright.__version__,
        "batch": opts.batch,
        "latency_runs": opts.latency_runs,
        "latency_interval_ms": args.interval_ms,
    }
    with tempfile.TemporaryDirectory(prefix="rw-bench-logs-") as logs:
        processes = Processes(Path(logs))

        status = 0
        try:
            with time_limited(processes, limit):
                for kind, concurrency in combos:
                    busy = wait_until_quiet(args.wait_quiet)
                    try:
                        line = measure(kind, concurrency, opts, processes)
                    except BenchError as exc:
                        progress(f"{kind} c={concurrency}: FAILED: {exc}")
                        status = 1
                        continue
                    finally:
                        processes.stop_all()
                    # src may change between lines: record the revision each was measured at
                    line["git"] = git_revision()
                    line["machine_busy_pct_before"] = busy
                    if opts.pg_settings and kind == "postgres":
                        line["pg_settings"] = list(opts.pg_settings)
                    print(json.dumps({**line, **common}), flush=True)
        except BenchAborted as exc:
            progress(f"ABORTED: {exc}; subprocesses stopped and databases dropped")
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
