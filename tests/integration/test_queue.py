"""The durable queue end to end, on SQLite and on PostgreSQL.

Workers are real (threads of this process, or separate processes for the exactly-once
test); every wait is a polling loop with a deadline.
"""

from __future__ import annotations

import collections
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runwright.config import Settings
from runwright.db.engine import create_engine
from runwright.db.queue import RecoveryReport, RunQueue
from runwright.db.runs import RunFilter, RunRepository
from runwright.errors import Cancelled, Conflict, NotFound, Retry
from runwright.model.retry import RetryPolicy
from runwright.model.runs import ClaimedRun, Completion, SubmitRequest
from runwright.model.states import Outcome, RunStatus
from runwright.services.runtime import Runtime
from runwright.worker import execute
from runwright.worker.context import TaskContext
from runwright.worker.registry import TaskRegistry, TaskSpec, task
from tests import tasks_ledger
from tests.helpers import open_runtime, running_worker, wait_for_run, wait_until

REPO = Path(__file__).resolve().parents[2]
NO_DELAY = RetryPolicy(base=0.0, cap=0.0, jitter=0.0)
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED)


def noop_registry(*names: str) -> TaskRegistry:
    registry = TaskRegistry()
    for name in names or ("noop",):
        task(name, registry=registry)(lambda ctx: None)
    return registry


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime whose registry knows the no-op task type ``noop``."""
    with open_runtime(settings, noop_registry()) as rt:
        yield rt


@pytest.fixture
def engines(settings: Settings) -> Iterator[list[sa.Engine]]:
    """Two more engines on the same database: two independent "hosts"."""
    made = [create_engine(settings.effective_database_url) for _ in range(2)]
    yield made
    for engine in made:
        engine.dispose()


def count_by_status(runtime: Runtime) -> dict[str, int]:
    counts: dict[str, int] = collections.Counter()
    for _queue, status, n in RunRepository(runtime.engine).counts():
        counts[status] += n
    return counts


def all_runs(runtime: Runtime) -> list:
    runs, before = [], None
    while True:
        page = runtime.runs.list(RunFilter(limit=500, before_id=before))
        runs += page
        if len(page) < 500:
            return runs
        before = page[-1].id


def lease_lapse(seconds: float = 0.15) -> None:
    """Let a short lease run out: this waits on the clock, not on another thread."""
    time.sleep(seconds)


# -- exactly once ----------------------------------------------------------------------------
def _worker_process(settings: Settings, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWRIGHT_")}
    env.update(
        PYTHONPATH=str(REPO),
        RUNWRIGHT_HOME=str(home),
        RUNWRIGHT_HEARTBEAT_INTERVAL="0.5",
        RUNWRIGHT_LEASE_TIMEOUT="60",  # no lease may lapse: this test is about the claim
        RUNWRIGHT_POLL_INTERVAL="0.2",
        RUNWRIGHT_SHUTDOWN_GRACE="5",
        RUNWRIGHT_LOG_LEVEL="WARNING",
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("runwright")),
                "--database-url",
                settings.effective_database_url,
                "worker",
                "--concurrency",
                "8",
                "--tasks",
                "tests.tasks_ledger",
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_four_worker_processes_execute_every_run_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    total, batch = 2000, 100
    ledger = tmp_path / "ledger.txt"
    registry = TaskRegistry()
    registry.register(TaskSpec(name=tasks_ledger.TYPE, func=tasks_ledger.record))
    logs = [tmp_path / f"worker-{i}.log" for i in range(4)]
    with open_runtime(settings, registry) as runtime:
        procs = [_worker_process(settings, tmp_path / f"home-{i}", logs[i]) for i in range(4)]

        def logs_tail() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs)

        try:

            def all_registered() -> bool:
                for proc in procs:
                    assert proc.poll() is None, f"a worker exited early:\n{logs_tail()}"
                return len(runtime.runs.workers()) == 4

            wait_until(all_registered, timeout=60, interval=0.1, what="4 workers to register")
            ids: list[int] = []
            for start in range(0, total, batch):  # in batches, so claims race with inserts
                ids += runtime.runs.submit_many(
                    [
                        SubmitRequest(type=tasks_ledger.TYPE, payload={"ledger": str(ledger)})
                        for _ in range(start, start + batch)
                    ]
                )
            wait_until(
                lambda: count_by_status(runtime).get("succeeded", 0) == total,
                timeout=120,
                interval=0.2,
                what=f"{total} runs to succeed",
            )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        assert [p.returncode for p in procs] == [0, 0, 0, 0], logs_tail()
        runs = all_runs(runtime)
        assert not runtime.runs.workers(), "stopped workers must deregister"

    lines = ledger.read_text().splitlines()
    executions = collections.Counter(int(line.split()[0]) for line in lines)
    assert len(ids) == len(set(ids)) == total
    assert set(executions) == set(ids)
    twice = {run_id: n for run_id, n in executions.items() if n != 1}
    assert not twice, f"runs executed more than once: {sorted(twice.items())[:20]}"
    by_id = {run.id: run for run in runs}
    pid_of = {int(line.split()[0]): int(line.split()[1]) for line in lines}
    for run_id in ids:
        run = by_id[run_id]
        assert run.status is RunStatus.SUCCEEDED
        assert run.attempt == 1
        assert run.result == {"pid": pid_of[run_id]}
    assert {int(line.split()[2]) for line in lines} == {1}
    assert len(set(pid_of.values())) >= 2, "the work should have been shared"


# -- compare-and-set races -------------------------------------------------------------------
def test_concurrent_claims_from_two_hosts_never_hand_out_a_run_twice(
    runtime: Runtime, engines: list[sa.Engine]
) -> None:
    ids = runtime.runs.submit_many([SubmitRequest(type="noop") for _ in range(300)])
    queues = [RunQueue(engine, lease_timeout=60) for engine in engines]
    threads_per_queue = 4
    barrier = threading.Barrier(threads_per_queue * len(queues))
    claimed: list[list[ClaimedRun]] = [[] for _ in range(threads_per_queue * len(queues))]
    errors: list[BaseException] = []

    def claim_all(slot: int, queue: RunQueue) -> None:
        try:
            barrier.wait(timeout=10)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = queue.claim(f"worker-{slot}", ["default"], 3)
                if not got:
                    return
                claimed[slot] += got
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=claim_all, args=(slot, queues[slot % len(queues)]))
        for slot in range(len(claimed))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    every = [run.id for runs in claimed for run in runs]
    duplicates = [run_id for run_id, n in collections.Counter(every).items() if n > 1]
    assert not duplicates, f"claimed more than once: {duplicates}"
    assert sorted(every) == sorted(ids)
    assert all(run.lease_token == 1 and run.attempt == 1 for runs in claimed for run in runs)
    for slot, runs in enumerate(claimed):
        for run in runs[:5]:
            assert runtime.runs.get(run.id).worker_id == f"worker-{slot}"


def test_a_claim_takes_at_most_limit_runs(runtime: Runtime) -> None:
    runtime.runs.submit_many([SubmitRequest(type="noop", payload=i) for i in range(10)])
    queue = RunQueue(runtime.engine, lease_timeout=60)
    got = queue.claim("w1", ["default"], 3)
    counts = count_by_status(runtime)
    assert len(got) == 3
    assert counts == {"running": 3, "queued": 7}
    assert [run.payload for run in got] == [0, 1, 2]  # oldest first at equal priority


def test_a_worker_never_holds_more_runs_than_its_concurrency(settings: Settings) -> None:
    release = threading.Event()
    registry = TaskRegistry()

    @task("block", registry=registry)
    def block(ctx: TaskContext) -> None:
        release.wait(10)

    with open_runtime(settings, registry) as runtime:
        runtime.runs.submit_many([SubmitRequest(type="block") for _ in range(8)])
        try:
            with running_worker(runtime, concurrency=2):
                wait_until(
                    lambda: count_by_status(runtime).get("running", 0) >= 2,
                    what="two running runs",
                )
                # What the worker has not started must stay queued, for other workers.
                assert count_by_status(runtime) == {"running": 2, "queued": 6}
                workers = runtime.runs.workers()
                assert [w.running for w in workers] == [2]
                release.set()
        finally:
            release.set()


def test_a_completion_with_a_stale_lease_token_is_refused(runtime: Runtime) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop")).run.id
    queue = RunQueue(runtime.engine, lease_timeout=60)
    [held] = queue.claim("w1", ["default"], 1)
    before = runtime.runs.get(run_id)
    for token in (held.lease_token - 1, held.lease_token + 1):
        for kind in ("succeeded", "failed", "canceled", "retry"):
            stale = Completion(
                run_id=run_id,
                lease_token=token,
                kind=kind,
                result="stale",
                outcome=Outcome.ERROR if kind == "failed" else None,
                error="stale",
            )
            assert queue.finish([stale]) == [run_id]
    assert runtime.runs.get(run_id) == before  # not a single field changed
    fresh = Completion(run_id=run_id, lease_token=held.lease_token, kind="succeeded", result=1)
    assert queue.finish([fresh]) == []
    done = runtime.runs.get(run_id)
    assert (done.status, done.result) == (RunStatus.SUCCEEDED, 1)
    # Replaying the same completion (a retried commit) is harmless; a different ending is not.
    assert queue.finish([fresh]) == []
    other = Completion(run_id=run_id, lease_token=held.lease_token, kind="failed", error="x")
    assert queue.finish([other]) == [run_id]
    assert runtime.runs.get(run_id) == done


def test_the_old_holder_cannot_complete_a_run_recovered_and_claimed_elsewhere(
    runtime: Runtime,
) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop", max_attempts=3)).run.id
    short = RunQueue(runtime.engine, lease_timeout=0.05)
    [first] = short.claim("old-worker", ["default"], 1)
    lease_lapse()
    assert short.recover_expired(NO_DELAY, random.Random()).requeued == (run_id,)
    queue = RunQueue(runtime.engine, lease_timeout=60)
    [second] = queue.claim("new-worker", ["default"], 1)
    assert second.lease_token > first.lease_token
    assert second.attempt == 2
    # The old holder wakes up: its heartbeat no longer keeps the run, its results bounce.
    assert queue.heartbeat("old-worker", [run_id]).alive == frozenset()
    late = Completion(run_id=run_id, lease_token=first.lease_token, kind="succeeded", result="old")
    claimed, refused = queue.exchange(
        [late], [], worker_id="old-worker", queues=["default"], limit=1
    )
    assert (claimed, refused) == ([], [run_id])
    run = runtime.runs.get(run_id)
    assert (run.status, run.worker_id, run.result) == (RunStatus.RUNNING, "new-worker", None)
    assert queue.heartbeat("new-worker", [run_id]).alive == {run_id}
    ok = Completion(run_id=run_id, lease_token=second.lease_token, kind="succeeded", result="new")
    assert queue.finish([ok]) == []
    assert runtime.runs.get(run_id).result == "new"


@pytest.mark.parametrize("kind", ["succeeded", "failed", "canceled"])
def test_release_and_recovery_cannot_overwrite_a_finished_run(runtime: Runtime, kind: str) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop", max_attempts=5)).run.id
    short = RunQueue(runtime.engine, lease_timeout=0.05)
    [held] = short.claim("w1", ["default"], 1)
    lease_lapse()  # the lease ran out, but nobody recovered the run yet
    done = Completion(
        run_id=run_id,
        lease_token=held.lease_token,
        kind=kind,
        result="kept",
        outcome=Outcome.ERROR if kind == "failed" else None,
        error="why",
    )
    assert short.finish([done]) == []
    finished = runtime.runs.get(run_id)
    assert finished.status is RunStatus(kind)
    assert short.recover_expired(NO_DELAY, random.Random()) == RecoveryReport(
        requeued=(), failed=()
    )
    assert short.release([(run_id, held.lease_token)]) == 0
    assert short.heartbeat("w1", [run_id]).alive == frozenset()
    assert runtime.runs.get(run_id) == finished


def test_a_late_completion_cannot_overwrite_a_recovered_run(runtime: Runtime) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop", max_attempts=1)).run.id
    short = RunQueue(runtime.engine, lease_timeout=0.05)
    [held] = short.claim("w1", ["default"], 1)
    lease_lapse()
    assert short.recover_expired(NO_DELAY, random.Random()).failed == (run_id,)
    lost = runtime.runs.get(run_id)
    late = Completion(run_id=run_id, lease_token=held.lease_token, kind="succeeded", result=1)
    assert short.finish([late]) == [run_id]
    assert short.release([(run_id, held.lease_token)]) == 0
    assert runtime.runs.get(run_id) == lost
    assert (lost.status, lost.outcome) == (RunStatus.FAILED, Outcome.WORKER_LOST)


# -- idempotency -----------------------------------------------------------------------------
def test_concurrent_submits_with_one_idempotency_key_make_one_run(runtime: Runtime) -> None:
    callers = 16
    barrier = threading.Barrier(callers)
    results: list[tuple[int, bool, object]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            submitted = runtime.runs.submit(
                SubmitRequest(type="noop", payload={"caller": i}, idempotency_key="order-42")
            )
            with lock:
                results.append((submitted.run.id, submitted.created, submitted.run.payload))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == callers
    assert len({run_id for run_id, _, _ in results}) == 1
    assert sum(created for _, created, _ in results) == 1
    assert len({repr(payload) for _, _, payload in results}) == 1  # all see the winner's
    runs = all_runs(runtime)
    assert len(runs) == 1
    assert runs[0].idempotency_key == "order-42"


def test_an_idempotency_key_returns_the_earlier_run_even_after_it_finished(
    settings: Settings,
) -> None:
    registry = TaskRegistry()
    task("double", registry=registry)(lambda ctx: ctx.payload * 2)
    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        first = runtime.runs.submit(SubmitRequest(type="double", payload=2, idempotency_key="k"))
        done = wait_for_run(runtime, first.run.id)
        again = runtime.runs.submit(SubmitRequest(type="double", payload=5, idempotency_key="k"))
        other = runtime.runs.submit(SubmitRequest(type="double", payload=5, idempotency_key="k2"))
    assert first.created
    assert other.created
    assert not again.created
    assert again.run.id == first.run.id
    assert (
        (again.run.status, again.run.result)
        == (RunStatus.SUCCEEDED, 4)
        == (
            done.status,
            done.result,
        )
    )
    assert other.run.id != first.run.id


# -- retries and backoff ---------------------------------------------------------------------
def test_a_task_failing_twice_then_succeeding_ends_succeeded_on_attempt_three(
    settings: Settings,
) -> None:
    settings = settings.with_overrides(retry_base=0.4, retry_cap=0.4)  # delays in [0.2, 0.4]
    started: list[float] = []
    failed_at: list[float] = []
    registry = TaskRegistry()

    @task("flaky", registry=registry)
    def flaky(ctx: TaskContext) -> str:
        started.append(time.time())
        if ctx.attempt < 3:
            failed_at.append(time.time())
            raise RuntimeError(f"transient failure {ctx.attempt}")
        return f"ok on {ctx.attempt}"

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(SubmitRequest(type="flaky", max_attempts=3)).run.id
        run = wait_for_run(runtime, run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert (run.attempt, run.result) == (3, "ok on 3")
    assert run.error is None
    assert len(started) == 3
    assert len(failed_at) == 2
    for attempt in (0, 1):  # each retry waited its backoff after the failure
        assert started[attempt + 1] - failed_at[attempt] >= 0.2 - 0.02
    assert run.scheduled_at >= failed_at[-1] + 0.2 - 0.02  # the last retry's due time
    assert run.started_at is not None
    assert run.started_at >= run.scheduled_at - 0.01


def test_a_retry_is_queued_with_its_due_time_after_the_failure(settings: Settings) -> None:
    failed_at: list[float] = []
    registry = TaskRegistry()

    @task("later", registry=registry)
    def later(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            failed_at.append(time.time())
            raise Retry(delay=1.0, reason="come back in a second")
        return ctx.attempt

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(SubmitRequest(type="later", max_attempts=2)).run.id
        waiting = wait_for_run(runtime, run_id, [RunStatus.QUEUED], check=lambda r: r.attempt == 1)
        assert waiting.error == "Retry requested: come back in a second"
        assert waiting.worker_id is None
        assert waiting.scheduled_at >= failed_at[0] + 1.0 - 0.02
        done = wait_for_run(runtime, run_id)
    assert (done.status, done.attempt, done.result) == (RunStatus.SUCCEEDED, 2, 2)
    assert done.started_at is not None
    assert done.started_at >= waiting.scheduled_at - 0.01


@pytest.mark.parametrize(
    ("max_attempts", "outcome"), [(3, Outcome.DEAD_LETTER), (1, Outcome.ERROR)]
)
def test_a_task_that_keeps_failing_fails_once_its_attempts_are_used_up(
    settings: Settings, max_attempts: int, outcome: Outcome
) -> None:
    calls: list[int] = []
    registry = TaskRegistry()

    @task("broken", registry=registry)
    def broken(ctx: TaskContext) -> None:
        calls.append(ctx.attempt)
        raise ValueError(f"broken input on attempt {ctx.attempt}")

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(SubmitRequest(type="broken", max_attempts=max_attempts)).run.id
        run = wait_for_run(runtime, run_id)
        with pytest.raises(Conflict, match=rf"Run {run_id} failed \({outcome.value}\)"):
            runtime.runs.result(run_id)
    assert (run.status, run.outcome, run.attempt) == (RunStatus.FAILED, outcome, max_attempts)
    assert calls == list(range(1, max_attempts + 1))
    assert f"ValueError: broken input on attempt {max_attempts}" in (run.error or "")
    assert run.finished_at is not None


def test_retrying_a_run_submits_a_new_run_that_points_to_the_original(
    settings: Settings,
) -> None:
    registry = TaskRegistry()

    @task("picky", registry=registry)
    def picky(ctx: TaskContext) -> str:
        if ctx.payload.get("fail"):
            raise RuntimeError("no")
        return "yes"

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        failed = runtime.runs.submit(
            SubmitRequest(
                type="picky",
                payload={"fail": True},
                priority=3,
                max_attempts=2,
                timeout=30,
                queue="default",
            )
        ).run
        ok = runtime.runs.submit(SubmitRequest(type="picky", payload={"fail": False})).run
        assert wait_for_run(runtime, failed.id).status is RunStatus.FAILED
        assert wait_for_run(runtime, ok.id).status is RunStatus.SUCCEEDED
        again = runtime.runs.retry(failed.id)
        assert again.id not in (failed.id, ok.id)
        assert again.retry_of == failed.id
        assert again.trigger == "retry"
        assert again.status is RunStatus.QUEUED
        assert (again.type, again.payload, again.priority, again.max_attempts, again.timeout) == (
            "picky",
            {"fail": True},
            3,
            2,
            30.0,
        )
        assert again.attempt == 0
        with pytest.raises(Conflict, match="only failed or canceled runs can be retried"):
            runtime.runs.retry(ok.id)
        with pytest.raises(NotFound):
            runtime.runs.retry(999_999)
        assert wait_for_run(runtime, again.id).status is RunStatus.FAILED
        assert runtime.runs.get(failed.id).status is RunStatus.FAILED  # the original stays


# -- timeouts ----------------------------------------------------------------------------------
def test_a_run_past_its_timeout_fails_as_timed_out_and_the_task_sees_it(
    settings: Settings,
) -> None:
    seen: dict[str, object] = {}
    registry = TaskRegistry()

    @task("sleepy", registry=registry)
    def sleepy(ctx: TaskContext) -> str:
        try:
            ctx.sleep(10)
        finally:
            seen["cancelled"] = ctx.cancelled
        return "woke up"

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        start = time.monotonic()
        run_id = runtime.runs.submit(SubmitRequest(type="sleepy", timeout=0.5)).run.id
        run = wait_for_run(runtime, run_id, timeout=10)
        elapsed = time.monotonic() - start
        wait_until(lambda: "cancelled" in seen, timeout=5, what="the task to return")
    assert (run.status, run.outcome) == (RunStatus.FAILED, Outcome.TIMED_OUT)
    assert run.error == "Timed out after 0.5s (attempt 1 of 1)"
    assert elapsed < 2.5
    assert seen["cancelled"] is True


def test_a_timeout_is_recorded_as_a_timeout_even_when_the_task_reacts_first(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker tells the task to stop and *then* records the timeout. A task that
    stops at once (ctx.sleep raises Cancelled) can get in between; simulated here by
    slowing the worker's bookkeeping down, as a busy machine's scheduler might."""
    original = execute.timed_out

    def slow_timed_out(*args: object, **kwargs: object) -> Completion:
        time.sleep(0.3)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(execute, "timed_out", slow_timed_out)
    registry = TaskRegistry()
    task("sleepy", registry=registry)(lambda ctx: ctx.sleep(10))
    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(SubmitRequest(type="sleepy", timeout=0.3)).run.id
        run = wait_for_run(runtime, run_id, timeout=10)
    assert (run.status, run.outcome) == (RunStatus.FAILED, Outcome.TIMED_OUT)


