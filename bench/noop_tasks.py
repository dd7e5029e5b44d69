"""The no-op task type the queue benchmark runs (``--tasks bench.noop_tasks``)."""

from __future__ import annotations

from runwright.worker.registry import task


@task("bench.noop")
def noop(ctx: object) -> None:
    """Do nothing: the benchmark measures the queue, not the task."""
    return None
