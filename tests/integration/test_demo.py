"""`make run` installs demo jobs: they run, and installing twice changes nothing."""

from __future__ import annotations

from runwright.config import Settings
from runwright.demo import install_demo_jobs
from runwright.model.states import RunStatus
from runwright.services.jobs import RunOptions
from runwright.services.runtime import Runtime
from tests.helpers import wait_until


def test_demo_jobs_install_once_and_run(settings: Settings) -> None:
    runtime = Runtime.open(settings, create_schema=True)
    worker = runtime.worker(concurrency=1, in_process=True)
    worker.start()
    try:
        assert sorted(install_demo_jobs(runtime.scripts, runtime.jobs)) == ["hello", "hello-steps"]
        assert install_demo_jobs(runtime.scripts, runtime.jobs) == []
        assert len(runtime.jobs.packages("hello")) == 1
        run = runtime.jobs.run("hello", RunOptions(params={"name": "Ada", "steps": 1}))
        done = wait_until(lambda: (r := runtime.runs.get(run.id)).status.is_final and r, timeout=60)
        lines = [line.message for line in runtime.logs.page(run.id)]
        chain = runtime.jobs.run("hello-steps", RunOptions(params={"name": "Ada"}))
        chained = wait_until(
            lambda: (r := runtime.runs.get(chain.id)).status.is_final and r, timeout=60
        )
        steps = {step.step_id: step.status for step in runtime.steps.list(chain.id)}
    finally:
        worker.stop_and_wait()
        runtime.close()
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.result == {"greeted": "Ada", "steps": 1}
    assert "hello Ada: step 1 of 1" in lines
    assert chained.status is RunStatus.SUCCEEDED, chained.error
    assert chained.type == "steps"
    assert chained.result == {"rows": 5, "sum": 55, "shouted": "HELLO, ADA!"}
    assert steps == dict.fromkeys(["greet", "shout", "report", "check", "summary"], "succeeded")
