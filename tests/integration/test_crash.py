"""Worker processes die (SIGKILL), freeze (SIGSTOP) and stop (SIGTERM) in the middle of runs.

The worker subprocesses execute ``tests/tasks_crash.py``, whose tasks write a ledger line
at the start and at the end of every execution. From the ledger, the kill times and the
runs table the tests check that no run is executed by two live workers at once, that
every run ends, and that only the execution holding the current lease is recorded.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runwright.model.runs import SubmitRequest
from tests.procs import (
    LEASE_TIMEOUT,
    SLEEP,
    WORK,
    Db,
    Entry,
    Proc,
    Processes,
    read_ledger,
    start_worker,
    submit_many,
    wait_for,
)

pytestmark = pytest.mark.slow

RUNS = 300
KILLS = 20
WORKERS = 3
CONCURRENCY = 4
MAX_ATTEMPTS = 25
# After the last kill: one lease, a recovery pass (every lease/3), a retry delay, the rest
# of the work, and slack for a loaded 2-core machine.
FINAL_AFTER_LAST_KILL = LEASE_TIMEOUT + 8.0


@dataclass(frozen=True, slots=True)
class Execution:
    run_id: int
    attempt: int
    pid: int
    start: float
    end: float  # the ledger's end line, the kill time of its process, or +inf
    ended: bool  # the task returned (wrote its end line)


def executions(entries: list[Entry], killed_at: dict[int, float]) -> list[Execution]:
    starts: dict[tuple[int, int, int], float] = {}
    ends: dict[tuple[int, int, int], float] = {}
    for entry in entries:
        key = (entry.run_id, entry.attempt, entry.pid)
        target = starts if entry.event == "start" else ends
        assert key not in target, f"two {entry.event} lines for run/attempt/pid {key}"
        target[key] = entry.at
    assert set(ends) <= set(starts), "an end line without its start line"
    found = []
    for key, start in starts.items():
        run_id, attempt, pid = key
        if key in ends:
            end, ended = ends[key], True
        else:
            end, ended = killed_at.get(pid, float("inf")), False
        found.append(Execution(run_id, attempt, pid, start, end, ended))
    return found


def overlaps(found: list[Execution]) -> list[tuple[Execution, Execution]]:
    """Pairs of executions of one run that were under way at the same time."""
    by_run: dict[int, list[Execution]] = defaultdict(list)
    for execution in found:
        by_run[execution.run_id].append(execution)
    bad = []
    for group in by_run.values():
        group.sort(key=lambda e: e.start)
        latest = group[0]
        for execution in group[1:]:
            if execution.start < latest.end:
                bad.append((latest, execution))
            if execution.end > latest.end:
                latest = execution
    return bad


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def worker_id_of(db: Db, proc: Proc) -> str:
    return str(
        wait_for(
            lambda: db.scalar("SELECT id FROM workers WHERE pid = :pid", pid=proc.pid),
            timeout=20,
            what=f"worker {proc.name} (pid {proc.pid}) to register",
        )
    )


# -- SIGKILL ---------------------------------------------------------------------------------
def test_sigkill_20_workers_mid_run(database_url: str, tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    procs = Processes(tmp_path / "logs")
    db = Db(database_url)
    rng = random.Random()
    killed_at: dict[int, float] = {}
    try:
        workers = [
            start_worker(procs, database_url, home, concurrency=CONCURRENCY, name=f"worker{i}")
            for i in range(WORKERS)
        ]
        for proc in workers:
            worker_id_of(db, proc)
        ids = submit_many(
            database_url,
            home,
            [
                SubmitRequest(type=WORK, payload={"ledger": str(ledger)}, max_attempts=MAX_ATTEMPTS)
                for _ in range(RUNS)
            ],
        )
        started = time.monotonic()

        most_held = 0  # the most runs one worker held at once, sampled

        def victim() -> Proc | None:
            nonlocal most_held
            live = {p.pid: p for p in workers if p.killed_at is None and p.alive()}
            held = db.rows(
                "SELECT w.pid, count(*) AS n FROM runs r JOIN workers w ON w.id = r.worker_id "
                "WHERE r.status = 'running' GROUP BY w.pid"
            )
            most_held = max([most_held, *(int(row.n) for row in held)])
            holders = [row.pid for row in held if row.pid in live]
            return live[rng.choice(holders)] if holders else None

        while len(killed_at) < KILLS:
            proc = wait_for(
                victim, timeout=15, interval=0.02, what="a live worker holding a running run"
            )
            killed_at[proc.pid] = proc.kill()
            workers.append(
                start_worker(
                    procs,
                    database_url,
                    home,
                    concurrency=CONCURRENCY,
                    name=f"worker{len(workers)}",
                )
            )
            time.sleep(0.25)
        last_kill = max(killed_at.values())
        kills_took = time.monotonic() - started
        left_at_last_kill = RUNS - db.status_counts().get("succeeded", 0)

        def all_final() -> bool:
            counts = db.status_counts()
            return counts.get("queued", 0) + counts.get("running", 0) == 0

        wait_for(
            all_final,
            timeout=FINAL_AFTER_LAST_KILL + 30,  # measured against the bound below
            interval=0.1,
            what="every run to reach a final state",
        )
        to_final = time.time() - last_kill
        rows = db.rows("SELECT id, status, outcome, attempt, result FROM runs")
        survivors = [p for p in workers if p.killed_at is None]
        assert all(p.alive() for p in survivors), procs.tails()
    finally:
        procs.kill_all()
        db.close()

    print(
        f"\n{RUNS} runs, {KILLS} kills in {kills_took:.1f}s; {left_at_last_kill} runs "
        f"unfinished at the last kill; all final {to_final:.2f}s after it"
    )
    assert to_final <= FINAL_AFTER_LAST_KILL, (
        f"runs became final {to_final:.1f}s after the last kill (bound {FINAL_AFTER_LAST_KILL}s)"
    )
    assert sorted(row.id for row in rows) == sorted(ids)
    not_succeeded = [(r.id, r.status, r.outcome) for r in rows if r.status != "succeeded"]
    assert not not_succeeded, f"runs not succeeded: {not_succeeded[:10]}"

    found = executions(read_ledger(ledger), killed_at)
    bad = overlaps(found)
    assert not bad, f"{len(bad)} runs executed by two live workers at once, e.g. {bad[:3]}"

    interrupted = [e for e in found if not e.ended]
    assert interrupted, "no kill landed during an execution; the test proved nothing"
    assert all(e.pid in killed_at for e in interrupted)

    by_run: dict[int, list[Execution]] = defaultdict(list)
    for execution in found:
        by_run[execution.run_id].append(execution)
    for row in rows:
        result = as_json(row.result)
        assert result["attempt"] == row.attempt, row
        [winner] = [
            e
            for e in by_run[row.id]
            if e.ended and e.pid == result["pid"] and e.attempt == row.attempt
        ]
        # Every other execution that returned died before its completion was committed...
        others = [e for e in by_run[row.id] if e.ended and e is not winner]
        assert all(e.pid in killed_at for e in others), (row.id, winner, others)
        # ...and nothing executed the run after the recorded completion.
        assert all(e.start < winner.end for e in by_run[row.id]), (row.id, by_run[row.id])
    # A worker holds at most --concurrency runs, so a kill can cost at most that many
    # runs an attempt without executing them (claimed, not yet started).
    unexecuted = sum(row.attempt - len(by_run[row.id]) for row in rows)
    print(
        f"{len(interrupted)} executions interrupted by kills; "
        f"{sum(1 for r in rows if r.attempt > 1)} runs needed more than one attempt; "
        f"{unexecuted} attempts spent without an execution; one worker held up to "
        f"{most_held} runs at once"
    )
    assert most_held <= CONCURRENCY, (
        f"a worker started with --concurrency {CONCURRENCY} held {most_held} runs at once"
    )
    assert unexecuted <= KILLS * CONCURRENCY, (
        f"{unexecuted} attempts were spent on claims that never executed"
    )


# -- SIGSTOP ---------------------------------------------------------------------------------
def _holds_database_locks(db: Db, database_url: str) -> bool:
    """Whether a (stopped) process holds a lock that would block the others.

    A process frozen inside a write transaction would block everyone on SQLite (the
    write lock) and hide its rows from SKIP LOCKED recovery on PostgreSQL: that is
    not the scenario under test, so the test freezes the worker between transactions.
    """
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0.3)
        try:
            conn.isolation_level = None
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    busy = db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state <> 'idle'"
    )
    return bool(busy)


def _freeze_between_transactions(proc: Proc, db: Db, database_url: str) -> int:
    """SIGSTOP ``proc`` at a moment it holds no database lock; returns the tries needed."""
    for tries in range(1, 51):
        proc.signal(signal.SIGSTOP)
        time.sleep(0.05)
        if not _holds_database_locks(db, database_url):
            return tries
        proc.signal(signal.SIGCONT)
        time.sleep(0.02 * tries)
    raise AssertionError("could not freeze the worker outside a database transaction")


def _wait_refused(proc: Proc, run_id: int) -> None:
    """The resumed worker noticed it lost the run (heartbeat) or its write was refused."""
    wait_for(
        lambda: any(
            f"run {run_id} is no longer held" in line or f"run {run_id}: this worker" in line
            for line in proc.output().splitlines()
        ),
        timeout=10,
        what=f"the resumed worker to report that run {run_id} is no longer its own",
    )


@pytest.mark.parametrize("resume", ["while_reclaimed_run_runs", "after_run_is_final"])
def test_sigstopped_worker_cannot_overwrite_reclaimed_run(
    database_url: str, tmp_path: Path, resume: str
) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    procs = Processes(tmp_path / "logs")
    db = Db(database_url)
    try:
        frozen = start_worker(procs, database_url, home, concurrency=1, name="frozen")
        worker_id_of(db, frozen)
        [run_id] = submit_many(
            database_url,
            home,
            [
                SubmitRequest(
                    type=SLEEP, payload={"ledger": str(ledger), "seconds": 4}, max_attempts=3
                )
            ],
        )
        wait_for(
            lambda: any(e.pid == frozen.pid for e in read_ledger(ledger)),
            timeout=15,
            what="the first worker to start the run",
        )
        tries = _freeze_between_transactions(frozen, db, database_url)
        stopped_at = time.time()
        rescuer = start_worker(procs, database_url, home, concurrency=1, name="rescuer")
        rescuer_id = worker_id_of(db, rescuer)

        if resume == "while_reclaimed_run_runs":
            wait_for(
                lambda: any(
                    e.pid == rescuer.pid and e.event == "start" for e in read_ledger(ledger)
                ),
                timeout=LEASE_TIMEOUT + 15,
                what="the second worker to start the reclaimed run",
            )
            reclaimed = db.run(run_id)
            assert (reclaimed.status, reclaimed.worker_id) == ("running", rescuer_id)
            frozen.signal(signal.SIGCONT)
            # The frozen task's time.sleep ran out while stopped: it returns at once.
            wait_for(
                lambda: any(e.pid == frozen.pid and e.event == "end" for e in read_ledger(ledger)),
                timeout=10,
                what="the resumed worker's task to return",
            )
            _wait_refused(frozen, run_id)
            during = db.run(run_id)
            assert (during.status, during.worker_id, during.lease_token, during.result) == (
                "running",
                rescuer_id,
                reclaimed.lease_token,
                None,
            ), "the resumed worker wrote to a run another worker holds"

        final = db.wait_final(run_id, timeout=LEASE_TIMEOUT + 20)
        reclaimed_in = time.time() - stopped_at

        if resume == "after_run_is_final":
            frozen.signal(signal.SIGCONT)
            wait_for(
                lambda: any(e.pid == frozen.pid and e.event == "end" for e in read_ledger(ledger)),
                timeout=10,
                what="the resumed worker's task to return",
            )
            _wait_refused(frozen, run_id)

        # Several loop cycles (poll 0.2 s) and heartbeats (0.3 s) of the resumed worker.
        time.sleep(1.5)
        after = db.run(run_id)
        assert frozen.alive(), procs.tails()
        assert rescuer.alive(), procs.tails()
    finally:
        procs.kill_all()
        db.close()

    print(f"\nfroze after {tries} tries; run final {reclaimed_in:.1f}s after the freeze")
    assert final.status == "succeeded", final
    assert as_json(final.result) == {"pid": rescuer.pid, "attempt": 2}, final
    assert final.worker_id == rescuer_id
    assert after == final, "the run row changed after it was final"
    ends = [e for e in read_ledger(ledger) if e.event == "end"]
    assert sorted(e.pid for e in ends) == sorted([frozen.pid, rescuer.pid])


# -- SIGTERM ---------------------------------------------------------------------------------
def test_sigterm_requeued_run_is_not_executed_twice_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """A stopping worker requeues the runs still going after its grace; no other worker
    may then execute such a run while the stopping worker still does."""
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    procs = Processes(tmp_path / "logs")
    db = Db(database_url)
    try:
        stopping = start_worker(
            procs,
            database_url,
            home,
            concurrency=1,
            name="stopping",
            RUNWRIGHT_SHUTDOWN_GRACE="0.5",
        )
        worker_id_of(db, stopping)
        [run_id] = submit_many(
            database_url,
            home,
            [
                # Long enough that the run cannot end within the stopping worker's grace
                # even when starting the other worker takes seconds on a busy machine.
                SubmitRequest(
                    type=SLEEP, payload={"ledger": str(ledger), "seconds": 10}, max_attempts=3
                )
            ],
        )
        wait_for(lambda: read_ledger(ledger), timeout=15, what="the first worker to start the run")
        other = start_worker(procs, database_url, home, concurrency=1, name="other")
        worker_id_of(db, other)
        stopping.signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Popen.wait(timeout) polls every few ms; a blocking wait in a thread notes the
        # moment the process is gone (a task still running then ended with it).
        exit_times: list[float] = []
        watcher = threading.Thread(
            target=lambda: (stopping.popen.wait(), exit_times.append(time.time())), daemon=True
        )
        watcher.start()
        watcher.join(timeout=15)
        exit_code = stopping.wait(timeout=1)
        exited_in = time.monotonic() - signalled
        exited_at = exit_times[0] if exit_times else float("inf")
        final = db.wait_final(run_id, timeout=30)
    finally:
        procs.kill_all()
        db.close()

    found = executions(read_ledger(ledger), {stopping.pid: exited_at})
    print(f"\nstopping worker exited {exited_in:.1f}s after SIGTERM (code {exit_code})")
    assert not overlaps(found), (
        f"run {run_id} was executed by two live workers at once: "
        f"{sorted(found, key=lambda e: e.start)}"
    )
    assert exit_code == 0
    assert exited_in < 0.5 + 3.0, "the stopping worker outlived its grace by seconds"
    assert final.status == "succeeded"
    assert as_json(final.result)["pid"] == other.pid