def test_a_timed_out_attempt_is_retried_while_attempts_remain(settings: Settings) -> None:
    registry = TaskRegistry()

    @task("slow-once", registry=registry)
    def slow_once(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            ctx.sleep(10)
        return ctx.attempt

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(
            SubmitRequest(type="slow-once", timeout=0.4, max_attempts=2)
        ).run.id
        run = wait_for_run(runtime, run_id, timeout=10)
    assert (run.status, run.attempt, run.result) == (RunStatus.SUCCEEDED, 2, 2)


# -- cancel --------------------------------------------------------------------------------------
def test_a_queued_run_is_canceled_at_once(runtime: Runtime) -> None:
    now = runtime.runs.submit(SubmitRequest(type="noop")).run
    later = runtime.runs.submit(SubmitRequest(type="noop", scheduled_at=time.time() + 3600)).run
    for run in (now, later):
        canceled = runtime.runs.cancel(run.id)
        assert (canceled.status, canceled.outcome) == (RunStatus.CANCELED, Outcome.CANCELED)
        assert canceled.finished_at is not None
        assert runtime.runs.get(run.id).status is RunStatus.CANCELED
    assert RunQueue(runtime.engine, lease_timeout=60).claim("w", ["default"], 10) == []
    with pytest.raises(Conflict, match=rf"Run {now.id} was canceled; it has no result"):
        runtime.runs.result(now.id)
    with pytest.raises(NotFound):
        runtime.runs.cancel(123_456)


def test_a_running_run_is_canceled_within_a_heartbeat_and_the_task_sees_it(
    settings: Settings,
) -> None:
    seen = threading.Event()
    registry = TaskRegistry()

    @task("loop", registry=registry)
    def loop(ctx: TaskContext) -> None:
        try:
            for _ in range(400):
                ctx.sleep(0.05)
        except Cancelled:
            seen.set()
            raise

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(SubmitRequest(type="loop")).run.id
        wait_for_run(runtime, run_id, [RunStatus.RUNNING])
        with pytest.raises(Conflict, match="still running"):
            runtime.runs.result(run_id)
        asked = time.monotonic()
        flagged = runtime.runs.cancel(run_id)
        assert flagged.status is RunStatus.RUNNING
        assert flagged.cancel_requested
        run = wait_for_run(runtime, run_id, timeout=5)
        took = time.monotonic() - asked
        assert seen.wait(5)
        with pytest.raises(Conflict, match="already finished"):
            runtime.runs.cancel(run_id)
    assert run.status is RunStatus.CANCELED
    assert took < 1.0  # heartbeat_interval is 0.2s
    assert run.attempt == 1
    assert run.finished_at is not None
    assert run.outcome is Outcome.CANCELED  # as for a run canceled while queued


def test_cancel_and_result_of_finished_runs_are_conflicts(settings: Settings) -> None:
    registry = TaskRegistry()
    task("ok", registry=registry)(lambda ctx: {"answer": 42})

    @task("bad", registry=registry)
    def bad(ctx: TaskContext) -> None:
        raise RuntimeError("first line\nthe reason it failed")

    with open_runtime(settings, registry) as runtime:
        ok = runtime.runs.submit(SubmitRequest(type="ok")).run
        bad_run = runtime.runs.submit(SubmitRequest(type="bad")).run
        with pytest.raises(Conflict, match=rf"Run {ok.id} is still queued; it has no result yet"):
            runtime.runs.result(ok.id)
        with running_worker(runtime):
            assert wait_for_run(runtime, ok.id).status is RunStatus.SUCCEEDED
            assert wait_for_run(runtime, bad_run.id).status is RunStatus.FAILED
        assert runtime.runs.result(ok.id) == {"answer": 42}
        with pytest.raises(Conflict, match=r"failed \(error\): .*the reason it failed"):
            runtime.runs.result(bad_run.id)
        for run in (ok, bad_run):
            with pytest.raises(Conflict, match=rf"Run {run.id} already finished"):
                runtime.runs.cancel(run.id)
        with pytest.raises(NotFound):
            runtime.runs.result(999_999)


def test_a_canceled_run_whose_worker_was_lost_is_not_run_again(runtime: Runtime) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop", max_attempts=3)).run.id
    short = RunQueue(runtime.engine, lease_timeout=0.05)
    short.claim("doomed-worker", ["default"], 1)
    assert runtime.runs.cancel(run_id).cancel_requested
    lease_lapse()  # the worker died before its heartbeat could see the cancel request
    short.recover_expired(NO_DELAY, random.Random())
    run = runtime.runs.get(run_id)
    assert (run.status, run.outcome) == (RunStatus.CANCELED, Outcome.CANCELED)
    assert short.claim("another-worker", ["default"], 1) == []


# -- order -----------------------------------------------------------------------------------------
def test_higher_priority_runs_are_claimed_first(runtime: Runtime) -> None:
    priorities = [0, 5, -3, 10, 5, 0]
    ids = [
        runtime.runs.submit(SubmitRequest(type="noop", priority=p, payload=i)).run.id
        for i, p in enumerate(priorities)
    ]
    queue = RunQueue(runtime.engine, lease_timeout=60)
    order = []
    for _ in priorities:
        [run] = queue.claim("w", ["default"], 1)
        order.append(run.id)
    assert queue.claim("w", ["default"], 1) == []
    expected = [ids[i] for i in sorted(range(6), key=lambda i: (-priorities[i], i))]
    assert order == expected


def test_a_worker_executes_runs_by_priority(settings: Settings) -> None:
    executed: list[int] = []
    registry = TaskRegistry()
    task("note", registry=registry)(lambda ctx: executed.append(ctx.payload))
    with open_runtime(settings, registry) as runtime:
        priorities = [1, 7, -2, 7, 3]
        ids = [
            runtime.runs.submit(SubmitRequest(type="note", priority=p, payload=p * 10 + i)).run.id
            for i, p in enumerate(priorities)
        ]
        with running_worker(runtime, concurrency=1):
            for run_id in ids:
                wait_for_run(runtime, run_id)
    assert executed == [71, 73, 34, 10, -18]


def test_a_run_scheduled_in_the_future_is_not_claimed_before_its_time(
    runtime: Runtime,
) -> None:
    due = time.time() + 0.8
    later = runtime.runs.submit(SubmitRequest(type="noop", scheduled_at=due, priority=100)).run
    now = runtime.runs.submit(SubmitRequest(type="noop")).run
    assert later.scheduled_at == pytest.approx(due)
    queue = RunQueue(runtime.engine, lease_timeout=60)
    assert [run.id for run in queue.claim("w", ["default"], 10)] == [now.id]
    assert queue.claim("w", ["default"], 10) == []
    [run] = wait_until(lambda: queue.claim("w", ["default"], 10), timeout=5, what="the due run")
    assert run.id == later.id
    assert time.time() >= due - 0.01
    assert runtime.runs.get(later.id).started_at >= due - 0.01  # type: ignore[operator]


def test_submit_many_honours_scheduled_at(runtime: Runtime) -> None:
    due = time.time() + 3600
    before = time.time()
    ids = runtime.runs.submit_many(
        [
            SubmitRequest(type="noop", payload=i, scheduled_at=due if i % 2 else None)
            for i in range(4)
        ]
    )
    runs = [runtime.runs.get(run_id) for run_id in ids]
    assert [run.payload for run in runs] == [0, 1, 2, 3]
    for run in runs:
        assert run.status is RunStatus.QUEUED
        assert run.created_at >= before - 0.01
        expected = due if run.payload % 2 else run.created_at
        assert run.scheduled_at == pytest.approx(expected, abs=0.01)
    claimed = RunQueue(runtime.engine, lease_timeout=60).claim("w", ["default"], 10)
    assert [run.payload for run in claimed] == [0, 2]


def test_a_worker_serves_only_its_queues(settings: Settings) -> None:
    registry = TaskRegistry()
    task("where", registry=registry)(lambda ctx: "done")
    with open_runtime(settings, registry) as runtime:
        mine = runtime.runs.submit(SubmitRequest(type="where", queue="fast")).run
        other = runtime.runs.submit(SubmitRequest(type="where", queue="slow")).run
        worker = runtime.worker(concurrency=2, queues=("fast",), in_process=True)
        worker.start()
        try:
            assert wait_for_run(runtime, mine.id).status is RunStatus.SUCCEEDED
            assert runtime.runs.get(other.id).status is RunStatus.QUEUED
        finally:
            worker.stop_and_wait(grace=1)


# -- recovery ------------------------------------------------------------------------------------
def test_a_lost_runs_lease_expires_and_it_is_requeued_with_the_attempt_counted(
    settings: Settings,
) -> None:
    registry = TaskRegistry()
    task("work", registry=registry)(lambda ctx: ctx.attempt)
    with open_runtime(settings, registry) as runtime:
        run_id = runtime.runs.submit(SubmitRequest(type="work", max_attempts=2)).run.id
        short = RunQueue(runtime.engine, lease_timeout=0.1)
        [held] = short.claim("ghost-worker", ["default"], 1)
        assert runtime.runs.get(run_id).worker_id == "ghost-worker"
        assert short.recover_expired(NO_DELAY, random.Random()).requeued == ()  # not yet
        report = wait_until(
            lambda: short.recover_expired(NO_DELAY, random.Random()).requeued,
            timeout=5,
            interval=0.05,
            what="the lease to expire",
        )
        assert report == (run_id,)
        run = runtime.runs.get(run_id)
        assert (run.status, run.attempt, run.worker_id) == (RunStatus.QUEUED, 1, None)
        assert "ghost-worker" in (run.error or "")
        assert "attempt 1 of 2 (lease expired)" in (run.error or "")
        with running_worker(runtime):
            done = wait_for_run(runtime, run_id)
    assert (done.status, done.attempt, done.result) == (RunStatus.SUCCEEDED, 2, 2)
    assert held.attempt == 1


def test_a_lost_run_without_attempts_left_fails_as_worker_lost(runtime: Runtime) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop", max_attempts=1)).run.id
    short = RunQueue(runtime.engine, lease_timeout=0.1)
    short.claim("ghost-worker", ["default"], 1)
    report = wait_until(
        lambda: short.recover_expired(NO_DELAY, random.Random()).failed,
        timeout=5,
        interval=0.05,
        what="the lease to expire",
    )
    assert report == (run_id,)
    run = runtime.runs.get(run_id)
    assert (run.status, run.outcome, run.attempt) == (RunStatus.FAILED, Outcome.WORKER_LOST, 1)
    assert run.finished_at is not None
    assert "ghost-worker stopped sending heartbeats" in (run.error or "")
    with pytest.raises(Conflict, match=r"failed \(worker_lost\)"):
        runtime.runs.result(run_id)


def test_a_heartbeat_keeps_a_lease_alive(runtime: Runtime) -> None:
    run_id = runtime.runs.submit(SubmitRequest(type="noop")).run.id
    queue = RunQueue(runtime.engine, lease_timeout=0.6)
    queue.claim("w1", ["default"], 1)
    deadline = time.monotonic() + 1.5  # well past the lease timeout
    while time.monotonic() < deadline:
        assert queue.heartbeat("w1", [run_id]).alive == {run_id}
        assert queue.recover_expired(NO_DELAY, random.Random()).requeued == ()
        time.sleep(0.05)
    assert runtime.runs.get(run_id).status is RunStatus.RUNNING
    assert queue.heartbeat("w2", [run_id]).alive == frozenset()  # not w2's run


def test_a_live_worker_recovers_the_runs_of_a_dead_one(settings: Settings) -> None:
    registry = TaskRegistry()
    task("work", registry=registry)(lambda ctx: f"attempt {ctx.attempt}")
    with open_runtime(settings, registry) as runtime:
        run_id = runtime.runs.submit(SubmitRequest(type="work", max_attempts=2)).run.id
        RunQueue(runtime.engine, lease_timeout=0.1).claim("dead-worker", ["default"], 1)
        with running_worker(runtime):
            run = wait_for_run(runtime, run_id, timeout=10)
    assert (run.status, run.result) == (RunStatus.SUCCEEDED, "attempt 2")


# -- graceful shutdown ---------------------------------------------------------------------------
def test_stopping_a_worker_requeues_its_unfinished_run_without_spending_an_attempt(
    settings: Settings,
) -> None:
    finish_now = threading.Event()
    attempts: list[int] = []
    registry = TaskRegistry()

    @task("long", registry=registry)
    def long(ctx: TaskContext) -> str:
        attempts.append(ctx.attempt)
        deadline = time.monotonic() + 30
        while not finish_now.is_set() and time.monotonic() < deadline:
            ctx.sleep(0.05)
        return "finished"

    with open_runtime(settings, registry) as runtime:
        run_id = runtime.runs.submit(SubmitRequest(type="long", max_attempts=1)).run.id
        first = runtime.worker(concurrency=2, in_process=True)
        first.start()
        try:
            wait_for_run(runtime, run_id, [RunStatus.RUNNING])
        finally:
            began = time.monotonic()
            first.stop_and_wait(grace=0.3)
        assert time.monotonic() - began < 2.0
        run = runtime.runs.get(run_id)
        assert (run.status, run.attempt, run.worker_id) == (RunStatus.QUEUED, 0, None)
        assert "requeued" in (run.error or "")
        finish_now.set()
        with running_worker(runtime) as second:
            done = wait_for_run(runtime, run_id)
            assert second.id != first.id
    assert (done.status, done.attempt, done.result) == (RunStatus.SUCCEEDED, 1, "finished")
    assert attempts == [1, 1]


def test_stopping_a_worker_lets_a_run_finish_within_the_grace_period(
    settings: Settings,
) -> None:
    registry = TaskRegistry()

    @task("short", registry=registry)
    def short(ctx: TaskContext) -> str:
        ctx.sleep(0.4)
        return "made it"

    with open_runtime(settings, registry) as runtime:
        run_id = runtime.runs.submit(SubmitRequest(type="short")).run.id
        worker = runtime.worker(concurrency=1, in_process=True)
        worker.start()
        try:
            wait_for_run(runtime, run_id, [RunStatus.RUNNING])
        finally:
            worker.stop_and_wait(grace=5)
        run = runtime.runs.get(run_id)
        assert (run.status, run.result) == (RunStatus.SUCCEEDED, "made it")
        assert runtime.runs.workers() == []  # it deregistered


# -- progress and wake-up --------------------------------------------------------------------------
def test_progress_is_visible_while_the_run_is_still_running(settings: Settings) -> None:
    carry_on = threading.Event()
    registry = TaskRegistry()

    @task("halfway", registry=registry)
    def halfway(ctx: TaskContext) -> str:
        ctx.progress(50, "half")
        carry_on.wait(10)
        ctx.progress(100, "all")
        return "done"

    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        run_id = runtime.runs.submit(SubmitRequest(type="halfway")).run.id
        try:
            run = wait_for_run(
                runtime,
                run_id,
                [RunStatus.RUNNING],
                check=lambda r: r.progress.percent is not None,
            )
        finally:
            carry_on.set()
        assert (run.progress.percent, run.progress.message) == (50.0, "half")
        assert wait_for_run(runtime, run_id).status is RunStatus.SUCCEEDED


def test_an_in_process_worker_starts_a_submitted_run_without_waiting_for_its_poll(
    settings: Settings,
) -> None:
    settings = settings.with_overrides(poll_interval=5.0)
    registry = TaskRegistry()
    task("quick", registry=registry)(lambda ctx: "ok")
    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        warm_up = runtime.runs.submit(SubmitRequest(type="quick")).run.id
        wait_for_run(runtime, warm_up, timeout=15)
        latencies = []
        for _ in range(3):
            time.sleep(0.3)  # let the worker settle into its (5 s) idle wait
            run_id = runtime.runs.submit(SubmitRequest(type="quick")).run.id
            run = wait_for_run(runtime, run_id, timeout=15)
            assert run.started_at is not None
            latencies.append(run.started_at - run.created_at)
    assert max(latencies) < 1.0, latencies


# -- what a database cannot store must not wedge a worker -------------------------------------
def test_a_result_that_is_not_valid_json_fails_the_run_and_the_worker_carries_on(
    settings: Settings,
) -> None:
    registry = TaskRegistry()
    task("nan", registry=registry)(lambda ctx: {"score": math.nan})
    task("fine", registry=registry)(lambda ctx: "fine")
    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        bad = runtime.runs.submit(SubmitRequest(type="nan")).run.id
        bad_run = wait_for_run(runtime, bad, timeout=5)
        good = runtime.runs.submit(SubmitRequest(type="fine")).run.id
        good_run = wait_for_run(runtime, good, timeout=5)
    assert (bad_run.status, bad_run.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    assert "not JSON" in (bad_run.error or "")
    assert good_run.status is RunStatus.SUCCEEDED


def test_an_error_message_with_a_nul_character_is_recorded_and_the_worker_carries_on(
    settings: Settings,
) -> None:
    registry = TaskRegistry()

    @task("binary", registry=registry)
    def binary(ctx: TaskContext) -> None:
        raise ValueError("unexpected byte \x00 at offset 3")

    task("fine", registry=registry)(lambda ctx: "fine")
    with open_runtime(settings, registry) as runtime, running_worker(runtime):
        bad = runtime.runs.submit(SubmitRequest(type="binary")).run.id
        bad_run = wait_for_run(runtime, bad, timeout=5)
        good = runtime.runs.submit(SubmitRequest(type="fine")).run.id
        good_run = wait_for_run(runtime, good, timeout=5)
    assert (bad_run.status, bad_run.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    assert "unexpected byte" in (bad_run.error or "")
    assert good_run.status is RunStatus.SUCCEEDED


def test_a_task_type_this_worker_does_not_know_fails_with_a_helpful_message(
    settings: Settings,
) -> None:
    with open_runtime(settings, noop_registry("noop", "elsewhere")) as runtime:
        run_id = runtime.runs.submit(SubmitRequest(type="elsewhere")).run.id
        registry = noop_registry("noop")
        worker_runtime = Runtime.open(settings, registry=registry)
        try:
            with running_worker(worker_runtime):
                run = wait_for_run(runtime, run_id)
        finally:
            worker_runtime.close()
    assert (run.status, run.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    assert "no task registered for type 'elsewhere'" in (run.error or "")
    assert "Known here: noop" in (run.error or "")
