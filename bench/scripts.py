"""Job code benchmark: overhead of a script run, log ingest, and job environments.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python bench/scripts.py [--databases sqlite,postgres] [--runs 50]
        [--lines 200000] [--concurrency 4] [--no-followers] [--wait-quiet S]
        [--time-limit S] [--py-spy DIR [--py-spy-gil]]

Prints one JSON line per database on stdout and progress on stderr. Every database is a
fresh one, dropped at the end; every subprocess is stopped, even on error, Ctrl-C or the
time limit. Only public entry points are used: Runtime and its services, the CLI
(`runwright server`), the REST API and the database tables. See docs/benchmarks.md,
section "Job code (bench/scripts.py)", for what each figure means.

1. overhead: a `print("hi")` script run ``--runs`` times one after the other by an
   in-process Worker (``Runtime.worker(in_process=True)``: the all-in-one server's path,
   without HTTP), submit -> succeeded, next to a bare spawn of ``python -c pass`` with the
   job's own venv interpreter and of ``/bin/true``, interleaved with the runs.
2. ingest: a script printing ``--lines`` lines; how fast they are stored (in-process
   Worker), and how fast a live follower receives them from a `runwright server`
   subprocess whose embedded worker runs the script: over Server-Sent Events
   (GET /api/runs/{id}/events) and by polling GET /api/runs/{id}/logs.
3. environments: a package job requiring a wheel built here (find_links, offline):
   first run (venv built), a run of another requirement set (uv cache warm), cached runs.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would come first on sys.path and its queue.py would shadow
# the standard library's `queue`: take the folder off and put the repository root there.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import base64
import collections
import contextlib
import hashlib
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

import runwright
from bench.queue import (
    BenchAborted,
    BenchError,
    Processes,
    add_common_arguments,
    child_env,
    database_version,
    free_port,
    fresh_database,
    git_revision,
    progress,
    runwright_command,
    server_headers,
    time_limited,
    wait_healthy,
    wait_until_quiet,
)
from runwright.config import Settings
from runwright.services.jobs import RunOptions
from runwright.services.runtime import Runtime

TARGET_OVERHEAD_RATIO = 2.0  # submit -> succeeded at most twice a bare interpreter spawn
TARGET_LINES_PER_S = 100_000
WHEEL_PROJECT = "rwbench-dep"
WHEEL_MODULE = "rwbench_dep"
WHEEL_VALUE = "rwbench-dep 0.1 imported"
END_MARKER = "RWBENCH-END"
HI_SCRIPT = 'print("hi")\n'
# Unbuffered (the executor sets PYTHONUNBUFFERED), so one write per line as users get it.
INGEST_SCRIPT = """\
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else {lines}
for i in range(count - 1):
    print(f"{{i:07d}} worker-17 processed item batch=42 status=ok elapsed_ms=3.14")
print("{marker}")
"""
DEPS_MAIN = f"""\
import {WHEEL_MODULE}

print({WHEEL_MODULE}.VALUE)
"""
FINAL = ("succeeded", "failed", "canceled")


# -- small helpers -----------------------------------------------------------------------
def stats_ms(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, min and max of values in seconds, in ms."""
    ms = sorted(v * 1000 for v in values)
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[8] if len(ms) > 1 else ms[0]
    return {
        "p50": round(statistics.median(ms), 2),
        "p90": round(p90, 2),
        "min": round(ms[0], 2),
        "max": round(ms[-1], 2),
    }


