"""Helpers for testing your own tasks without a database or a worker.

from runwright.testing import run_inline

def test_export():
    outcome = run_inline("export", {"rows": 3}, tasks="myapp.tasks")
    assert outcome.result == {"exported": 3}
    assert outcome.progress[-1] == (100.0, "3 of 3 rows")
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from runwright.errors import InvalidRequest, UnknownTaskType
from runwright.worker.context import TaskContext
from runwright.worker.registry import TaskRegistry, default_registry, import_task_modules


@dataclass(slots=True)
class InlineOutcome:
    result: Any = None
    error: BaseException | None = None
    progress: list[tuple[float | None, str | None]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.error is None


def run_inline(
    task_type: str,
    payload: Any = None,
    *,
    tasks: str | None = None,
    registry: TaskRegistry | None = None,
    attempt: int = 1,
    max_attempts: int = 1,
    cancelled: bool = False,
) -> InlineOutcome:
    """Execute one attempt of ``task_type`` in this thread and report what it did.

    Exceptions raised by the task are captured in ``error``, not raised.
    """
    registry = registry or default_registry
    if tasks:
        import_task_modules([tasks])
    spec = registry.get(task_type)
    if spec is None:
        raise UnknownTaskType(task_type, registry.names())
    if attempt < 1 or attempt > max_attempts:
        raise InvalidRequest("attempt must be between 1 and max_attempts")
    outcome = InlineOutcome()
    ctx = TaskContext(
        run_id=0,
        type=task_type,
        payload=payload,
        attempt=attempt,
        max_attempts=max_attempts,
        progress=lambda percent, message: outcome.progress.append((percent, message)),
    )
    if cancelled:
        ctx._request_cancel()
    try:
        value = spec.func(ctx)
        outcome.result = asyncio.run(value) if spec.is_async else value
    except Exception as exc:  # the task's failure is what the caller wants to see
        outcome.error = exc
    return outcome
