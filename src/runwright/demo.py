"""Demo task types, registered by `make run` (``--tasks runwright.demo``)."""

from __future__ import annotations

from typing import Any

from runwright.worker.context import TaskContext
from runwright.worker.registry import task


@task("demo.echo")
def echo(ctx: TaskContext) -> Any:
    """Return the payload unchanged."""
    return ctx.payload


@task("demo.count")
def count(ctx: TaskContext) -> dict[str, int]:
    """Count to payload.to (default 10), one step per payload.every seconds, with progress."""
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    target = int(payload.get("to", 10))
    every = float(payload.get("every", 0.5))
    for i in range(1, target + 1):
        ctx.sleep(every)
        ctx.progress(100 * i / target, f"counted {i} of {target}")
    return {"counted": target}


@task("demo.fail")
def fail(ctx: TaskContext) -> None:
    """Always fail, to show retries and dead letters."""
    raise RuntimeError(f"demo failure on attempt {ctx.attempt} of {ctx.max_attempts}")
