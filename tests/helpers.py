"""Shared test plumbing: bounded waits, runtimes and workers that always get closed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx

from runwright.config import Settings
from runwright.model.runs import Run
from runwright.model.states import RunStatus
from runwright.services.runtime import Runtime
from runwright.worker.context import TaskContext
from runwright.worker.registry import TaskRegistry, task
from runwright.worker.worker import Worker

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "a condition",
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_for_run(
    runtime: Runtime,
    run_id: int,
    statuses: Iterable[RunStatus] | None = None,
    *,
    timeout: float = 10.0,
    check: Callable[[Run], bool] | None = None,
) -> Run:
    """The run once it is in one of ``statuses`` (default: any final status)."""
    wanted = set(statuses) if statuses is not None else None
    last: list[Run] = []

    def probe() -> Run | None:
        run = runtime.runs.get(run_id)
        last[:] = [run]
        in_status = run.status.is_final if wanted is None else run.status in wanted
        if in_status and (check is None or check(run)):
            return run
        return None

    try:
        return wait_until(probe, timeout=timeout, what=f"run {run_id}")
    except AssertionError as exc:
        seen = last[0] if last else None
        state = "never read" if seen is None else f"{seen.status.value} ({seen.error!r})"
        raise AssertionError(f"{exc}; it is {state}") from None


@contextlib.contextmanager
def open_runtime(settings: Settings, registry: TaskRegistry) -> Iterator[Runtime]:
    runtime = Runtime.open(settings, registry=registry)
    try:
        yield runtime
    finally:
        runtime.close()


@contextlib.contextmanager
def running_worker(
    runtime: Runtime,
    *,
    concurrency: int = 4,
    in_process: bool = True,
    grace: float | None = 1.0,
) -> Iterator[Worker]:
    """A started worker, stopped (and waited for) on the way out whatever happens."""
    worker = runtime.worker(concurrency=concurrency, in_process=in_process)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop_and_wait(grace=grace)


def no_server_errors(response: httpx.Response) -> None:
    if response.status_code >= 500:
        response.read()
        request = response.request
        body = request.content.decode(errors="replace")[:300]
        raise AssertionError(
            f"{request.method} {request.url} {body} answered {response.status_code}: "
            f"{response.text[:500]}"
        )


def make_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @task("echo", registry=registry)
    def echo(ctx: TaskContext) -> Any:
        """Return the payload unchanged."""
        return ctx.payload

    @task("fail", registry=registry)
    def fail(ctx: TaskContext) -> None:
        """Always fail."""
        raise RuntimeError("this task always fails")

    return registry


def admin_headers(runtime: Runtime, role: str = "admin") -> dict[str, str]:
    """An API token of ``role`` for requests of a test (TestClient or a real server)."""
    import uuid

    _, secret = runtime.auth.create_token(f"test-{uuid.uuid4().hex[:12]}", role, actor="tests")
    return {"Authorization": f"Bearer {secret}"}


def home_headers(home: Any) -> dict[str, str]:
    """The admin token a `runwright server` wrote to its RUNWRIGHT_HOME on start."""
    from pathlib import Path

    secret = (Path(home) / "token").read_text().strip()
    return {"Authorization": f"Bearer {secret}"}
