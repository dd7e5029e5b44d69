"""Job code executed for real: packages fetched and extracted, job processes in their
sandbox, every output line captured, on SQLite and PostgreSQL.

Workers run in the test process (in_process=True) and start real subprocesses; the live
events test and `runwright dev` run the CLI as subprocesses.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from runwright.artifacts.keys import log_key
from runwright.artifacts.package import build_from_files
from runwright.config import Settings
from runwright.errors import ExecutionFailed
from runwright.model.runs import LogLine, Run
from runwright.model.states import Outcome, RunStatus
from runwright.services.jobs import Deployed, RunOptions
from runwright.services.runtime import Runtime
from runwright.worker import venvs
from runwright.worker.code import CodeExecutor
from runwright.worker.context import TaskContext
from runwright.worker.logsink import LogSink
from runwright.worker.worker import Worker
from tests.e2e.test_cli import start_server
from tests.helpers import wait_for_run, wait_until
from tests.procs import Processes, cli_env, free_port, run_cli

Files = dict[str, str | bytes]


# -- the rig: a runtime with in-process workers ----------------------------------------------
@dataclass
class Rig:
    runtime: Runtime
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def deploy(
        self, job: str, files: Files, manifest: str = 'entrypoint = "main.py"\n'
    ) -> Deployed:
        entries = [("runwright.toml", manifest.encode(), False)]
        for name, content in files.items():
            entries.append((name, content.encode() if isinstance(content, str) else content, False))
        return self.runtime.jobs.deploy(job, build_from_files(entries).data)

    def script(self, job: str, source: str, **files: str) -> Deployed:
        return self.deploy(job, {"main.py": source, **files})

    def run(self, job: str, **options: Any) -> Run:
        return self.runtime.jobs.run(job, RunOptions(**options))

    def wait(self, run_id: int, timeout: float = 30.0) -> Run:
        """The final run, once its log is complete too (log_count is set last)."""
        wait_for_run(self.runtime, run_id, timeout=timeout)
        return wait_until(
            lambda: self._complete(run_id),
            timeout=10,
            what=f"the log of run {run_id} to be complete",
        )

    def _complete(self, run_id: int) -> Run | None:
        run = self.runtime.runs.get(run_id)
        if run.log_count and self.runtime.logs.last_seq(run_id) >= run.log_count:
            return run
        return None

    def lines(self, run_id: int) -> list[LogLine]:
        found: list[LogLine] = []
        while True:
            page = self.runtime.logs.page(run_id, after=found[-1].seq if found else 0, limit=5000)
            found.extend(page)
            if len(page) < 5000:
                return found

    def messages(self, run_id: int, stream: str | None = None) -> list[str]:
        return [x.message for x in self.lines(run_id) if stream is None or x.stream == stream]


@pytest.fixture
def make_rig(settings: Settings) -> Iterator[Callable[..., Rig]]:
    opened: list[Rig] = []

    def make(*, workers: int = 1, concurrency: int = 2, **overrides: Any) -> Rig:
        runtime = Runtime.open(
            settings.with_overrides(job_kill_grace=0.5, **overrides), create_schema=True
        )
        rig = Rig(runtime=runtime)
        opened.append(rig)
        for _ in range(workers):
            worker = runtime.worker(concurrency=concurrency, in_process=True)
            worker.start()
            rig.workers.append(worker)
        return rig

    try:
        yield make
    finally:
        for rig in opened:
            for worker in rig.workers:
                worker.stop_and_wait(grace=1)
            rig.runtime.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def gone(pid: int) -> bool:
    """True when no process ``pid`` runs any more (a zombie waiting for init counts as
    gone: it holds no resources and runs no code)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return state.split()[1] in {"Z", "X"}


# A job that starts a child `sleep 300`, writes both pids to argv[1], and sleeps; it ignores
# SIGTERM itself (only the SIGKILL after job_kill_grace ends it), while its child does not.
SLEEPER = """\
import os, signal, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as handle:
    handle.write(f"{os.getpid()} {child.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print("sleeping", flush=True)
time.sleep(300)
"""


def read_pids(path: Path) -> list[int]:
    wait_until(path.exists, timeout=20, what=f"the job to write {path}")
    return [int(x) for x in path.read_text().split()]


# -- output capture --------------------------------------------------------------------------
TEN_THOUSAND = """\
for i in range(1, 10001):
    if i % 1000 == 0:
        print(f"ERROR: line {i} failed")
    elif i % 1000 == 500:
        print(f"line {i}: warning, disk almost full")
    else:
        print(f"line {i}")
"""


