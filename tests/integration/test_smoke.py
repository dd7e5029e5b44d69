from __future__ import annotations

from runwright.config import Settings
from runwright.model.runs import SubmitRequest
from runwright.model.states import Outcome, RunStatus
from runwright.services.runtime import Runtime
from runwright.worker.registry import TaskRegistry, task


def test_submit_execute_and_retry_to_dead_letter(settings: Settings) -> None:
    registry = TaskRegistry()
    task("double", registry=registry)(lambda ctx: ctx.payload * 2)

    @task("flaky", registry=registry)
    def flaky(ctx: object) -> None:
        raise RuntimeError("always")

    runtime = Runtime.open(settings, registry=registry)
    worker = runtime.worker(concurrency=4, in_process=True)
    worker.start()
    try:
        ok = runtime.runs.submit(SubmitRequest(type="double", payload=21)).run
        bad = runtime.runs.submit(SubmitRequest(type="flaky", max_attempts=3)).run
        from runwright.client import Client

        client = Client(database_url=settings.effective_database_url, settings=settings)
        done = client.wait(ok.id, timeout=10)
        failed = client.wait(bad.id, timeout=10)
        client.close()
    finally:
        worker.stop_and_wait()
        runtime.close()
    assert done.status is RunStatus.SUCCEEDED
    assert done.result == 42
    assert failed.status is RunStatus.FAILED
    assert failed.outcome is Outcome.DEAD_LETTER
    assert failed.attempt == 3
    assert "always" in (failed.error or "")
