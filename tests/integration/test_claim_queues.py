"""A worker serving several queues claims across them in one order: highest priority,
then oldest, at most its free slots, and never from a queue it does not serve."""

from __future__ import annotations

from runwright.config import Settings
from runwright.db.queue import RunQueue
from runwright.model.runs import SubmitRequest
from runwright.services.runtime import Runtime
from runwright.worker.registry import TaskRegistry, task


def test_claims_across_queues_follow_priority_then_age(settings: Settings) -> None:
    registry = TaskRegistry()
    task("noop", registry=registry)(lambda ctx: None)
    runtime = Runtime.open(settings, create_schema=True, registry=registry)
    try:
        submit = runtime.runs.submit_many
        low_a = submit([SubmitRequest(type="noop", queue="a") for _ in range(3)])
        other = submit([SubmitRequest(type="noop", queue="elsewhere", priority=50)])
        high_b = submit([SubmitRequest(type="noop", queue="b", priority=9) for _ in range(2)])
        mid_a = submit([SubmitRequest(type="noop", queue="a", priority=5)])
        queue = RunQueue(runtime.engine, lease_timeout=30)
        first = queue.claim("w1", ["a", "b"], 4)
        rest = queue.claim("w1", ["a", "b"], 10)
        none_left = queue.claim("w1", ["a", "b"], 10)
    finally:
        runtime.close()
    assert [run.id for run in first] == [*high_b, *mid_a, low_a[0]]
    assert [run.id for run in rest] == low_a[1:]
    assert none_left == []
    assert other[0] not in {run.id for run in first + rest}
