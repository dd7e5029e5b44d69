"""Multi-step jobs executed for real, on SQLite and PostgreSQL: in-process workers, the
local artifact store, python steps in one reused subprocess, shell steps, conditions,
retries, timeouts, cancellation, resume, references and variables."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from runwright.api.app import create_app
from runwright.artifacts.keys import context_key
from runwright.artifacts.package import build_from_files
from runwright.config import Settings
from runwright.db.steps import RunStep
from runwright.model.context import MASK
from runwright.model.runs import LogLine, Run
from runwright.model.states import Outcome, RunStatus
from runwright.services.jobs import Deployed, RunOptions
from runwright.services.runtime import Runtime
from runwright.worker.worker import Worker
from tests.helpers import admin_headers, wait_for_run, wait_until

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


# -- the rig: a runtime with an in-process worker ------------------------------------------------
@dataclass
class StepsRig:
    runtime: Runtime
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def deploy(
        self, job: str, steps: list[dict[str, Any]], files: dict[str, str] | None = None
    ) -> Deployed:
        text = yaml.safe_dump({"steps": steps}, sort_keys=False)
        entries = [("job.yaml", text.encode(), False)]
        entries += [(name, body.encode(), False) for name, body in (files or {}).items()]
        return self.runtime.jobs.deploy(job, build_from_files(entries).data)

    def run(self, job: str, **options: Any) -> Run:
        return self.runtime.jobs.run(job, RunOptions(**options))

    def wait(self, run_id: int, timeout: float = 30.0) -> Run:
        """The final run, once its log is complete too."""
        wait_for_run(self.runtime, run_id, timeout=timeout)
        return wait_until(
            lambda: self._complete(run_id),
            timeout=10,
            what=f"the log of run {run_id} to be complete",
        )

    def _complete(self, run_id: int) -> Run | None:
        run = self.runtime.runs.get(run_id)
        if run.log_count and self.runtime.logs.last_seq(run_id) >= run.log_count:
            return run
        return None

    def lines(self, run_id: int) -> list[LogLine]:
        found: list[LogLine] = []
        while True:
            page = self.runtime.logs.page(run_id, after=found[-1].seq if found else 0, limit=5000)
            found.extend(page)
            if len(page) < 5000:
                return found

    def steps(self, run_id: int) -> dict[str, RunStep]:
        return {s.step_id: s for s in self.runtime.steps.list(run_id)}

    def saved_context(self, run: Run) -> dict[str, Any]:
        assert run.job_id is not None
        raw = self.runtime.store.get(context_key(run.job_id, run.id))
        data: dict[str, Any] = json.loads(raw)
        return data

    def output(self, run: Run, step_id: str) -> Any:
        return self.saved_context(run)["steps"][step_id]["output"]

    def describe(self, run_id: int) -> str:
        lines = "\n".join(
            f"  [{x.step or '-'}] {x.stream} {x.message}" for x in self.lines(run_id)[-40:]
        )
        return f"run {run_id}: {self.runtime.runs.get(run_id)}\n{lines}"


@pytest.fixture
def make_rig(settings: Settings) -> Iterator[Callable[..., StepsRig]]:
    opened: list[StepsRig] = []

    def make(*, workers: int = 1, **overrides: Any) -> StepsRig:
        runtime = Runtime.open(
            settings.with_overrides(job_kill_grace=0.5, **overrides), create_schema=True
        )
        rig = StepsRig(runtime=runtime)
        opened.append(rig)
        for _ in range(workers):
            worker = runtime.worker(concurrency=2, in_process=True)
            worker.start()
            rig.workers.append(worker)
        return rig

    try:
        yield make
    finally:
        for rig in opened:
            for worker in rig.workers:
                worker.stop_and_wait(grace=1)
            rig.runtime.close()


@pytest.fixture
def rig(make_rig: Callable[..., StepsRig]) -> StepsRig:
    return make_rig()


def shell(step_id: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": "shell", "with": {"command": command}, **extra}


def python(
    step_id: str, function: str, inputs: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": step_id,
        "uses": "python",
        "with": {"function": function, "inputs": inputs or {}},
        **extra,
    }


def succeeded(rig: StepsRig, run: Run, timeout: float = 30.0) -> Run:
    done = rig.wait(run.id, timeout=timeout)
    assert done.status is RunStatus.SUCCEEDED, rig.describe(run.id)
    return done


# -- python steps --------------------------------------------------------------------------------
STEPS_MODULE = """\
import os
import sys
import time

