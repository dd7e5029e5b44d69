"""Task types for the crash, restart and end-to-end tests, run by worker subprocesses.

Worker processes import this module with ``--tasks tests.tasks_crash`` (PYTHONPATH is the
repository root). The test process never imports it, so the global default registry of
the test process stays clean; it submits with a registry of stubs (see ``tests.procs``).

Every task appends to a ledger file named in its payload: one ``os.write`` of one line on
a descriptor opened with O_APPEND, so lines of concurrent processes never interleave::

    start <run_id> <attempt> <pid> <epoch>
    end <run_id> <attempt> <pid> <epoch>

and returns ``{"pid": ..., "attempt": ...}`` so that a test can tell which execution won.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from runwright.worker.context import TaskContext
from runwright.worker.registry import task

WORK = "crash.work"
SLEEP = "crash.sleep"
NOOP = "crash.noop"
TYPES = (WORK, SLEEP, NOOP)


def ledger(path: str, event: str, ctx: TaskContext) -> None:
    line = f"{event} {ctx.run_id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _answer(ctx: TaskContext) -> dict[str, Any]:
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@task(WORK)
def work(ctx: TaskContext) -> dict[str, Any]:
    """Sleep a random 20-200 ms (payload min/max in seconds) between two ledger lines."""
    payload = ctx.payload
    ledger(payload["ledger"], "start", ctx)
    time.sleep(random.uniform(payload.get("min", 0.02), payload.get("max", 0.2)))
    ledger(payload["ledger"], "end", ctx)
    return _answer(ctx)


@task(SLEEP)
def sleep(ctx: TaskContext) -> dict[str, Any]:
    """Sleep payload.seconds with ``time.sleep``: deaf to cancellation, like most real code."""
    payload = ctx.payload
    ledger(payload["ledger"], "start", ctx)
    time.sleep(payload["seconds"])
    ledger(payload["ledger"], "end", ctx)
    return _answer(ctx)


@task(NOOP)
def noop(ctx: TaskContext) -> dict[str, Any]:
    """Sleep 1 ms and record the execution with one ledger line."""
    time.sleep(0.001)
    ledger(ctx.payload["ledger"], "end", ctx)
    return _answer(ctx)
