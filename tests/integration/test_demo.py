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
        assert install_demo_jobs(runtime.scripts, runtime.jobs) == ["hello"]
        assert install_demo_jobs(runtime.scripts, runtime.jobs) == []
        assert len(runtime.jobs.packages("hello")) == 1
        run = runtime.jobs.run("hello", RunOptions(params={"name": "Ada", "steps": 1}))
        done = wait_until(lambda: (r := runtime.runs.get(run.id)).status.is_final and r, timeout=60)
        lines = [line.message for line in runtime.logs.page(run.id)]
    finally:
        worker.stop_and_wait()
        runtime.close()
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.result == {"greeted": "Ada", "steps": 1}
    assert "hello Ada: step 1 of 1" in lines