from runwright import sdk

CALLS = 0


def count():
    global CALLS
    CALLS += 1
    return {"calls": CALLS, "pid": os.getpid()}


def inspect(label):
    print(f"inspecting {label}", flush=True)
    return {
        "label": label,
        "step": sdk.step,
        "first": sdk.context["steps"]["first"]["output"],
        "first_status": sdk.context["steps"]["first"]["status"],
        "params": dict(sdk.params),
        "run_id": sdk.context["run_id"],
    }


def first():
    print("first step says hi", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    return {"rows": [1, 2, 3], "ok": True}


def explode(row):
    print(f"about to fail on row {row}", flush=True)
    return parse(row)


def parse(row):
    raise ValueError(f"bad row {row}")


def sleepy(seconds):
    print("going to sleep", flush=True)
    time.sleep(seconds)
    return "woke"


def pid():
    return os.getpid()


def echo(value):
    return value


def not_json():
    return {1, 2}


def unfinished_line():
    print("partial", end="")
    return "done"
"""


def test_python_steps_return_outputs_and_see_the_context(rig: StepsRig) -> None:
    rig.deploy(
        "py",
        [
            python("first", "stepsmod:first"),
            python("second", "stepsmod:inspect", {"label": "{{ steps.first.output.rows[2] }}"}),
        ],
        {"stepsmod.py": STEPS_MODULE},
    )
    run = rig.run("py", params={"day": "2026-11-22"})
    done = succeeded(rig, run)
    second = rig.output(done, "second")
    assert second == {
        "label": 3,
        "step": "second",
        "first": {"rows": [1, 2, 3], "ok": True},
        "first_status": "succeeded",
        "params": {"day": "2026-11-22"},
        "run_id": run.id,
    }
    assert done.result == second  # the run's result is the last step's output
    rows = rig.steps(run.id)
    assert [
        (s.step_id, s.position, s.uses, s.status, s.tries, s.attempt) for s in rows.values()
    ] == [
        ("first", 0, "python", "succeeded", 1, 1),
        ("second", 1, "python", "succeeded", 1, 1),
    ]
    assert rows["first"].output_summary == '{"rows":[1,2,3],"ok":true}'
    assert rows["first"].duration is not None
    assert rows["first"].duration >= 0
    tagged = {(x.step, x.stream, x.message) for x in rig.lines(run.id)}
    assert ("first", "stdout", "first step says hi") in tagged
    assert ("first", "stderr", "to stderr") in tagged
    assert ("second", "stdout", "inspecting 3") in tagged
    assert not [x for x in rig.lines(run.id) if "runwright-step-end" in x.message]


def test_one_python_process_serves_every_python_step(rig: StepsRig) -> None:
    rig.deploy(
        "counter",
        [
            python("one", "stepsmod:count"),
            shell("between", "echo shell in between"),
            python("two", "stepsmod:count"),
            python("three", "stepsmod:count"),
        ],
        {"stepsmod.py": STEPS_MODULE},
    )
    done = succeeded(rig, rig.run("counter"))
    outputs = [rig.output(done, s) for s in ("one", "two", "three")]
    assert [o["calls"] for o in outputs] == [1, 2, 3]
    assert len({o["pid"] for o in outputs}) == 1


def test_output_without_a_final_newline_is_kept_whole_and_costs_no_wait(rig: StepsRig) -> None:
    # Regression: the host's end-of-step marker was glued onto the unfinished line; the
    # engine waited 2 s for it and stored the marker in the log.
    rig.deploy(
        "unfinished",
        [python("one", "stepsmod:unfinished_line"), python("two", "stepsmod:echo", {"value": 2})],
        {"stepsmod.py": STEPS_MODULE},
    )
    done = succeeded(rig, rig.run("unfinished"))
    messages = [line.message for line in rig.lines(done.id) if line.step == "one"]
    assert "partial" in messages
    assert not any("\x1e" in message for message in messages)


def test_an_exception_fails_the_step_with_its_traceback_tagged(rig: StepsRig) -> None:
    rig.deploy(
        "explodes",
        [python("ok", "stepsmod:first"), python("boom", "stepsmod:explode", {"row": 7})],
        {"stepsmod.py": STEPS_MODULE},
    )
    run = rig.run("explodes")
    done = rig.wait(run.id)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    error = done.error or ""
    assert "Step boom (python) failed: ValueError: bad row 7" in error
    assert f"runwright runs resume {run.id}" in error
    boom = rig.steps(run.id)["boom"]
    assert (boom.status, boom.error_type, boom.error) == (
        "failed",
        "exception",
        "ValueError: bad row 7",
    )
    stderr = [x for x in rig.lines(run.id) if x.stream == "stderr"]
    assert [x.message for x in stderr if x.step == "ok"] == ["to stderr"]
    traceback = [x for x in stderr if x.message.startswith("Traceback")]
    assert [x.step for x in traceback] == ["boom"], rig.describe(run.id)
    messages = [x.message for x in stderr if x.step == "boom"]
    assert {x.level for x in stderr if x.step == "boom"} == {"error"}
    assert messages[0] == "Traceback (most recent call last):"
    assert messages[-1] == "ValueError: bad row 7"
    assert any("in parse" in m for m in messages)
    assert any("stepsmod.py" in m for m in messages)
    context = rig.saved_context(done)
    assert context["steps"]["boom"]["status"] == "failed"
    assert context["steps"]["boom"]["error_type"] == "exception"
    assert context["steps"]["ok"]["status"] == "succeeded"


def test_a_return_value_that_is_not_json_fails_the_step(rig: StepsRig) -> None:
    rig.deploy("nojson", [python("bad", "stepsmod:not_json")], {"stepsmod.py": STEPS_MODULE})
    run = rig.run("nojson")
    done = rig.wait(run.id)
    assert done.status is RunStatus.FAILED
    step = rig.steps(run.id)["bad"]
    assert step.error_type == "exception"
    assert "not JSON-serialisable" in (step.error or "")


def test_a_python_step_timeout_stops_it_and_times_the_run_out(rig: StepsRig) -> None:
    rig.deploy(
        "sleepy",
        [python("nap", "stepsmod:sleepy", {"seconds": 30}, timeout=1)],
        {"stepsmod.py": STEPS_MODULE},
    )
    run = rig.run("sleepy")
    done = rig.wait(run.id, timeout=20)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.TIMED_OUT), rig.describe(
        run.id
    )
    nap = rig.steps(run.id)["nap"]
    assert nap.started_at is not None
    assert done.finished_at is not None
    took = done.finished_at - nap.started_at
    assert took < 5, f"the run ended {took:.1f}s after its 1 s step started (sleeping 30 s)"
    assert (nap.status, nap.error_type) == ("timed_out", "timeout")
    assert "did not finish in time" in (nap.error or "")
    assert nap.duration is not None
    assert 1.0 <= nap.duration < 4.0
    assert "Step nap (python) timed out" in (done.error or "")
    assert rig.saved_context(done)["steps"]["nap"]["status"] == "timed_out"


def test_a_python_step_after_a_timed_out_one_runs_in_a_new_process(rig: StepsRig) -> None:
    rig.deploy(
        "restart",
        [
            python("before", "stepsmod:pid"),
            python("nap", "stepsmod:sleepy", {"seconds": 30}, timeout=1, continue_on_error=True),
            python("after", "stepsmod:count"),
        ],
        {"stepsmod.py": STEPS_MODULE},
    )
    run = rig.run("restart")
    done = succeeded(rig, run, timeout=20)
    steps = rig.steps(run.id)
    assert [steps[s].status for s in ("before", "nap", "after")] == [
        "succeeded",
        "timed_out",
        "succeeded",
    ]
    after = rig.output(done, "after")
    assert after["calls"] == 1  # a fresh module: the host was started again
    assert after["pid"] != rig.output(done, "before")
    assert done.result == after


# -- shell steps ---------------------------------------------------------------------------------
def test_a_shell_step_gives_stdout_stderr_tail_and_exit_code(rig: StepsRig) -> None:
    rig.deploy(
        "sh",
        [
            shell("say", "echo one; echo two; echo warn >&2"),
            {
                "id": "env",
                "uses": "shell",
                "with": {
                    "command": 'echo "$GREETING {{ steps.say.output.exit_code }}"',
                    "env": {"GREETING": "hello"},
                },
            },
        ],
    )
    run = rig.run("sh")
    done = succeeded(rig, run)
    assert rig.output(done, "say") == {"stdout": "one\ntwo", "stderr_tail": "warn", "exit_code": 0}
    assert rig.output(done, "env")["stdout"] == "hello 0"
    lines = [(x.step, x.stream, x.message) for x in rig.lines(run.id)]
    assert ("say", "stdout", "one") in lines
    assert ("say", "stderr", "warn") in lines
    assert ("env", "stdout", "hello 0") in lines


def test_a_shell_step_that_exits_non_zero_fails(rig: StepsRig) -> None:
    rig.deploy("exits", [shell("bad", "echo nope >&2; exit 3"), shell("never", "echo never")])
    run = rig.run("exits")
    done = rig.wait(run.id)
    assert (done.status, done.outcome) == (RunStatus.FAILED, Outcome.ERROR)
    steps = rig.steps(run.id)
    assert (steps["bad"].status, steps["bad"].error_type) == ("failed", "exit_code")
    assert "exited with code 3" in (steps["bad"].error or "")
    assert "nope" in (steps["bad"].error or "")
    assert "never" not in steps  # the run stopped at the failed step
    assert "Step bad (shell) failed" in (done.error or "")


def test_when_false_skips_the_step(rig: StepsRig) -> None:
    rig.deploy(
        "cond",
        [
            shell("check", "echo 0"),
            shell("skipped", "echo should not run", when="steps.check.output.stdout == '1'"),
            shell("runs", "echo ran", when="{{ params.go }}"),
        ],
    )
    run = rig.run("cond", params={"go": True})
    done = succeeded(rig, run)
    steps = rig.steps(run.id)
    assert steps["skipped"].status == "skipped"
    assert steps["runs"].status == "succeeded"
    assert "should not run" not in [x.message for x in rig.lines(run.id)]
    assert rig.saved_context(done)["steps"]["skipped"]["status"] == "skipped"
    assert done.result["stdout"] == "ran"


def test_a_when_reading_a_missing_key_fails_the_step_as_a_reference_error(
    rig: StepsRig,
) -> None:
    rig.deploy("badwhen", [shell("a", "echo a"), shell("b", "echo b", when="params.nope")])
    run = rig.run("badwhen")
    done = rig.wait(run.id)
    assert done.status is RunStatus.FAILED
    step = rig.steps(run.id)["b"]
    assert (step.status, step.error_type) == ("failed", "reference")
    assert "there is no key 'nope'" in (step.error or "")


def test_a_missing_reference_fails_the_step_naming_it(rig: StepsRig) -> None:
    rig.deploy("badref", [shell("a", "echo a"), shell("b", "echo {{ steps.a.output.rows }}")])
    run = rig.run("badref")
    rig.wait(run.id)
    step = rig.steps(run.id)["b"]
    assert (step.status, step.error_type) == ("failed", "reference")
    assert "with.command: reference" in (step.error or "")
    assert "there is no key 'rows' (the keys there are: exit_code, stderr_tail, stdout)" in (
        step.error or ""
    )


def test_retries_try_a_failing_step_again(rig: StepsRig, tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    command = (
        f"echo try >> {counter}; "
        f'if [ "$(wc -l < {counter})" -lt 2 ]; then echo first try fails >&2; exit 1; fi; '
        "echo worked"
    )
    rig.deploy("flaky", [shell("flaky", command, retries={"count": 2, "backoff": 0.1})])
    run = rig.run("flaky")
    done = succeeded(rig, run)
    step = rig.steps(run.id)["flaky"]
    assert (step.status, step.tries, step.attempt) == ("succeeded", 2, 1)
    assert counter.read_text().splitlines() == ["try", "try"]
    system = [x.message for x in rig.lines(run.id) if x.stream == "system"]
    assert any("Step flaky failed" in m and "try 2 of 3" in m for m in system), system
    assert rig.output(done, "flaky")["stdout"] == "worked"


def test_retries_give_up_after_count_plus_one_tries(rig: StepsRig, tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    rig.deploy(
        "hopeless",
        [shell("never", f"echo try >> {counter}; exit 1", retries={"count": 2, "backoff": 0})],
    )
    run = rig.run("hopeless")
    done = rig.wait(run.id)
    assert done.status is RunStatus.FAILED
    assert rig.steps(run.id)["never"].tries == 3
    assert len(counter.read_text().splitlines()) == 3


def test_continue_on_error_runs_the_next_steps(rig: StepsRig) -> None:
    rig.deploy(
        "tolerant",
        [
            shell("broken", "exit 4", continue_on_error=True),
            shell("after", "echo after", when="steps.broken.status == 'failed'"),
        ],
    )
    run = rig.run("tolerant")
    done = succeeded(rig, run)
    steps = rig.steps(run.id)
    assert (steps["broken"].status, steps["after"].status) == ("failed", "succeeded")
    warnings_ = [x.message for x in rig.lines(run.id) if x.level == "warning"]
    assert any("continuing (continue_on_error)" in m for m in warnings_)
    assert done.result["stdout"] == "after"


def test_cancel_during_a_long_shell_step(rig: StepsRig) -> None:
    rig.deploy("long", [shell("wait", "echo started; sleep 30"), shell("never", "echo x")])
    run = rig.run("long")
    wait_until(
        lambda: "started" in [x.message for x in rig.lines(run.id)],
        timeout=20,
        what="the shell step to start",
    )
    asked = time.monotonic()
    rig.runtime.runs.cancel(run.id)
    done = rig.wait(run.id, timeout=15)
    took = time.monotonic() - asked
    assert (done.status, done.outcome) == (RunStatus.CANCELED, Outcome.CANCELED)
    assert took < 5, f"canceled {took:.1f}s after the request"
    steps = rig.steps(run.id)
    assert steps["wait"].status == "canceled"
    assert steps["wait"].error_type == "canceled"
    assert "never" not in steps
    assert rig.saved_context(done)["steps"]["wait"]["status"] == "canceled"


# -- resume --------------------------------------------------------------------------------------
def test_a_second_run_attempt_resumes_from_the_failed_step(rig: StepsRig, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    rig.deploy(
        "resumes",
        [
            shell("prepare", f"echo prepare >> {ledger}; echo prepared-$RUNWRIGHT_ATTEMPT"),
            shell(
                "load",
                f"echo load >> {ledger}; "
                'if [ "$RUNWRIGHT_ATTEMPT" = 1 ]; then exit 1; fi; '
                "echo loaded {{ steps.prepare.output.stdout }}",
            ),
        ],
    )
    run = rig.run("resumes", max_attempts=2)
    done = succeeded(rig, run)
    assert done.attempt == 2
    assert ledger.read_text().splitlines() == ["prepare", "load", "load"]
    steps = rig.steps(run.id)
    assert (steps["prepare"].status, steps["prepare"].attempt) == ("succeeded", 1)
    assert (steps["load"].status, steps["load"].attempt) == ("succeeded", 2)
    assert rig.output(done, "load")["stdout"] == "loaded prepared-1"
    system = [x.message for x in rig.lines(run.id) if x.stream == "system"]
    assert any("Resuming from the saved context: 1 of 2 steps already done" in m for m in system)
    assert any("Step prepare: succeeded in attempt 1; not run again" in m for m in system)


def test_resume_after_a_failure_continues_with_the_fixed_variable(rig: StepsRig) -> None:
    rig.deploy(
        "needsvar",
        [shell("first", "echo first"), shell("second", "test {{ variables.mode }} = ok")],
    )
    rig.runtime.variables.set("mode", "broken")
    run = rig.run("needsvar")
    failed = rig.wait(run.id)
    assert failed.status is RunStatus.FAILED
    rig.runtime.variables.set("mode", "ok")
    resumed = rig.runtime.runs.resume(run.id)
    assert resumed.status is RunStatus.QUEUED
    done = succeeded(rig, run)
    assert done.attempt == 2
    steps = rig.steps(run.id)
    assert (steps["first"].attempt, steps["second"].attempt) == (1, 2)


# -- references and variables --------------------------------------------------------------------
def test_references_to_params(rig: StepsRig) -> None:
    rig.deploy(
        "params",
        [
            python(
                "echo",
                "stepsmod:echo",
                {
                    "value": {
                        "day": "{{ params.day }}",
                        "limit": "{{ params.limit }}",
                        "tags": "{{ params.tags }}",
                        "path": "/data/{{ params.day }}.csv",
                    }
                },
            )
        ],
        {"stepsmod.py": STEPS_MODULE},
    )
    run = rig.run("params", params={"day": "2026-11-22", "limit": 500, "tags": ["a"]})
    done = succeeded(rig, run)
    assert done.result == {
        "day": "2026-11-22",
        "limit": 500,
        "tags": ["a"],
        "path": "/data/2026-11-22.csv",
    }


def test_a_job_variable_wins_over_a_global_one(rig: StepsRig) -> None:
    rig.deploy("vars", [shell("show", "echo {{ variables.region }} {{ variables.shared }}")])
    rig.deploy("other", [shell("show", "echo {{ variables.region }}")])
    variables = rig.runtime.variables
    variables.set("region", "global-region")
    variables.set("shared", "only-global")
    variables.set("region", "job-region", job="vars")
    done = succeeded(rig, rig.run("vars"))
    assert rig.output(done, "show")["stdout"] == "job-region only-global"
    other = succeeded(rig, rig.run("other"))
    assert rig.output(other, "show")["stdout"] == "global-region"


SECRET = "s3cr3t-Pa55w0rd"


def test_a_sensitive_variable_is_masked_in_logs_saved_context_and_api(rig: StepsRig) -> None:
    rig.deploy(
        "secretive",
        [
            shell("login", "echo logging in with {{ variables.password }}"),
            python("keep", "stepsmod:echo", {"value": "token={{ variables.password }}"}),
        ],
        {"stepsmod.py": STEPS_MODULE},
    )
    rig.runtime.variables.set("password", SECRET, sensitive=True)
    rig.runtime.variables.set("user", "ada")
    run = rig.run("secretive")
    done = succeeded(rig, run)
    messages = [x.message for x in rig.lines(run.id)]
    logged = [m for m in messages if m.startswith("logging in with")]
    assert len(logged) == 1
    assert re.fullmatch(r"logging in with \*{4,}", logged[0]), logged
    assert not [m for m in messages if SECRET in m]
    assert job_id_of(done) is not None
    raw = rig.runtime.store.get(context_key(job_id_of(done), run.id)).decode()
    assert SECRET not in raw
    saved = json.loads(raw)
    assert saved["variables"] == {"password": MASK, "user": "ada"}
    assert saved["steps"]["login"]["output"]["stdout"] == f"logging in with {MASK}"
    assert saved["steps"]["keep"]["output"] == f"token={MASK}"
    assert SECRET not in json.dumps(done.result)
    assert SECRET not in "".join(s.output_summary or "" for s in rig.steps(run.id).values())
    with TestClient(
        create_app(rig.runtime),
        raise_server_exceptions=False,
        headers=admin_headers(rig.runtime),
    ) as client:
        response = client.get(f"/api/runs/{run.id}/context")
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        assert response.json()["variables"]["password"] == MASK
        assert response.json()["steps"]["keep"]["output"] == f"token={MASK}"
        log = client.get(f"/api/runs/{run.id}/log.txt")
        assert log.status_code == 200
        assert SECRET not in log.text


def job_id_of(run: Run) -> int:
    assert run.job_id is not None
    return run.job_id


# Regression (found by this test, fixed in 9f8b8fc): a sensitive variable whose value is a
# JSON object was masked only as its whole JSON text, so `echo {{ variables.db.password }}`
# printed the password in clear in the log lines and the saved context.
def test_the_members_of_a_sensitive_object_are_masked_too(rig: StepsRig) -> None:
    rig.deploy("nested", [shell("connect", "echo connecting as {{ variables.db.password }}")])
    rig.runtime.variables.set("db", {"user": "svc", "password": SECRET}, sensitive=True)
    run = rig.run("nested")
    done = succeeded(rig, run)
    messages = [x.message for x in rig.lines(run.id)]
    assert not [m for m in messages if SECRET in m], messages
    assert SECRET not in json.dumps(rig.saved_context(done))


# SRC BUG (src/runwright/model/context.py, mask_values ~line 276-293, used by the engine's
# _mask and by services/contexts.py masked_json): a sensitive variable with a number value
# is masked in log lines (they are text) but not in step outputs: mask_values only looks
# inside strings, so a step that returns `{{ variables.pin }}` (a lone reference keeps the
# number) saves 987654321 in clear in the context, and GET /api/runs/{id}/context and
# `runwright runs context` show it, although docs/steps.md says sensitive values are
# "masked wherever they appear, including inside step outputs". Expected: the number is
# masked too. Left failing on purpose.
def test_a_sensitive_number_returned_by_a_step_is_masked_in_the_context(rig: StepsRig) -> None:
    rig.deploy(
        "pin",
        [python("show", "stepsmod:echo", {"value": {"pin": "{{ variables.pin }}"}})],
        {"stepsmod.py": STEPS_MODULE},
    )
    rig.runtime.variables.set("pin", 987654321, sensitive=True)
    run = rig.run("pin")
    done = succeeded(rig, run)
    assert "987654321" not in json.dumps(done.result)  # the run's result, GET /api/runs/{id}
    assert "987654321" not in json.dumps(rig.saved_context(done))


# Regression (found by this test, fixed in e3f1904): a missing key inside a list built by
# a lone reference (or by "{{ rows | map(attribute='id') | list }}" when a row lacks the
# key) was not reported at render time; json.dumps of the python step's request raised
# jinja2's UndefinedError, the run failed with a raw traceback and the step stayed
# "running" in run_steps and in the saved context.
def test_a_missing_key_inside_a_built_list_fails_the_step_as_a_reference_error(
    rig: StepsRig,
) -> None:
    rig.deploy(
        "undef",
        [
            python("first", "stepsmod:first"),
            python("use", "stepsmod:echo", {"value": "{{ [steps.first.output.nope] }}"}),
        ],
        {"stepsmod.py": STEPS_MODULE},
    )
    run = rig.run("undef")
    done = rig.wait(run.id)
    assert done.status is RunStatus.FAILED
    step = rig.steps(run.id)["use"]
    assert (step.status, step.error_type) == ("failed", "reference"), step
    assert "there is no key 'nope'" in (step.error or "")
    assert "Traceback" not in (done.error or "")
    assert rig.saved_context(done)["steps"]["use"]["status"] == "failed"