def per_s(count: int, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(count / seconds)


def build_wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel written by hand: module, METADATA, WHEEL and RECORD."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{WHEEL_MODULE}-0.1.dist-info"
    files = {
        f"{WHEEL_MODULE}/__init__.py": f"VALUE = {WHEEL_VALUE!r}\n".encode(),
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {WHEEL_PROJECT}\nVersion: 0.1\n"
            "Summary: runwright benchmark dependency\n"
        ).encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: runwright-bench\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{WHEEL_MODULE}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def package_zip(files: dict[str, str]) -> bytes:
    """A job package (runwright.toml and code) for JobService.deploy."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in sorted(files.items()):
            zf.writestr(name, text)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    log_count: int
    error: str | None


def run_row(engine: sa.Engine, run_id: int) -> RunRow:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, status, created_at, started_at, finished_at, log_count, error"
                " FROM runs WHERE id = :id"
            ),
            {"id": run_id},
        ).one()
    return RunRow(*row)


def wait_run(
    engine: sa.Engine,
    run_id: int,
    what: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.005,
    alive: Callable[[], None] | None = None,
    on_poll: Callable[[], None] | None = None,
) -> RunRow:
    """Poll the runs table until the run is final; it must have succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        row = run_row(engine, run_id)
        if row.status in FINAL:
            if row.status != "succeeded":
                raise BenchError(f"{what}: run {run_id} {row.status}: {row.error}")
            return row
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: run {run_id} still {row.status} after {timeout:g}s")
        if alive is not None:
            alive()
        if on_poll is not None:
            on_poll()
        time.sleep(interval)


def run_lines(engine: sa.Engine, run_id: int) -> list[tuple[str, float, str]]:
    """(stream, ts, message) of a short run's lines, in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT stream, ts, message FROM log_lines WHERE run_id = :id ORDER BY seq"),
            {"id": run_id},
        ).all()
    return [(str(r[0]), float(r[1]), str(r[2])) for r in rows]


@dataclass(frozen=True, slots=True)
class StdoutSpan:
    count: int
    first_ts: float | None
    last_ts: float | None
    last_seq: int | None


def stdout_span(engine: sa.Engine, run_id: int) -> StdoutSpan:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*), min(ts), max(ts), max(seq) FROM log_lines"
                " WHERE run_id = :id AND stream = 'stdout'"
            ),
            {"id": run_id},
        ).one()
    return StdoutSpan(int(row[0]), row[1], row[2], row[3])


def max_seq(engine: sa.Engine, run_id: int) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("SELECT max(seq) FROM log_lines WHERE run_id = :id"), {"id": run_id}
        ).scalar()
    return int(value or 0)


def phases(row: RunRow, lines: list[tuple[str, float, str]], submitted: float) -> dict[str, float]:
    """Where one run's time went, in seconds, from the runs table and its lines.

    The line timestamps are the worker's clock (when it read the line), the run's are
    the database's: one machine, one clock.
    """

    def first(stream: str, prefix: str = "") -> float | None:
        return next((t for s, t, m in lines if s == stream and m.startswith(prefix)), None)

    job = first("system", "Job ")
    starting = first("system", "Starting ")
    output = first("stdout")
    exited = first("system", "Exited with code")
    assert row.started_at is not None
    assert row.finished_at is not None
    if job is None or starting is None or output is None or exited is None:
        raise BenchError(f"run {row.id}: lines missing: {[m for _, _, m in lines]}")
    return {
        "submit_call": row.created_at - submitted,  # up to the run's row (its insert)
        "pickup": row.started_at - row.created_at,  # claimed by the worker
        "unpack": job - row.started_at,  # package fetched, extracted, config read
        "environment": starting - job,  # venv looked up, SDK and context written
        "spawn_to_output": output - starting,  # fork/exec, interpreter start, entry, print
        "output_to_exit": exited - output,  # exit noticed, output pipes drained
        "finish": row.finished_at - exited,  # lines stored, log saved, completion written
    }


# -- 1. overhead of a script run -----------------------------------------------------------
def bare_spawn(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        check=True,
    )
    return time.perf_counter() - began


def job_interpreter(home: Path) -> Path:
    """The venv interpreter runs of a job without requirements use (the only venv yet)."""
    found = sorted((home / "cache" / "venvs").glob("*/bin/python"))
    if len(found) != 1:
        raise BenchError(f"expected one job venv under {home / 'cache' / 'venvs'}, got {found}")
    return found[0]


def measure_overhead(runtime: Runtime, home: Path, opts: Options) -> dict[str, Any]:
    engine = runtime.engine
    runtime.scripts.upload("hi.py", HI_SCRIPT.encode())

    def one() -> tuple[float, dict[str, float]]:
        submitted = time.time()
        run = runtime.jobs.run("hi", RunOptions())
        row = wait_run(engine, run.id, "overhead")
        assert row.finished_at is not None
        return row.finished_at - submitted, phases(row, run_lines(engine, run.id), submitted)

    first, _ = one()  # builds the venv of the empty requirement set
    progress(f"first run (empty venv built) {first * 1000:.0f} ms; warming up")
    for _ in range(3):
        one()
    interpreter = job_interpreter(home)
    python = [str(interpreter), "-c", "pass"]
    for _ in range(3):
        bare_spawn(python)
        bare_spawn(["/bin/true"])
    totals: list[float] = []
    parts: dict[str, list[float]] = collections.defaultdict(list)
    spawn_python: list[float] = []
    spawn_true: list[float] = []
    progress(f"overhead: {opts.runs} runs of print('hi'), interleaved with bare spawns")
    for _ in range(opts.runs):
        total, split = one()
        totals.append(total)
        for name, seconds in split.items():
            parts[name].append(seconds)
        spawn_python.append(bare_spawn(python))
        spawn_true.append(bare_spawn(["/bin/true"]))
    overhead = stats_ms(totals)
    python_ms = stats_ms(spawn_python)
    ratio = round(overhead["p50"] / python_ms["p50"], 2)
    progress(
        f"overhead p50 {overhead['p50']} ms p90 {overhead['p90']} ms; python -c pass "
        f"{python_ms['p50']} ms; ratio {ratio} (target <= {TARGET_OVERHEAD_RATIO:g})"
    )
    return {
        "runs": opts.runs,
        "submit_to_succeeded_ms": overhead,
        "phases_p50_ms": {k: round(statistics.median(v) * 1000, 2) for k, v in parts.items()},
        "bare_python_c_pass_ms": python_ms,
        "bare_bin_true_ms": stats_ms(spawn_true),
        "interpreter": str(interpreter),
        "interpreter_resolves_to": os.path.realpath(interpreter),
        "ratio_p50": ratio,
        "ratio_target": TARGET_OVERHEAD_RATIO,
        "meets_target": ratio <= TARGET_OVERHEAD_RATIO,
        "first_run_ms": round(first * 1000, 1),
    }


# -- 3. environments -----------------------------------------------------------------------
def measure_environments(runtime: Runtime) -> dict[str, Any]:
    engine = runtime.engine

    def deploy(name: str, requirement: str) -> None:
        manifest = f'entrypoint = "main.py"\nrequirements = ["{requirement}"]\n'
        runtime.jobs.deploy(name, package_zip({"runwright.toml": manifest, "main.py": DEPS_MAIN}))

    def run(name: str) -> tuple[float, float]:
        """submit -> succeeded, and the environment step (venv lookup or build)."""
        submitted = time.time()
        created = runtime.jobs.run(name, RunOptions())
        row = wait_run(engine, created.id, f"environment {name}", timeout=120.0)
        assert row.finished_at is not None
        lines = run_lines(engine, created.id)
        if ("stdout", WHEEL_VALUE) not in [(s, m) for s, _, m in lines]:
            raise BenchError(f"run {row.id} of {name} did not print {WHEEL_VALUE!r}")
        split = phases(row, lines, submitted)
        return row.finished_at - submitted, split["environment"]

    deploy("deps", WHEEL_PROJECT)
    deploy("deps-pinned", f"{WHEEL_PROJECT}==0.1")
    progress(f"environments: first run with requirement {WHEEL_PROJECT} (venv build)")
    first, first_env = run("deps")
    second, second_env = run("deps")
    cached = [run("deps")[0] for _ in range(3)]
    warm, warm_env = run("deps-pinned")
    progress(
        f"environments: first {first * 1000:.0f} ms, second {second * 1000:.0f} ms, "
        f"new set with a warm uv cache {warm * 1000:.0f} ms"
    )
    return {
        "requirement": WHEEL_PROJECT,
        "first_run_ms": round(first * 1000, 1),
        "first_run_environment_step_ms": round(first_env * 1000, 1),
        "second_run_ms": round(second * 1000, 1),
        "second_run_environment_step_ms": round(second_env * 1000, 1),
        "cached_runs_p50_ms": stats_ms([second, *cached])["p50"],
        "new_set_warm_uv_cache_ms": round(warm * 1000, 1),
        "new_set_warm_uv_cache_environment_step_ms": round(warm_env * 1000, 1),
    }


# -- 2. log ingest -------------------------------------------------------------------------
class SeqWatch:
    """Samples max(seq) of a run's lines: when each seq first became visible."""

    def __init__(self, engine: sa.Engine, run_id: int, interval: float = 0.02) -> None:
        self._engine = engine
        self._run_id = run_id
        self._interval = interval
        self._last = 0.0
        self.samples: list[tuple[float, int]] = []

    def poll(self) -> None:
        now = time.time()
        if now - self._last < self._interval:
            return
        self._last = now
        self.samples.append((time.time(), max_seq(self._engine, self._run_id)))

    def visible_at(self, seq: int) -> float | None:
        return next((t for t, s in self.samples if s >= seq), None)


def ingest_figures(engine: sa.Engine, row: RunRow, lines: int, watch: SeqWatch | None) -> dict:
    span = stdout_span(engine, row.id)
    if span.count != lines or span.first_ts is None or span.last_ts is None:
        raise BenchError(f"ingest run {row.id}: {span.count} stdout lines stored, not {lines}")
    assert row.finished_at is not None
    assert row.started_at is not None
    figures: dict[str, Any] = {
        "captured_lines_per_s": per_s(lines, span.last_ts - span.first_ts),
        "stored_by_finish_lines_per_s": per_s(lines, row.finished_at - span.first_ts),
        "run_seconds": round(row.finished_at - row.started_at, 2),
    }
    if watch is not None and span.last_seq is not None:
        visible = watch.visible_at(span.last_seq)
        if visible is not None:
            figures["stored_lines_per_s"] = per_s(lines, visible - span.first_ts)
    return figures


def script_alone(interpreter: Path, script: Path, lines: int) -> float | None:
    """Lines per second the ingest script prints into a pipe read in big chunks."""
    began = time.perf_counter()
    done = subprocess.run(
        [str(interpreter), str(script), str(lines)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"},
        check=True,
    )
    seconds = time.perf_counter() - began
    if done.stdout.count(b"\n") != lines:
        raise BenchError("the ingest script printed an unexpected number of lines")
    return per_s(lines, seconds)


def measure_ingest_stored(runtime: Runtime, workdir: Path, interpreter: Path, lines: int) -> dict:
    engine = runtime.engine
    source = INGEST_SCRIPT.format(lines=lines, marker=END_MARKER)
    runtime.scripts.upload("ingest.py", source.encode())
    script = workdir / "ingest.py"
    script.write_text(source)
    result: dict[str, Any] = {
        "executor": "in-process Worker in the bench process, nobody following",
        "script_alone_lines_per_s": script_alone(interpreter, script, lines),
    }
    progress(f"ingest: {lines} lines, in-process worker, nobody following")
    created = runtime.jobs.run("ingest", RunOptions())
    watch = SeqWatch(engine, created.id)
    row = wait_run(engine, created.id, "ingest", timeout=150.0, interval=0.01, on_poll=watch.poll)
    result.update(ingest_figures(engine, row, lines, watch))
    result["meets_target"] = (result.get("stored_lines_per_s") or 0) >= TARGET_LINES_PER_S
    progress(
        f"ingest: captured {result['captured_lines_per_s']} lines/s, stored "
        f"{result.get('stored_lines_per_s')} lines/s (script alone "
        f"{result['script_alone_lines_per_s']} lines/s)"
    )
    return result


def follow_sse(http: httpx.Client, run_id: int, lines: int) -> tuple[float | None, float]:
    """Follow /events; when (epoch) every stdout line had arrived, and when it ended."""
    needle = b'"stream":"stdout"'
    seen = 0
    all_at: float | None = None
    buffer = b""
    with http.stream("GET", f"/api/runs/{run_id}/events") as response:
        if response.status_code != 200:
            raise BenchError(f"GET /api/runs/{run_id}/events: {response.status_code}")
        for chunk in response.iter_raw():
            buffer += chunk
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[: cut + 2], buffer[cut + 2 :]
            seen += complete.count(needle)
            if all_at is None and seen >= lines:
                all_at = time.time()
            if b"\nevent: completed\n" in complete:
                return all_at, time.time()
            if b"\nevent: failed\n" in complete or b"\nevent: canceled\n" in complete:
                raise BenchError(f"run {run_id} did not succeed (its final event)")
    raise BenchError(f"the event stream of run {run_id} ended early ({seen} of {lines} lines)")


def follow_poll(http: httpx.Client, run_id: int, lines: int) -> tuple[float | None, float]:
    """Page through /logs (limit 10,000) until complete, 0.1 s apart when caught up."""
    after = 0
    seen = 0
    all_at: float | None = None
    while True:
        response = http.get(f"/api/runs/{run_id}/logs", params={"after": after, "limit": 10_000})
        if response.status_code != 200:
            raise BenchError(f"GET /api/runs/{run_id}/logs: {response.status_code}")
        page = response.json()
        seen += sum(1 for line in page["lines"] if line["stream"] == "stdout")
        if all_at is None and seen >= lines:
            all_at = time.time()
        after = page["next_after"]
        if page["complete"]:
            return all_at, time.time()
        if len(page["lines"]) < 10_000:
            time.sleep(0.1)


def measure_followers(
    runtime: Runtime, url: str, home: Path, opts: Options, processes: Processes
) -> dict[str, Any]:
    """A `runwright server` subprocess runs the ingest script; the bench follows it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(home)
    env["RUNWRIGHT_FIND_LINKS"] = runtime.settings.find_links
    env["RUNWRIGHT_OFFLINE"] = "true"
    progress(f"starting runwright server --workers 2 on {base}")
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
            "2",
        ],
        env,
    )
    engine = runtime.engine
    lines = opts.lines
    result: dict[str, Any] = {}
    try:
        wait_healthy(base, server, processes)

        def alive() -> None:
            if server.poll() is not None:
                raise BenchError(
                    f"`runwright server` exited with code {server.returncode}:\n"
                    f"{processes.log_tail(server)}"
                )

        timeout = httpx.Timeout(10.0, read=120.0)
        with httpx.Client(base_url=base, headers=server_headers(home), timeout=timeout) as http:

            def submit() -> int:
                response = http.post("/api/jobs/ingest/runs", json={})
                if response.status_code != 202:
                    raise BenchError(f"POST /api/jobs/ingest/runs: {response.status_code}")
                return int(response.json()["id"])

            # a short warm-up run: the first requests pay for lazy imports
            response = http.post("/api/jobs/hi/runs", json={})
            wait_run(engine, int(response.json()["id"]), "server warm-up", alive=alive)
            followers: list[tuple[str, str, Callable[..., tuple[float | None, float]]]] = [
                ("sse", "GET /api/runs/{id}/events (Server-Sent Events)", follow_sse),
                ("poll", "GET /api/runs/{id}/logs?after=N&limit=10000, 0.1 s apart", follow_poll),
            ]
            for name, how, follow in followers:
                progress(f"ingest: {lines} lines run by the server, followed by {name}")
                spy = start_py_spy(opts, processes, server.pid, f"server-ingest-{name}", home)
                run_id = submit()
                all_at, _ = follow(http, run_id, lines)
                if spy is not None:
                    stop_py_spy(spy, processes)
                row = wait_run(engine, run_id, f"ingest ({name})", alive=alive)
                assert row.started_at is not None
                if all_at is None:
                    raise BenchError(f"the {name} follower did not receive all {lines} lines")
                figures = ingest_figures(engine, row, lines, None)
                follower = per_s(lines, all_at - row.started_at)
                figures.update(
                    executor="embedded worker of a `runwright server --workers 2` subprocess",
                    via=how,
                    follower_lines_per_s=follower,
                    follower_seconds=round(all_at - row.started_at, 2),
                    follower_after_finish_s=round(all_at - (row.finished_at or 0), 2),
                    meets_target=(follower or 0) >= TARGET_LINES_PER_S,
                )
                result[name] = figures
                progress(
                    f"ingest ({name}): follower {figures['follower_lines_per_s']} lines/s "
                    f"over {figures['follower_seconds']} s; stored by finish "
                    f"{figures['stored_by_finish_lines_per_s']} lines/s"
                )
    finally:
        processes.stop(server)
    return result


# -- profiling (optional) --------------------------------------------------------------------
def start_py_spy(
    opts: Options, processes: Processes, pid: int, name: str, home: Path
) -> subprocess.Popen[bytes] | None:
    """py-spy on a process: wall time of every thread (--idle), or with --py-spy-gil
    only the thread holding the GIL (where the process's Python CPU time goes)."""
    if opts.py_spy is None:
        return None
    spy = str(Path(sys.executable).parent / "py-spy")
    opts.py_spy.mkdir(parents=True, exist_ok=True)
    mode = "gil" if opts.py_spy_gil else "wall"
    out = opts.py_spy / f"{opts.kind}-{name}-{mode}.txt"
    progress(f"py-spy recording pid {pid} ({mode}) to {out}")
    args = [spy, "record", "--pid", str(pid), "--format", "raw", "--threads"]
    args += ["--gil"] if opts.py_spy_gil else ["--idle"]
    args += ["--rate", "250", "--nonblocking", "--output", str(out)]
    proc = processes.start("py-spy", args, child_env(home))
    time.sleep(0.5)  # let it attach
    return proc


def stop_py_spy(proc: subprocess.Popen[bytes], processes: Processes) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    processes.stop(proc)


# -- one database --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    kind: str
    runs: int
    lines: int
    concurrency: int
    pg_server: str
    followers: bool
    py_spy: Path | None
    py_spy_gil: bool


def measure(opts: Options, processes: Processes) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        # not rw-bench-*: the queue benchmark's prefix, which its users clean up by glob
        scratch = tempfile.TemporaryDirectory(prefix="runwright-scripts-bench-")
        workdir = Path(stack.enter_context(scratch))
        home = workdir / "home"
        wheels = workdir / "wheels"
        build_wheel(wheels)
        url = stack.enter_context(fresh_database(opts.kind, workdir, opts.pg_server))
        settings = Settings(home=home, database_url=url, find_links=str(wheels), offline=True)
        runtime = Runtime.open(settings, create_schema=True)
        stack.callback(runtime.close)
        result: dict[str, Any] = {
            "database": opts.kind,
            "database_version": database_version(runtime.engine),
            "executor": f"in-process Worker (Runtime.worker(in_process=True), "
            f"concurrency {opts.concurrency}) in the bench process",
        }
        worker = runtime.worker(concurrency=opts.concurrency, in_process=True)
        worker.start()
        stopped: list[bool] = []

        def stop_worker() -> None:
            if not stopped:
                stopped.append(True)
                worker.stop_and_wait(grace=5.0)

        stack.callback(stop_worker)
        me = os.getpid()
        spy = start_py_spy(opts, processes, me, "overhead", home)
        result["overhead"] = measure_overhead(runtime, home, opts)
        if spy is not None:
            stop_py_spy(spy, processes)
        result["environments"] = measure_environments(runtime)
        spy = start_py_spy(opts, processes, me, "ingest-stored", home)
        ingest: dict[str, Any] = {"lines": opts.lines, "target_lines_per_s": TARGET_LINES_PER_S}
        interpreter = Path(result["overhead"]["interpreter"])
        ingest["stored"] = measure_ingest_stored(runtime, workdir, interpreter, opts.lines)
        if spy is not None:
            stop_py_spy(spy, processes)
        stop_worker()  # from here on the server's embedded worker runs everything
        if opts.followers:
            ingest.update(measure_followers(runtime, url, home, opts, processes))
        result["ingest"] = ingest
        return result
    raise AssertionError("unreachable")


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark runwright's job code: script run overhead, log ingest and "
        "job environments. One JSON line per database on stdout."
    )
    add_common_arguments(
        parser,
        limit="240 per database",
        py_spy="record py-spy raw stacks in DIR: the bench process (its in-process worker) "
        "during the overhead runs and the stored ingest, the server during each follower "
        "ingest; slows what it records, so the figures are not comparable",
    )
    parser.add_argument(
        "--runs", type=int, default=50, help="print('hi') runs for the overhead (default 50)"
    )
    parser.add_argument(
        "--lines", type=int, default=200_000, help="lines the ingest script prints (default 200000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="in-process worker concurrency (default 4)"
    )
    parser.add_argument(
        "--no-followers",
        action="store_true",
        help="skip the live followers (and the `runwright server` subprocess)",
    )
    args = parser.parse_args(argv)
    args.database_list = [d.strip() for d in args.databases.split(",") if d.strip()]
    for name in args.database_list:
        if name not in ("sqlite", "postgres"):
            parser.error(f"unknown database {name!r}: use sqlite and/or postgres")
    if args.runs < 2 or args.lines < 2 or args.concurrency < 1:
        parser.error("--runs and --lines must be at least 2, --concurrency at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit = args.time_limit or (240.0 + args.wait_quiet) * len(args.database_list)
    common = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "runwright": runwright.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="runwright-scripts-bench-logs-") as logs:
        processes = Processes(Path(logs))
        status = 0
        try:
            with time_limited(processes, limit):
                for kind in args.database_list:
                    busy = wait_until_quiet(args.wait_quiet)
                    opts = Options(
                        kind=kind,
                        runs=args.runs,
                        lines=args.lines,
                        concurrency=args.concurrency,
                        pg_server=args.pg_server.rstrip("/"),
                        followers=not args.no_followers,
                        py_spy=args.py_spy,
                        py_spy_gil=args.py_spy_gil,
                    )
                    began = time.monotonic()
                    try:
                        line = measure(opts, processes)
                    except BenchError as exc:
                        progress(f"{kind}: FAILED: {exc}")
                        status = 1
                        continue
                    finally:
                        processes.stop_all()
                    line["bench_seconds"] = round(time.monotonic() - began, 1)
                    line["git"] = git_revision()  # src may change between lines
                    line["machine_busy_pct_before"] = busy
                    if args.py_spy is not None:
                        line["profiled"] = True  # py-spy slowed it: not comparable
                    print(json.dumps({**line, **common}), flush=True)
        except BenchAborted as exc:
            progress(f"ABORTED: {exc}; subprocesses stopped and databases dropped")
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