def test_ten_thousand_lines_are_stored_in_order_with_levels(rig: Rig) -> None:
    deployed = rig.script("chatty", TEN_THOUSAND)
    run = rig.run("chatty")
    started = time.monotonic()
    done = rig.wait(run.id, timeout=60)
    took = time.monotonic() - started
    assert done.status is RunStatus.SUCCEEDED, done.error
    lines = rig.lines(run.id)
    assert [x.seq for x in lines] == list(range(1, len(lines) + 1))
    assert done.log_count == len(lines)
    stdout = [x for x in lines if x.stream == "stdout"]
    assert len(stdout) == 10_000
    numbers = [int(re.search(r"line (\d+)", x.message).group(1)) for x in stdout]  # type: ignore[union-attr]
    assert numbers == list(range(1, 10_001))
    levels = {x.message: x.level for x in stdout}
    assert levels["ERROR: line 1000 failed"] == "error"
    assert levels["line 1500: warning, disk almost full"] == "warning"
    assert levels["line 1501"] == "info"
    assert sum(x.level == "error" for x in stdout) == 10
    assert sum(x.level == "warning" for x in stdout) == 10
    system = [x.message for x in lines if x.stream == "system"]
    assert system[0].startswith(f"Job chatty v1 ({deployed.package.sha256[:12]}), attempt 1 of 1")
    assert system[-1].startswith("Exited with code 0")
    assert [x.ts for x in lines] == sorted(x.ts for x in lines)

    key = log_key(deployed.job.id, run.id)
    assert key == f"jobs/{deployed.job.id}/executions/{run.id}/log.txt"
    text = rig.runtime.store.get(key).decode().splitlines()
    assert len(text) == len(lines)
    assert text[-1].split(" ", 3)[1:] == ["system", "info", system[-1]]
    assert sum(" stdout " in row for row in text) == 10_000
    print(f"\n10,000 lines: run final and log complete {took:.2f}s after submit")


# -- live events -------------------------------------------------------------------------------
def parse_events(lines: Iterator[str]) -> Iterator[tuple[str, str | None, Any]]:
    name, event_id, data = "message", None, []
    for line in lines:
        if not line:
            if data:
                yield name, event_id, json.loads("\n".join(data))
            name, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "id":
                event_id = value
            elif key == "data":
                data.append(value)


FINAL_EVENTS = {"completed", "failed", "canceled"}


def test_live_events_arrive_before_the_end_and_resume_after_the_last_line(
    database_url: str, tmp_path: Path
) -> None:
    procs = Processes(tmp_path / "logs")
    try:
        server = start_server(procs, tmp_path / "server-home", "--database-url", database_url)
        _live_events(server.url, procs, server.headers)
    finally:
        procs.kill_all()


