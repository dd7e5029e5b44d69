"""Multi-step jobs benchmark: a flow of light python steps end to end, and context saves.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python bench/steps.py [--database sqlite|postgres|both] [--runs 5]
        [--steps 40] [--stores local,s3] [--context-sizes 1K,100K,1M,10M]
        [--wait-quiet S] [--time-limit S] [--py-spy DIR [--py-spy-gil]]

Prints ONE JSON line on stdout (every database and store in it) and progress on
stderr. Every database is a fresh one, dropped at the end; every subprocess (moto's S3
server, py-spy) is stopped, even on error, Ctrl-C or the time limit. See
docs/benchmarks.md, section "Multi-step jobs (bench/steps.py)", for what each figure
means.

1. flow: a steps package (job.yaml + flow.py) of ``--steps`` python steps, each calling
   ``flow:step`` with the previous step's output (``{{ steps.sN.output }}``), which it
   checks, and returning ``{"i": n, "ok": True}``. Deployed with ``JobService.deploy``
   and run by an in-process Worker (``Runtime.worker(in_process=True)``, the
   all-in-one server's path without HTTP) on each database and artifact store: one
   warm-up run (it builds the job's venv), then ``--runs`` measured runs one after the
   other. Times come from the runs table (database clock) and the run_steps table
   (the worker's clock); context saves are counted and timed by wrapping the runtime's
   artifact store before the worker is built.
2. context saves: ``ContextStore.save`` of contexts whose step outputs total about
   ``--context-sizes`` bytes, on the local store and on S3 (moto's server), median of
   several saves each.
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
import contextlib
import importlib.util
import json
import os
import platform
import re
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import yaml

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
    start_py_spy,
    stop_py_spy,
    time_limited,
    wait_until_quiet,
)
from bench.scripts import bare_spawn, job_interpreter, package_zip, wait_run
from runwright.artifacts import open_store
from runwright.artifacts.base import ArtifactStore
from runwright.config import Settings
from runwright.model.context import JobContext, StepStatus
from runwright.services.contexts import ContextStore, masked_json
from runwright.services.jobs import RunOptions
from runwright.services.runtime import Runtime

JOB = "steps-flow"
AIM_SECONDS = 1.0  # the whole 40-step flow, submit -> final status
# Published figures of other orchestrators for 40 light tasks, from published benchmarks
# on their own hardware (see docs/benchmarks.md): anchors, not measured here.
ANCHORS = {
    "windmill_40_light_tasks_s": [1.59, 3.44],
    "windmill_dedicated_workers_40_light_tasks_s": 0.39,
    "airflow_40_light_tasks_s": [9.1, 40.5],
    "note": "published benchmark figures, on other hardware; not measured here",
}
S3_BUCKET = "runwright-bench"
S3_ACCESS_KEY = "rwbench-access"
S3_SECRET_KEY = "rwbench-secret"  # moto accepts any key; not a real credential
FLOW_MODULE = '''\
"""The steps of the benchmark flow: each checks the previous step's output."""


def step(n, prev=None):
    if n and (not isinstance(prev, dict) or prev.get("i") != n - 1 or prev.get("ok") is not True):
        raise ValueError(f"step {n}: unexpected output of the previous step: {prev!r}")
    return {"i": n, "ok": True}
