"""Demo task types (``--tasks runwright.demo``) and demo jobs (``runwright server --demo``),
which `make run` installs."""

from __future__ import annotations

from typing import Any

from runwright.artifacts.package import build_from_files
from runwright.services.jobs import JobService
from runwright.services.scripts import ScriptService
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


HELLO_SCRIPT = b'''"""A demo script job: prints, reports progress and returns a result."""
import logging
import time

from runwright import sdk

name = sdk.params.get("name", "world")
steps = int(sdk.params.get("steps", 5))
for step in range(1, steps + 1):
    print(f"hello {name}: step {step} of {steps}")
    sdk.progress(100 * step / steps, f"step {step} of {steps}")
    time.sleep(0.5)
logging.warning("a warning line, to show levels")
sdk.set_result({"greeted": name, "steps": steps})
'''


STEPS_YAML = """\
description: "Demo: a chain of steps passing data along (python, shell, file)"
steps:
  - id: greet
    uses: python
    with:
      function: "demo_steps:greet"
      inputs:
        name: "{{ params.name | default('world') }}"
  - id: shout
    uses: shell
    with:
      command: "echo '{{ steps.greet.output.greeting }}' | tr a-z A-Z"
  - id: report
    uses: file
    with:
      action: write
      filename: squares.csv
      rows: "{{ steps.greet.output.squares }}"
  - id: check
    uses: file
    with:
      action: read
      path: "{{ files[0].path }}"
  - id: summary
    uses: python
    with:
      function: "demo_steps:summarize"
      inputs:
        rows: "{{ steps.check.output.rows }}"
        shouted: "{{ steps.shout.output.stdout }}"
"""

STEPS_MODULE = """\
from runwright import sdk


def greet(name):
    print(f"greeting {name} in run {sdk.context['run_id']}")
    squares = [{"n": n, "square": n * n} for n in range(1, 6)]
    return {"greeting": f"Hello, {name}!", "squares": squares}


def summarize(rows, shouted):
    total = sum(int(row["square"]) for row in rows)
    print(f"{len(rows)} rows read back, sum of squares {total}")
    return {"rows": len(rows), "sum": total, "shouted": shouted}
"""


def install_demo_jobs(scripts: ScriptService, jobs: JobService) -> list[str]:
    """Create the demo jobs that are missing; returns the names created."""
    created = []
    if not any(job.name == "hello-steps" for job in jobs.list()):
        package = build_from_files(
            [
                ("job.yaml", STEPS_YAML.encode(), False),
                ("demo_steps.py", STEPS_MODULE.encode(), False),
            ]
        )
        jobs.deploy("hello-steps", package.data, kind="steps", created_by="demo")
        created.append("hello-steps")
    existing = {job.name for job in jobs.list(kinds=("script",))}
    if "hello" not in existing:
        scripts.upload(
            "hello.py",
            HELLO_SCRIPT,
            description="Demo: prints, shows progress, returns a result",
            created_by="demo",
        )
        created.append("hello")
    return created