def _live_events(url: str, procs: Processes, headers: dict[str, str]) -> None:
    script = "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')\n"
    data = build_from_files(
        [
            ("runwright.toml", b'entrypoint = "main.py"\n', False),
            ("main.py", script.encode(), False),
        ]
    ).data
    failing = build_from_files(
        [
            ("runwright.toml", b'entrypoint = "main.py"\n', False),
            ("main.py", b"import sys\nprint('about to fail')\nsys.exit(2)\n", False),
        ]
    ).data
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0)) as http:
        for job, zipped in (("live", data), ("dies", failing)):
            response = http.post(
                f"/api/jobs/{job}/packages", files={"file": ("p.zip", zipped, "application/zip")}
            )
            assert response.status_code == 201, response.text
        submitted = time.monotonic()
        run_id = http.post("/api/jobs/live/runs", json={}).json()["id"]

        first: dict[str, Any] = {}
        seen: list[int] = []
        with http.stream("GET", f"/api/runs/{run_id}/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for name, event_id, payload in parse_events(stream.iter_lines()):
                assert name not in FINAL_EVENTS, f"the run ended before 'first' arrived: {payload}"
                if name == "log":
                    seen.append(payload["seq"])
                    assert event_id == str(payload["seq"])
                    if payload["message"] == "first":
                        first = payload
                        break
            status_then = http.get(f"/api/runs/{run_id}").json()["status"]
        latency = time.monotonic() - submitted
        assert first, procs.tails()
        assert status_then == "running"  # the line came while the run was still going
        assert seen == list(range(1, first["seq"] + 1))

        events: list[tuple[str, Any]] = []
        headers = {"Last-Event-ID": str(first["seq"])}
        with http.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as stream:
            for name, _, payload in parse_events(stream.iter_lines()):
                events.append((name, payload))
                if name in FINAL_EVENTS:
                    break
        resumed = [p["seq"] for n, p in events if n == "log"]
        assert resumed[0] == first["seq"] + 1
        assert seen + resumed == list(range(1, len(seen) + len(resumed) + 1))  # no gap, no dup
        assert "second" in [p["message"] for n, p in events if n == "log"]
        final_name, final = events[-1]
        assert final_name == "completed"
        assert final["status"] == "succeeded"
        assert final["log_count"] == seen[-1] + len(resumed)

        failed_id = http.post("/api/jobs/dies/runs", json={}).json()["id"]
        with http.stream("GET", f"/api/runs/{failed_id}/events") as stream:
            names = []
            for name, _, data in parse_events(stream.iter_lines()):
                names.append(name)
                final = data
                if name in FINAL_EVENTS:
                    break
        assert names[-1] == "failed"
        assert final["exit_code"] == 2
        assert "about to fail" not in final["error"]  # stdout is not the error tail
    print(f"\nfirst live line {latency:.2f}s after submitting the run")


# -- stopping jobs -------------------------------------------------------------------------------
def test_cancel_stops_the_whole_process_group(rig: Rig, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    rig.script("sleeper", SLEEPER)
    run = rig.run("sleeper", args=[str(pid_file)])
    pids = read_pids(pid_file)
    assert not any(gone(pid) for pid in pids)
    asked = time.monotonic()
    rig.runtime.runs.cancel(run.id)
    canceled = wait_for_run(rig.runtime, run.id, timeout=10)
    took = time.monotonic() - asked
    assert (canceled.status, canceled.outcome) == (RunStatus.CANCELED, Outcome.CANCELED)
    # a couple of heartbeats to notice, then SIGTERM, which the job ignores, and SIGKILL
    bound = 3 * rig.settings.heartbeat_interval + rig.settings.job_kill_grace + 1.0
    assert took < bound, f"canceled after {took:.2f}s"
    wait_until(
        lambda: all(gone(pid) for pid in pids),
        timeout=rig.settings.job_kill_grace + 5,
        what=f"processes {pids} (the job and its child) to be gone",
    )
    done = rig.wait(run.id)
    assert "sleeping" in rig.messages(run.id, "stdout")
    assert any(m.startswith("Stopped by runwright") for m in rig.messages(run.id, "system"))
    assert done.status is RunStatus.CANCELED
    print(f"\ncanceled {took:.2f}s after the request")


def test_a_timeout_fails_the_run_and_stops_its_processes(rig: Rig, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    rig.script("slow", SLEEPER)
    run = rig.run("slow", args=[str(pid_file)], timeout=1.0)
    pids = read_pids(pid_file)
    done = wait_for_run(rig.runtime, run.id, timeout=15)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.TIMED_OUT)
    assert "Timed out after 1s" in (done.error or "")
    assert done.duration is not None
    assert 1.0 <= done.duration < 3.0
    wait_until(lambda: all(gone(pid) for pid in pids), timeout=6, what="the job's processes")


def test_a_timed_out_run_is_final_only_once_its_log_is_complete(rig: Rig, tmp_path: Path) -> None:
    """Followers (SSE, `runwright run --follow`, `runwright dev`) stop at the final
    status: a run must not be final while its last lines are still being written."""
    rig.script("slow2", "import time\nprint('working', flush=True)\ntime.sleep(30)\n")
    run = rig.run("slow2", timeout=1.0)
    at_final = wait_until(
        lambda: (
            (r := rig.runtime.runs.get(run.id)).status.is_final
            and (r, rig.runtime.logs.last_seq(run.id))
        ),
        timeout=15,
        interval=0.005,
        what="the run to be final",
    )
    final_run, stored_then = at_final
    done = rig.wait(run.id)
    assert (final_run.log_count, stored_then) == (done.log_count, done.log_count), (
        f"when the run became final its log_count was {final_run.log_count} and "
        f"{stored_then} lines were stored; in the end there are {done.log_count}"
    )


def test_a_memory_hog_fails_with_out_of_memory(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(job_memory_mb=200)
    rig.script("hog", "data = bytearray(1024 ** 3)\nprint(len(data))\n")
    done = rig.wait(rig.run("hog").id)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.OUT_OF_MEMORY)
    assert "ran out of memory (limit 200 MB)" in (done.error or "")
    assert done.exit_code == 1
    assert "MemoryError" in rig.messages(done.id, "stderr")


def test_a_non_zero_exit_fails_with_the_code_and_the_last_stderr_lines(rig: Rig) -> None:
    rig.script(
        "exits",
        "import sys\nprint('working')\n"
        "for i in range(30):\n    print(f'problem {i}', file=sys.stderr)\nsys.exit(3)\n",
    )
    done = rig.wait(rig.run("exits").id)
    assert (done.status, done.outcome, done.exit_code) == (RunStatus.FAILED, Outcome.ERROR, 3)
    error = done.error or ""
    assert "exited with code 3" in error
    assert "problem 29" in error
    assert "problem 20" in error
    assert "problem 19\n" not in error  # only the last lines
    assert "working" not in error
    stderr = [x for x in rig.lines(done.id) if x.stream == "stderr"]
    assert [x.message for x in stderr] == [f"problem {i}" for i in range(30)]


def test_a_job_killed_by_a_signal_fails_as_killed(rig: Rig) -> None:
    rig.script("suicide", "import os\nprint('bye', flush=True)\nos.kill(os.getpid(), 9)\n")
    done = rig.wait(rig.run("suicide").id)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.KILLED)
    assert "killed by SIGKILL" in (done.error or "")
    assert done.exit_code is None
    assert "bye" in rig.messages(done.id, "stdout")


def test_an_uncaught_exception_keeps_its_traceback_at_error(rig: Rig) -> None:
    rig.script("raises", "def load():\n    raise ValueError('bad row 3')\nload()\n")
    done = rig.wait(rig.run("raises").id)
    assert (done.status, done.exit_code) == (RunStatus.FAILED, 1)
    stderr = [x for x in rig.lines(done.id) if x.stream == "stderr"]
    assert stderr[0].message == "Traceback (most recent call last):"
    assert stderr[-1].message == "ValueError: bad row 3"
    assert {x.level for x in stderr} == {"error"}
    assert "ValueError: bad row 3" in (done.error or "")


def test_a_script_in_a_subfolder_imports_its_sibling_modules(rig: Rig) -> None:
    """entrypoint = "app/main.py" runs like `python app/main.py`: app/ is on sys.path."""
    rig.deploy(
        "nested",
        {"app/main.py": "import helpers\nprint(helpers.X)\n", "app/helpers.py": "X = 'sibling'\n"},
        manifest='entrypoint = "app/main.py"\n',
    )
    done = rig.wait(rig.run("nested").id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert rig.messages(done.id, "stdout") == ["sibling"]


class _StoringSink:
    """A LogSink stand-in that stores lines synchronously in wait_stored and keeps the
    database's refusals instead of retrying them forever."""

    def __init__(self, rig: Rig) -> None:
        self._logs = rig.runtime.logs
        self.pending: list[LogLine] = []
        self.refused: list[str] = []

    def emit(self, line: LogLine) -> None:
        self.pending.append(line)

    def wait_stored(self, run_id: int, seq: int, timeout: float = 60.0) -> bool:
        batch, self.pending = self.pending, []
        try:
            self._logs.append(batch)
        except Exception as exc:
            self.refused.append(str(exc))
            return False
        return True


def test_each_attempt_of_a_retried_run_keeps_its_lines(make_rig: Callable[..., Rig]) -> None:
    """Attempt 2 of a run numbers its lines from 1 again, but log_lines is UNIQUE
    (run_id, seq): the batch is refused. Through a worker, its LogSink then retries that
    batch forever, the run stays `running` and no other run of that worker gets its lines
    stored. Here the executor is called directly, attempt after attempt."""
    rig = make_rig(workers=0)
    rig.script(
        "flaky",
        "import os, sys\nattempt = os.environ['RUNWRIGHT_ATTEMPT']\n"
        "print('attempt', attempt)\nsys.exit(0 if attempt == '2' else 1)\n",
    )
    run = rig.run("flaky", max_attempts=2)
    sink = _StoringSink(rig)
    executor = CodeExecutor(
        settings=rig.settings,
        store=rig.runtime.store,
        logs=rig.runtime.logs,
        sink=sink,  # type: ignore[arg-type]
        steps=rig.runtime.steps,
        variables=rig.runtime.variables.resolve,
    )

    def attempt(number: int) -> None:
        executor(
            TaskContext(
                run_id=run.id,
                type="package",
                payload=run.payload,
                attempt=number,
                max_attempts=2,
                progress=lambda percent, message: None,
            )
        )

    with pytest.raises(ExecutionFailed, match="exited with code 1"):
        attempt(1)
    attempt(2)
    assert sink.refused == []
    lines = rig.lines(run.id)
    assert [x.seq for x in lines] == list(range(1, len(lines) + 1))
    assert [x.message for x in lines if x.stream == "stdout"] == ["attempt 1", "attempt 2"]
    assert rig.runtime.runs.get(run.id).log_count == len(lines)
    # The full log in the store holds every attempt, not just the last one.
    saved = rig.runtime.store.get(log_key(run.job_id, run.id)).decode().splitlines()
    assert len(saved) == len(lines)
    assert [x for x in saved if x.endswith(("attempt 1", "attempt 2"))] == [
        saved[i] for i, x in enumerate(lines) if x.stream == "stdout"
    ]


def test_a_line_the_database_refuses_costs_no_other_runs_lines(
    make_rig: Callable[..., Rig],
) -> None:
    """The LogSink batches the lines of every run of a worker together: one line the
    database refuses (here a line number taken already) must not take the other lines
    of its batch, those of other runs included, down with it."""
    rig = make_rig(workers=0)
    logs = rig.runtime.logs
    logs.append([LogLine(2, 1, time.time(), "stdout", "info", "already stored")])
    sink = LogSink(logs)
    try:
        for seq in range(1, 6):
            sink.emit(LogLine(1, seq, time.time(), "stdout", "info", f"run 1 line {seq}"))
        sink.emit(LogLine(2, 1, time.time(), "stdout", "info", "a duplicate number"))
        sink.emit(LogLine(2, 2, time.time(), "stdout", "info", "run 2 line 2"))
        for seq in range(6, 11):
            sink.emit(LogLine(1, seq, time.time(), "stdout", "info", f"run 1 line {seq}"))
        assert sink.wait_stored(1, 10, timeout=10)
        assert sink.wait_stored(2, 2, timeout=10)
    finally:
        sink.close()
    assert [x.message for x in logs.page(1)] == [f"run 1 line {i}" for i in range(1, 11)]
    assert [x.message for x in logs.page(2)] == ["already stored", "run 2 line 2"]


def test_stopping_one_worker_leaves_another_workers_jobs_alone(
    make_rig: Callable[..., Rig],
) -> None:
    """Two workers in one process (Runtime.worker called twice): a stopping worker
    kills the process groups of its own unfinished runs, never the other's."""
    rig = make_rig(workers=0, shutdown_grace=0.0)
    rig.script("nap", "import time\nprint('napping', flush=True)\ntime.sleep(2)\nprint('up')\n")
    leaving = rig.runtime.worker(concurrency=1, queues=("qa",), in_process=True)
    staying = rig.runtime.worker(concurrency=1, queues=("qb",), in_process=True)
    rig.workers += [leaving, staying]
    leaving.start()
    staying.start()
    on_a = rig.run("nap", queue="qa")
    on_b = rig.run("nap", queue="qb")
    for run in (on_a, on_b):
        wait_until(
            lambda run=run: "napping" in rig.messages(run.id, "stdout"),
            timeout=20,
            what=f"run {run.id} to start",
        )
    leaving.stop_and_wait(grace=0)
    rig.workers.remove(leaving)
    done = rig.wait(on_b.id)
    assert done.status is RunStatus.SUCCEEDED, f"{done.outcome}: {done.error}"
    assert rig.messages(on_b.id, "stdout") == ["napping", "up"]


# -- the job's environment -------------------------------------------------------------------
WORKER_SECRETS = {
    "RUNWRIGHT_DATABASE_URL": "postgresql://rw:db-pass-5813@db.internal/rw",
    "RUNWRIGHT_S3_ACCESS_KEY_ID": "AKIA-ACCESS-2718",
    "RUNWRIGHT_S3_SECRET_ACCESS_KEY": "s3-secret-3141",
    "RUNWRIGHT_SECRET_KEY": "secret-key-1618",
    "RUNWRIGHT_TOKEN": "api-token-1414",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-1732",
}


def test_the_job_sees_none_of_the_workers_settings(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNWRIGHT_JOB_CONFIG__DB__HOST", "db-from-the-host")
    monkeypatch.setenv("TZ", "Europe/Paris")
    rig.script(
        "envdump",
        "import json, os\nfrom runwright import sdk\n"
        "print('ENV ' + json.dumps(dict(os.environ)))\n"
        "print('CWD ' + os.getcwd())\n"
        "print('CONFIG ' + json.dumps(sdk.config))\n",
    )
    done = rig.wait(rig.run("envdump").id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    out = {m.split(" ", 1)[0]: m.split(" ", 1)[1] for m in rig.messages(done.id, "stdout")}
    env = json.loads(out["ENV"])
    everything = "\n".join(rig.messages(done.id))
    for value in WORKER_SECRETS.values():
        assert value not in everything
    runwright_names = {name for name in env if name.startswith("RUNWRIGHT_")}
    assert runwright_names == {
        "RUNWRIGHT_SDK_CONTEXT",
        "RUNWRIGHT_SDK_FD",
        "RUNWRIGHT_RUN_ID",
        "RUNWRIGHT_JOB",
        "RUNWRIGHT_ATTEMPT",
    }
    assert not [name for name in env if name.startswith("AWS_")]
    assert (env["RUNWRIGHT_RUN_ID"], env["RUNWRIGHT_JOB"]) == (str(done.id), "envdump")
    run_folder = os.path.realpath(rig.settings.home / "runs" / f"{done.id}-1")
    assert os.path.realpath(env["HOME"]) == run_folder
    assert os.path.realpath(out["CWD"]) == run_folder
    assert env["TZ"] == "Europe/Paris"  # passed through on purpose
    assert json.loads(out["CONFIG"]) == {"db": {"host": "db-from-the-host"}}
    assert not Path(run_folder).exists()  # the run folder is removed afterwards


def test_secrets_from_the_configuration_are_masked(rig: Rig) -> None:
    deployed = rig.deploy(
        "leaky",
        {
            "config.json": json.dumps({"db": {"host": "db1", "password": "s3cr3t-value"}}),
            "main.py": "import sys\nfrom runwright import sdk\n"
            "password = sdk.config['db']['password']\n"
            "print(f'connecting to db1 with password={password}')\n"
            "print(password)\n"
            "print(f'ERROR: login refused for {password}', file=sys.stderr)\n"
            "sys.exit(1)\n",
        },
    )
    done = rig.wait(rig.run("leaky").id)
    assert done.status is RunStatus.FAILED
    stdout = rig.messages(done.id, "stdout")
    assert stdout == ["connecting to db1 with password=****", "****"]
    assert rig.messages(done.id, "stderr") == ["ERROR: login refused for ****"]
    assert "s3cr3t-value" not in (done.error or "")
    assert "login refused for ****" in (done.error or "")
    log_text = rig.runtime.store.get(log_key(deployed.job.id, done.id)).decode()
    assert "s3cr3t-value" not in log_text
    assert log_text.count("****") == 3


# -- the SDK -----------------------------------------------------------------------------------
SDK_JOB = """\
from __future__ import annotations

import json, sys, time
from dataclasses import dataclass
from pathlib import Path

from runwright import sdk


@dataclass
class Summary:  # a dataclass in __main__, as scripts often have
    rows: int
    n: int


def main() -> None:
    print("VALUES " + json.dumps({
        "params": sdk.params, "args": sdk.args, "argv": sys.argv[1:], "config": sdk.config,
        "environment": sdk.environment, "run_id": sdk.run_id, "job": sdk.job,
    }))
    print("DATA " + (Path(__file__).parent / "data" / "rows.txt").read_text().strip())
    sdk.progress(40, "copied 4 of 10 files")
    gate = Path(sdk.params["gate"])
    deadline = time.time() + 20
    while not gate.exists() and time.time() < deadline:
        time.sleep(0.02)
    sdk.set_result({"ignored": True})
    sdk.set_result(Summary(rows=10, n=sdk.params["n"]).__dict__)


if __name__ == "__main__":
    main()
"""


def test_sdk_values_progress_and_result(rig: Rig, tmp_path: Path) -> None:
    rig.deploy(
        "sdkjob",
        {
            "main.py": SDK_JOB,
            "config.json": json.dumps({"a": 1, "nested": {"x": 1, "y": 2}}),
            "config.staging.json": json.dumps({"nested": {"y": 3}}),
            "data/rows.txt": "ten rows\n",
        },
    )
    gate = tmp_path / "gate"
    run = rig.run(
        "sdkjob", params={"n": 3, "gate": str(gate)}, args=["--flag", "v"], environment="staging"
    )
    running = wait_until(
        lambda: (r := rig.runtime.runs.get(run.id)).progress.percent is not None and r,
        timeout=20,
        what="the progress report",
    )
    assert running.status is RunStatus.RUNNING
    assert (running.progress.percent, running.progress.message) == (40.0, "copied 4 of 10 files")
    gate.touch()
    done = rig.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.result == {"rows": 10, "n": 3}
    stdout = rig.messages(run.id, "stdout")
    assert stdout[1] == "DATA ten rows"  # __file__ finds the package's data files
    values = json.loads(stdout[0].removeprefix("VALUES "))
    assert values == {
        "params": {"n": 3, "gate": str(gate)},
        "args": ["--flag", "v"],
        "argv": ["--flag", "v"],
        "config": {"a": 1, "nested": {"x": 1, "y": 3}},
        "environment": "staging",
        "run_id": run.id,
        "job": "sdkjob",
    }


def test_a_function_entrypoint_returns_the_result(rig: Rig) -> None:
    files: Files = {
        "app/__init__.py": "",
        "app/jobs.py": "from runwright import sdk\n\n"
        "def main(params):\n"
        "    print('doubling', params['n'])\n"
        "    return {'doubled': params['n'] * 2, 'environment': sdk.environment}\n\n"
        "async def later():\n"
        "    return 'async result'\n\n"
        "def nothing():\n"
        "    print('no result')\n",
    }
    rig.deploy("fn", files, manifest='entrypoint = "app.jobs:main"\n')
    done = rig.wait(rig.run("fn", params={"n": 21}).id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.result == {"doubled": 42, "environment": None}
    assert rig.messages(done.id, "stdout") == ["doubling 21"]

    rig.deploy("fn", files, manifest='entrypoint = "app.jobs:later"\n')
    done = rig.wait(rig.run("fn").id)
    assert (done.status, done.result) == (RunStatus.SUCCEEDED, "async result")
    rig.deploy("fn", files, manifest='entrypoint = "app.jobs:nothing"\n')
    done = rig.wait(rig.run("fn").id)
    assert (done.status, done.result) == (RunStatus.SUCCEEDED, None)


# -- requirements --------------------------------------------------------------------------
def make_wheel(folder: Path, name: str, version: str, module: str) -> Path:
    """A pure-Python wheel written by hand (the venv has setuptools 65 but no `wheel`,
    so `pip wheel --no-build-isolation` cannot build one)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: runwright-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder, "tinypkg", "0.1", 'VALUE = "tiny 0.1"\n')
    return folder


def test_requirements_install_from_local_wheels_and_the_venv_is_reused(
    make_rig: Callable[..., Rig], wheels: Path
) -> None:
    rig = make_rig(find_links=str(wheels), offline=True)
    rig.deploy(
        "deps",
        {"main.py": "import tinypkg\nprint('TINY', tinypkg.VALUE)\n"},
        manifest='entrypoint = "main.py"\nrequirements = ["tinypkg==0.1"]\n',
    )
    first = rig.wait(rig.run("deps").id, timeout=60)
    assert first.status is RunStatus.SUCCEEDED, first.error
    system = rig.messages(first.id, "system")
    assert "Installing requirements: tinypkg==0.1" in system
    assert "Built the job environment" in system
    assert rig.messages(first.id, "stdout") == ["TINY tiny 0.1"]

    second = rig.wait(rig.run("deps").id, timeout=60)
    assert second.status is RunStatus.SUCCEEDED, second.error
    system = rig.messages(second.id, "system")
    assert "Using the cached job environment" in system
    assert not [m for m in system if m.startswith(("Installing", "Creating"))]
    assert rig.messages(second.id, "stdout") == ["TINY tiny 0.1"]


def test_a_missing_requirement_fails_the_run_with_uvs_message(
    make_rig: Callable[..., Rig], wheels: Path
) -> None:
    rig = make_rig(find_links=str(wheels), offline=True)
    rig.deploy(
        "nodeps",
        {"main.py": "print('never')\n"},
        manifest='entrypoint = "main.py"\nrequirements = ["tinypkg==9.9"]\n',
    )
    done = rig.wait(rig.run("nodeps").id, timeout=60)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    assert "Could not install the requirements" in (done.error or "")
    assert "tinypkg" in (done.error or "")
    assert rig.messages(done.id, "stdout") == []


def test_two_workers_building_the_same_venv_at_once_both_succeed(
    make_rig: Callable[..., Rig], wheels: Path
) -> None:
    rig = make_rig(workers=2, concurrency=1, find_links=str(wheels), offline=True)
    rig.deploy(
        "shared",
        {"main.py": "import tinypkg\nprint('TINY', tinypkg.VALUE)\n"},
        manifest='entrypoint = "main.py"\nrequirements = ["tinypkg>=0.1"]\n',
    )
    runs = [rig.run("shared"), rig.run("shared")]
    done = [rig.wait(r.id, timeout=60) for r in runs]
    assert [d.status for d in done] == [RunStatus.SUCCEEDED] * 2, [d.error for d in done]
    assert {d.worker_id for d in done} == {w.id for w in rig.workers}
    said = sorted(
        m for d in done for m in rig.messages(d.id, "system") if m.endswith("job environment")
    )
    assert said == ["Built the job environment", "Using the cached job environment"]


def test_concurrent_ensure_venv_builds_once(tmp_path: Path, wheels: Path) -> None:
    barrier = threading.Barrier(3)
    results: list[tuple[Path, bool]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(
                venvs.ensure_venv(
                    tmp_path / "cache",
                    ("tinypkg==0.1",),
                    None,
                    log=lambda _: None,
                    find_links=str(wheels),
                    offline=True,
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len({path for path, _ in results}) == 1
    assert sorted(built for _, built in results) == [False, False, True]


LEAKY_BACKEND = """\
import base64, hashlib, os, zipfile

WATCHED = ("RUNWRIGHT_DATABASE_URL", "RUNWRIGHT_S3_SECRET_ACCESS_KEY", "RUNWRIGHT_SECRET_KEY",
           "AWS_SECRET_ACCESS_KEY")


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    seen = {name: os.environ[name] for name in WATCHED if name in os.environ}
    files = {
        "leaky/__init__.py": f"SEEN = {seen!r}\\n".encode(),
        "leaky-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: leaky\\nVersion: 0.1\\n",
        "leaky-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: t\\n"
        b"Root-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    name = "leaky-0.1-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append("leaky-0.1.dist-info/RECORD,,")
        zf.writestr("leaky-0.1.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
"""


def make_leaky_sdist(folder: Path) -> None:
    """An sdist whose in-tree build backend records the secrets it can see."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "leaky-0.1/pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
        'backend-path = ["."]\n\n[project]\nname = "leaky"\nversion = "0.1"\n',
        "leaky-0.1/backend.py": LEAKY_BACKEND,
        "leaky-0.1/PKG-INFO": "Metadata-Version: 2.1\nName: leaky\nVersion: 0.1\n",
    }
    with tarfile.open(folder / "leaky-0.1.tar.gz", "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_building_a_requirement_does_not_see_the_workers_secrets(
    make_rig: Callable[..., Rig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's requirements are code of the job's author too: an sdist's build backend
    runs in the worker (through uv) and must not get the worker's settings."""
    links = tmp_path / "links"
    make_leaky_sdist(links)
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    rig = make_rig(find_links=str(links), offline=True)
    rig.deploy(
        "builds",
        {"main.py": "import leaky\nprint('SEEN', leaky.SEEN)\n"},
        manifest='entrypoint = "main.py"\nrequirements = ["leaky==0.1"]\n',
    )
    done = rig.wait(rig.run("builds").id, timeout=60)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert rig.messages(done.id, "stdout") == ["SEEN {}"]


# -- the artifact store down ---------------------------------------------------------------
def test_a_run_whose_package_cannot_be_fetched_fails_naming_the_job_and_version(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    deployed = rig.script("fetched", "print('ran')\n")
    first = rig.wait(rig.run("fetched").id)
    assert first.status is RunStatus.SUCCEEDED, first.error
    cache = rig.settings.home / "cache" / "packages"
    assert any(cache.iterdir())  # the worker kept a copy...
    for path in cache.iterdir():
        path.unlink()  # ...which is gone now
    rig.runtime.store.delete(deployed.package.storage_key)  # and so is the object
    done = wait_for_run(rig.runtime, rig.run("fetched").id, timeout=20)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    error = done.error or ""
    assert "Could not fetch package v1 of job fetched from the artifact store" in error
    assert deployed.package.storage_key in error


def test_a_run_fails_clearly_when_the_s3_store_is_unreachable(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(workers=0)
    rig.script("remote", "print('ran')\n")
    down = make_rig(
        storage_url="s3://runwright-test/jobs",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_access_key_id="test-access",
        s3_secret_access_key="test-secret",
    )
    started = time.monotonic()
    done = wait_for_run(down.runtime, down.run("remote").id, timeout=60)
    took = time.monotonic() - started
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    assert "Could not fetch package v1 of job remote from the artifact store" in (done.error or "")
    assert "test-secret" not in (done.error or "")
    print(f"\nunreachable S3 store: run failed after {took:.2f}s")


# -- runwright dev ---------------------------------------------------------------------------
DEV_MAIN = """\
from runwright import sdk
print("hello from dev")
print("ERROR: this line is an error")
sdk.set_result({"ok": True, "n": sdk.params.get("n")})
"""


def dev_folder(parent: Path, name: str = "hello-dev") -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "runwright.toml").write_text('entrypoint = "main.py"\n')
    (folder / "main.py").write_text(DEV_MAIN)
    return folder


def dev_env(tmp_path: Path, **extra: str | None) -> dict[str, str]:
    """The CLI's environment, with the temporary folder inside the test's own."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return cli_env(tmp_path / "home", TMPDIR=str(scratch), **extra)


def test_dev_runs_the_folder_here_and_versions_it(database_url: str, tmp_path: Path) -> None:
    folder = dev_folder(tmp_path)
    env = dev_env(tmp_path)
    args = ["--database-url", database_url, "dev", str(folder), "-p", "n=3"]
    done = run_cli(args, env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Job hello-dev v1 (new version)" in out
    assert "hello from dev" in out
    assert "ERROR: this line is an error" in out
    assert "succeeded" in out
    assert json.loads(out[out.index("{") :]) == {"ok": True, "n": 3}

    again = run_cli(args, env, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Job hello-dev v1 (unchanged)" in again.stdout

    (folder / "main.py").write_text(DEV_MAIN + "print('changed')\n")
    changed = run_cli(args, env, timeout=60)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "Job hello-dev v2 (new version)" in changed.stdout
    assert "changed" in changed.stdout


def test_dev_exits_1_when_the_code_fails(tmp_path: Path) -> None:
    folder = dev_folder(tmp_path, "broken-dev")
    (folder / "main.py").write_text("import sys\nprint('oops', file=sys.stderr)\nsys.exit(4)\n")
    done = run_cli(["dev", str(folder)], dev_env(tmp_path), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "oops" in done.stdout
    assert "exited with code 4" in done.stderr


def test_dev_with_the_store_down_still_runs(tmp_path: Path) -> None:
    folder = dev_folder(tmp_path)
    env = dev_env(
        tmp_path,
        RUNWRIGHT_STORAGE_URL="s3://runwright-dev/x",
        RUNWRIGHT_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        RUNWRIGHT_S3_ACCESS_KEY_ID="dev-access",
        RUNWRIGHT_S3_SECRET_ACCESS_KEY="dev-secret",
    )
    done = run_cli(["dev", str(folder)], env, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning:" in done.stderr
    assert "artifact store" in done.stderr
    assert "hello from dev" in done.stdout
    assert "succeeded" in done.stdout
    assert "dev-secret" not in done.stdout + done.stderr


def test_dev_of_a_folder_whose_name_is_no_job_name_says_so(tmp_path: Path) -> None:
    folder = dev_folder(tmp_path, "My Job")
    done = run_cli(["dev", str(folder)], dev_env(tmp_path), timeout=60)
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert done.returncode == 1
    assert "--job" in done.stderr or "Job name" in done.stderr


def unreachable_database() -> str:
    return f"postgresql://runwright@127.0.0.1:{free_port()}/runwright"


def test_dev_with_the_database_down_still_runs(tmp_path: Path) -> None:
    folder = dev_folder(tmp_path)
    args = ["--database-url", unreachable_database(), "dev", str(folder)]
    done = run_cli(args, dev_env(tmp_path), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning: the database is unreachable" in done.stderr
    assert "hello from dev" in done.stdout
    assert "succeeded" in done.stdout


def test_dev_on_a_stand_in_leaves_no_scratch_folder_behind(tmp_path: Path) -> None:
    """The throw-away database and store of an unreachable installation go away after."""
    folder = dev_folder(tmp_path)
    env = dev_env(tmp_path)
    args = ["--database-url", unreachable_database(), "dev", str(folder)]
    done = run_cli(args, env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in Path(env["TMPDIR"]).iterdir()) == []