'''
_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)', re.IGNORECASE)


# -- small helpers -----------------------------------------------------------------------
def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def median_best_ms(values: Sequence[float]) -> dict[str, Any]:
    """Median and best (lowest) of values in seconds, in ms, with every value."""
    return {
        "median": ms(statistics.median(values)),
        "best": ms(min(values)),
        "all": [ms(v) for v in values],
    }


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)B?\s*", text.upper())
    if match is None:
        raise ValueError(text)
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2)]
    return int(float(match.group(1)) * factor)


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def flow_package(steps: int) -> bytes:
    """job.yaml with ``steps`` python steps, each given the previous step's output."""
    definition: dict[str, Any] = {
        "description": f"runwright benchmark: {steps} light python steps in a chain",
        "steps": [],
    }
    for n in range(steps):
        inputs: dict[str, Any] = {"n": n}
        if n:
            inputs["prev"] = f"{{{{ steps.s{n - 1}.output }}}}"
        definition["steps"].append(
            {"id": f"s{n}", "uses": "python", "with": {"function": "flow:step", "inputs": inputs}}
        )
    return package_zip(
        {"job.yaml": yaml.safe_dump(definition, sort_keys=False), "flow.py": FLOW_MODULE}
    )


# -- instruments ---------------------------------------------------------------------------
class CountingStore:
    """The runtime's artifact store, counting and timing the job-context writes.

    Installed as ``runtime.store`` before ``runtime.worker()`` builds the executor, so
    the worker's saves go through it; everything else is passed on unchanged.
    """

    def __init__(self, inner: ArtifactStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.saves: list[tuple[str, float, int]] = []  # key, seconds, bytes

    def put(self, key: str, data: bytes) -> None:
        began = time.perf_counter()
        self._inner.put(key, data)
        took = time.perf_counter() - began
        if key.endswith("/context.json"):
            with self._lock:
                self.saves.append((key, took, len(data)))

    def take(self) -> list[tuple[str, float, int]]:
        with self._lock:
            saves, self.saves = self.saves, []
        return saves

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class WriteCounter:
    """INSERT/UPDATE/DELETE statements sent through SQLAlchemy by threads other than
    the benchmark's own (the worker, its executor, the log writer), by table.
    PostgreSQL's COPY of log lines goes through the driver and is not seen, so
    log_lines are left out on both databases."""

    def __init__(self) -> None:
        self._me = threading.get_ident()
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> WriteCounter:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if threading.get_ident() == self._me:
            return
        match = _WRITE.match(statement)
        if match is None or match.group(2).lower() == "log_lines":
            return
        key = f"{match.group(1).split()[0].upper()} {match.group(2).lower()}"
        with self._lock:
            self.counts[key] += 1

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts


# -- S3 (moto's server) --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class S3:
    endpoint: str


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def start_moto(processes: Processes, home: Path) -> S3:
    """moto's S3 server in a subprocess on a free loopback port, with a bucket."""
    if importlib.util.find_spec("moto") is None:
        raise BenchError("moto is not installed (pip install 'moto[server]'); skipping S3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in child_env(home).items() if not k.startswith(("AWS_", "MOTO_"))}
    proc = processes.start(
        "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env
    )
    deadline = time.monotonic() + 30
    while not _answers(f"{endpoint}/moto-api/"):
        if proc.poll() is not None:
            raise BenchError(
                f"moto.server exited with {proc.returncode}:\n{processes.log_tail(proc)}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"moto.server did not answer at {endpoint} within 30 s")
        time.sleep(0.1)
    import boto3  # only with S3

    boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    ).create_bucket(Bucket=S3_BUCKET)
    progress(f"moto S3 server at {endpoint}, bucket {S3_BUCKET}")
    return S3(endpoint)


def store_settings(store: str, s3: S3 | None, prefix: str) -> dict[str, Any]:
    """Settings fields for the artifact store: the home's folder, or a prefix on S3."""
    if store == "local":
        return {}
    assert s3 is not None
    return {
        "storage_url": f"s3://{S3_BUCKET}/{prefix}",
        "s3_endpoint_url": s3.endpoint,
        "s3_access_key_id": S3_ACCESS_KEY,
        "s3_secret_access_key": S3_SECRET_KEY,
    }


# -- 1. the flow -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    runs: int
    steps: int
    concurrency: int
    pg_server: str
    py_spy: Path | None
    py_spy_gil: bool
    context_sizes: tuple[int, ...]


def step_rows(engine: sa.Engine, run_id: int) -> list[tuple[str, str, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT step_id, status, started_at, finished_at FROM run_steps"
                " WHERE run_id = :id ORDER BY position"
            ),
            {"id": run_id},
        ).all()
    return [(str(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]


@dataclass(frozen=True, slots=True)
class FlowRun:
    submit_to_final: float
    run: float  # started_at -> finished_at
    phases: dict[str, float]
    first_step: float
    other_steps: list[float]
    between: list[float]
    saves: list[tuple[str, float, int]]
    writes: Counter[str]
    log_lines: int


def one_flow(
    runtime: Runtime, store: CountingStore, writes: WriteCounter, opts: Options
) -> FlowRun:
    engine = runtime.engine
    store.take()
    writes.take()
    submitted = time.time()
    created = runtime.jobs.run(JOB, RunOptions())
    row = wait_run(engine, created.id, "flow", timeout=120.0, interval=0.05)
    assert row.started_at is not None
    assert row.finished_at is not None
    result = runtime.runs.get(created.id).result
    expected = {"i": opts.steps - 1, "ok": True}
    if result != expected:
        raise BenchError(f"run {created.id} returned {result!r}, not {expected!r}")
    steps = step_rows(engine, created.id)
    if len(steps) != opts.steps or any(s[1] != StepStatus.SUCCEEDED for s in steps):
        raise BenchError(f"run {created.id}: steps {[(s[0], s[1]) for s in steps]}")
    durations = [finished - started for _, _, started, finished in steps]
    between = [steps[i + 1][2] - steps[i][3] for i in range(len(steps) - 1)]
    phases = {
        "submit_call": row.created_at - submitted,  # up to the run's INSERT
        "pickup": row.started_at - row.created_at,  # claimed by the worker
        # package unpacked, venv looked up, SDK copied, first context save
        "before_first_step": steps[0][2] - row.started_at,
        "steps": steps[-1][3] - steps[0][2],  # first step's start -> last step's end
        # last save, "All steps ended", log stored and saved, completion written
        "after_last_step": row.finished_at - steps[-1][3],
    }
    return FlowRun(
        submit_to_final=row.finished_at - submitted,
        run=row.finished_at - row.started_at,
        phases=phases,
        first_step=durations[0],
        other_steps=durations[1:],
        between=between,
        saves=store.take(),
        writes=writes.take(),
        log_lines=row.log_count,
    )


def summarise(runs: list[FlowRun], steps: int, warmup: float) -> dict[str, Any]:
    totals = [r.submit_to_final for r in runs]
    run_times = [r.run for r in runs]
    others = [statistics.median(r.other_steps) for r in runs if r.other_steps]
    firsts = [r.first_step for r in runs]
    between = [statistics.median(r.between) for r in runs if r.between]
    save_counts = sorted({len(r.saves) for r in runs})
    put_times = [t for r in runs for _, t, _ in r.saves]
    put_totals = [sum(t for _, t, _ in r.saves) for r in runs]
    tables = sorted(set().union(*(r.writes for r in runs)))
    writes = {name: sorted({r.writes[name] for r in runs}) for name in tables}
    median_total = statistics.median(totals)
    result: dict[str, Any] = {
        "steps": steps,
        "runs": len(runs),
        "warmup_run_ms": ms(warmup),
        "submit_to_final_ms": median_best_ms(totals),
        "run_started_to_finished_ms": median_best_ms(run_times),
        "per_step_overhead_ms": {
            "median": ms(median_total / steps),
            "best": ms(min(totals) / steps),
        },
        "first_step_ms": median_best_ms(firsts),
        "other_steps_median_ms": median_best_ms(others) if others else None,
        "between_steps_median_ms": median_best_ms(between) if between else None,
        "phases_median_ms": {
            name: ms(statistics.median(r.phases[name] for r in runs)) for name in runs[0].phases
        },
        "context_saves_per_run": save_counts[0] if len(save_counts) == 1 else save_counts,
        "context_put_ms": {
            "median": ms(statistics.median(put_times)) if put_times else None,
            "max": ms(max(put_times)) if put_times else None,
            "per_run_total_median": ms(statistics.median(put_totals)),
        },
        "context_bytes_last_save": runs[-1].saves[-1][2] if runs[-1].saves else None,
        "sql_writes_per_run": {name: v[0] if len(v) == 1 else v for name, v in writes.items()},
        "log_lines_per_run": statistics.median(r.log_lines for r in runs),
        "aim_ms": ms(AIM_SECONDS),
        "meets_aim": median_total < AIM_SECONDS,
    }
    if others and firsts:
        result["host_start_estimate_ms"] = ms(statistics.median(firsts) - statistics.median(others))
    return result


def measure_flow(
    kind: str,
    store: str,
    s3: S3 | None,
    opts: Options,
    processes: Processes,
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        scratch = tempfile.TemporaryDirectory(prefix="runwright-steps-bench-")
        workdir = Path(stack.enter_context(scratch))
        home = workdir / "home"
        url = stack.enter_context(fresh_database(kind, workdir, opts.pg_server))
        prefix = f"{kind}-{uuid.uuid4().hex[:8]}"
        settings = Settings(home=home, database_url=url, **store_settings(store, s3, prefix))
        runtime = Runtime.open(settings, create_schema=True)
        stack.callback(runtime.close)
        counting = CountingStore(runtime.store)
        runtime.store = counting  # type: ignore[assignment] - the worker saves through it
        result: dict[str, Any] = {
            "database": kind,
            "database_version": database_version(runtime.engine),
            "store": store,
            "store_url": counting.describe(),
            "executor": f"in-process Worker (Runtime.worker(in_process=True), "
            f"concurrency {opts.concurrency}) in the bench process",
        }
        runtime.jobs.deploy(JOB, flow_package(opts.steps))
        worker = runtime.worker(concurrency=opts.concurrency, in_process=True)
        worker.start()
        stack.callback(worker.stop_and_wait, grace=5.0)
        writes = stack.enter_context(WriteCounter())

        progress(f"{kind}/{store}: warm-up run of {opts.steps} steps (builds the job's venv)")
        warmup = one_flow(runtime, counting, writes, opts).submit_to_final
        interpreter = job_interpreter(home)
        python = [str(interpreter), "-c", "pass"]
        bare_spawn(python)
        spawns = [bare_spawn(python) for _ in range(5)]
        spy = start_py_spy(opts, processes, os.getpid(), f"{kind}-{store}-flow", home)
        progress(f"{kind}/{store}: {opts.runs} runs of the {opts.steps}-step flow")
        runs = []
        for _ in range(opts.runs):
            runs.append(one_flow(runtime, counting, writes, opts))
            time.sleep(0.2)  # let the worker's last writes settle before the next submit
        if spy is not None:
            stop_py_spy(spy, processes)
        result.update(summarise(runs, opts.steps, warmup))
        result["bare_python_c_pass_ms"] = ms(statistics.median(spawns))
        progress(
            f"{kind}/{store}: submit -> final median {result['submit_to_final_ms']['median']} ms "
            f"(best {result['submit_to_final_ms']['best']}), "
            f"{result['per_step_overhead_ms']['median']} ms per step; first step "
            f"{result['first_step_ms']['median']} ms, others "
            f"{(result['other_steps_median_ms'] or {}).get('median')} ms"
        )
        return result
    raise AssertionError("unreachable")


# -- 2. context saves ------------------------------------------------------------------------
ROW_TEMPLATE = {"id": 0, "name": "item-000000", "value": 3.14159, "tags": ["a", "b"]}


def context_of(outputs_bytes: int, steps: int) -> tuple[JobContext, int]:
    """A context of ``steps`` succeeded steps whose outputs total about
    ``outputs_bytes`` of JSON: {"i", "ok"} and a list of small rows each."""
    per_step = outputs_bytes / steps
    base = len(json.dumps({"i": 0, "ok": True, "rows": []}, separators=(",", ":")))
    row = len(json.dumps(ROW_TEMPLATE, separators=(",", ":"))) + 1
    count = max(0, round((per_step - base) / row))
    context = JobContext.new(1, 1, job="context-bench", params={"day": "2026-11-22"})
    now = time.time()
    total = 0
    for n in range(steps):
        state = context.step(f"s{n}")
        rows = [dict(ROW_TEMPLATE, id=n * count + k, name=f"item-{k:06d}") for k in range(count)]
        state.output = {"i": n, "ok": True, "rows": rows}
        state.status = StepStatus.SUCCEEDED
        state.started_at, state.completed_at, state.attempt = now, now, 1
        total += len(json.dumps(state.output, separators=(",", ":")))
    return context, total


def repeats_for(size: int) -> int:
    if size <= 16 * 1024:
        return 50
    if size <= 256 * 1024:
        return 30
    if size <= 2 * 1024**2:
        return 10
    return 5


def measure_context_saves(
    store_name: str, s3: S3 | None, workdir: Path, opts: Options
) -> dict[str, Any]:
    settings = Settings(
        home=workdir / f"home-{store_name}",
        **store_settings(store_name, s3, f"contexts-{uuid.uuid4().hex[:8]}"),
    )
    store = open_store(settings)
    contexts = ContextStore(store)
    result: dict[str, Any] = {"store_url": store.describe(), "steps": opts.steps}
    for size in opts.context_sizes:
        context, outputs = context_of(size, opts.steps)
        repeats = repeats_for(size)
        contexts.save(context)  # first write of the key (folders, connection)
        saves, encodes, refs = [], [], []
        saved = 0
        for _ in range(repeats):
            began = time.perf_counter()
            saved = contexts.save(context)
            saves.append(time.perf_counter() - began)
            began = time.perf_counter()
            json.dumps(masked_json(context, frozenset(), set()), separators=(",", ":"), default=str)
            encodes.append(time.perf_counter() - began)
            began = time.perf_counter()
            context.references()
            refs.append(time.perf_counter() - began)
        loaded = contexts.load(1, 1)
        if len(loaded.steps) != opts.steps:
            raise BenchError(f"context of {size} bytes did not load back")
        label = size_label(size)
        result[label] = {
            "outputs_bytes": outputs,
            "saved_bytes": saved,
            "saves": repeats,
            "save_ms": {"median": ms(statistics.median(saves)), "best": ms(min(saves))},
            "encode_ms": ms(statistics.median(encodes)),
            "references_ms": ms(statistics.median(refs)),
        }
        progress(
            f"context saves ({store_name}): {label} of outputs ({saved} bytes saved): "
            f"{result[label]['save_ms']['median']} ms per save (json "
            f"{result[label]['encode_ms']} ms, references() {result[label]['references_ms']} ms)"
        )
    return result


def size_label(size: int) -> str:
    for unit, factor in (("M", 1024**2), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark runwright's multi-step jobs: a flow of light python steps "
        "end to end, and job-context saves by size. One JSON line on stdout."
    )
    add_common_arguments(
        parser,
        limit="180 per database and store, plus 120 for the context saves",
        py_spy="record the bench process (its in-process worker) with py-spy during the "
        "measured flow runs of each database and store (raw stacks in DIR); slows the "
        "worker, so its figures are not comparable",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres", "both"),
        default=None,
        help="database(s) the flow runs on (default both); overrides --databases",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="measured runs of the flow, after a warm-up (default 5)"
    )
    parser.add_argument("--steps", type=int, default=40, help="steps in the flow (default 40)")
    parser.add_argument(
        "--stores",
        default="local,s3",
        help="artifact stores: local and/or s3 (moto's server, skipped when moto is not "
        "installed); default local,s3",
    )
    parser.add_argument(
        "--context-sizes",
        default="1K,100K,1M,10M",
        help="step outputs' total size per saved context (default 1K,100K,1M,10M); "
        "'none' skips the context saves",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="in-process worker concurrency (default 4)"
    )
    args = parser.parse_args(argv)
    if args.database is not None:
        args.databases = "sqlite,postgres" if args.database == "both" else args.database
    args.database_list = [d.strip() for d in args.databases.split(",") if d.strip()]
    for name in args.database_list:
        if name not in ("sqlite", "postgres"):
            parser.error(f"unknown database {name!r}: use sqlite and/or postgres")
    args.store_list = [s.strip() for s in args.stores.split(",") if s.strip()]
    for name in args.store_list:
        if name not in ("local", "s3"):
            parser.error(f"unknown store {name!r}: use local and/or s3")
    if args.context_sizes.strip().lower() == "none":
        args.size_list = ()
    else:
        try:
            args.size_list = tuple(parse_size(s) for s in args.context_sizes.split(",") if s)
        except ValueError:
            parser.error("--context-sizes takes sizes like 1K,100K,1M,10M")
    if args.runs < 1 or args.steps < 2 or args.concurrency < 1:
        parser.error("--runs and --concurrency must be at least 1, --steps at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    combos = [(db, store) for db in args.database_list for store in args.store_list]
    limit = args.time_limit or (180.0 + args.wait_quiet) * len(combos) + 120.0
    opts = Options(
        runs=args.runs,
        steps=args.steps,
        concurrency=args.concurrency,
        pg_server=args.pg_server.rstrip("/"),
        py_spy=args.py_spy,
        py_spy_gil=args.py_spy_gil,
        context_sizes=args.size_list,
    )
    line: dict[str, Any] = {"bench": "steps", "steps": args.steps, "runs": args.runs}
    flow: dict[str, dict[str, Any]] = {}
    saves: dict[str, Any] = {}
    began = time.monotonic()
    status = 0
    with (
        tempfile.TemporaryDirectory(prefix="runwright-steps-bench-logs-") as logs,
        tempfile.TemporaryDirectory(prefix="runwright-steps-bench-") as scratch,
    ):
        processes = Processes(Path(logs))
        try:
            with time_limited(processes, limit):
                s3: S3 | None = None
                if "s3" in args.store_list:
                    try:
                        s3 = start_moto(processes, Path(scratch))
                    except BenchError as exc:
                        progress(f"S3: {exc}")
                        line["s3_skipped"] = str(exc)
                for kind, store in combos:
                    if store == "s3" and s3 is None:
                        continue
                    busy = wait_until_quiet(args.wait_quiet)
                    try:
                        figures = measure_flow(kind, store, s3, opts, processes)
                    except BenchError as exc:
                        progress(f"{kind}/{store}: FAILED: {exc}")
                        figures = {"error": str(exc)}
                        status = 1
                    figures["machine_busy_pct_before"] = busy
                    flow.setdefault(kind, {})[store] = figures
                for store in args.store_list if opts.context_sizes else ():
                    if store == "s3" and s3 is None:
                        continue
                    try:
                        saves[store] = measure_context_saves(store, s3, Path(scratch), opts)
                    except BenchError as exc:
                        progress(f"context saves ({store}): FAILED: {exc}")
                        saves[store] = {"error": str(exc)}
                        status = 1
        except BenchAborted as exc:
            progress(f"ABORTED: {exc}; subprocesses stopped and databases dropped")
            return 2
    line.update(
        flow=flow,
        context_save=saves,
        aim_s=AIM_SECONDS,
        anchors=ANCHORS,
        bench_seconds=round(time.monotonic() - began, 1),
        git=git_revision(),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        cpu_model=cpu_model(),
        platform=platform.platform(),
        runwright=runwright.__version__,
    )
    if args.py_spy is not None:
        line["profiled"] = True  # py-spy slowed it: not comparable
    print(json.dumps(line), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
