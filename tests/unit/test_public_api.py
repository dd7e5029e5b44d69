"""The public surface changes only on purpose."""

from __future__ import annotations

import runwright
from runwright.testing import run_inline
from runwright.worker.registry import TaskRegistry, task


def test_exported_names() -> None:
    assert sorted(runwright.__all__) == sorted(
        ["Cancelled", "Client", "Retry", "RunwrightError", "TaskContext", "__version__", "task"]
    )
    for name in runwright.__all__:
        assert hasattr(runwright, name), name


def test_run_inline_reports_result_progress_and_errors() -> None:
    registry = TaskRegistry()

    @task("steps", registry=registry)
    def steps(ctx: runwright.TaskContext) -> dict[str, int]:
        for i in range(1, 4):
            ctx.progress(i * 100 / 3, f"{i} of 3")
        return {"done": ctx.payload["n"]}

    @task("broken", registry=registry)
    def broken(ctx: runwright.TaskContext) -> None:
        raise ValueError("no")

    ok = run_inline("steps", {"n": 3}, registry=registry)
    assert ok.succeeded
    assert ok.result == {"done": 3}
    assert ok.progress[-1] == (100.0, "3 of 3")
    bad = run_inline("broken", registry=registry)
    assert not bad.succeeded
    assert isinstance(bad.error, ValueError)
