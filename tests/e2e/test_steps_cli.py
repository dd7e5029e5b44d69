"""Multi-step jobs through the `runwright` command against a server subprocess (SQLite
home): deploy a job.yaml folder, follow a run's step-tagged lines, the steps table, the
saved context, variables (sensitive ones from stdin) and resume.

A `runwright` process costs seconds of imports, so setup that is not under test goes
through the REST API, and independent read-only commands run side by side."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cli import Server, no_traceback, start_server
from tests.procs import RUNWRIGHT, Processes

JOB_YAML = """\
description: Greets and counts
steps:
  - id: greet
    uses: shell
    with:
      command: "echo hello {{ params.who }} from {{ variables.region }}"
  - id: count
    uses: python
    with:
      function: "lib.count:run"
      inputs:
        greeting: "{{ steps.greet.output.stdout }}"
        limit: "{{ params.limit }}"
"""

COUNT_PY = """\
from runwright import sdk


def run(greeting, limit):
    print(f"counting to {limit} in step {sdk.step}", flush=True)
    return {"words": len(greeting.split()), "limit": limit, "numbers": list(range(limit))}
"""


# A `runwright` process spends about two CPU-seconds importing; on a busy two-core
# machine that can stretch to tens of seconds.
CLI_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("steps-server-home")
    procs = Processes(tmp_path_factory.mktemp("steps-server-logs"))
    try:
        yield start_server(procs, home)
    finally:
        procs.kill_all()


# -- helpers -------------------------------------------------------------------------------------
def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done)
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    no_traceback(done)
    return done.stderr


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli(*args, timeout=CLI_TIMEOUT)


def together(server: Server, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands, two at a time (the test machines have two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: cli(server, *args), commands))


def pipe(server: Server, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNWRIGHT, *args],
        input=stdin,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def api(server: Server, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method, f"{server.url}{path}", headers=server.headers, timeout=10, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def put_steps(server: Server, job: str, *steps: dict[str, Any]) -> None:
    api(server, "PUT", f"/api/jobs/{job}/steps", json={"steps": list(steps)})


def set_variable(server: Server, name: str, value: Any, job: str | None = None) -> None:
    api(server, "PUT", f"/api/variables/{name}", json={"value": value, "job": job})


def shell(step_id: str, command: str) -> dict[str, Any]:
    return {"id": step_id, "uses": "shell", "with": {"command": command}}


def started_run(stdout: str) -> int:
    match = re.search(r"Started run (\d+) of", stdout)
    assert match, stdout
    return int(match.group(1))


def steps_folder(parent: Path, job_yaml: str, files: dict[str, str] | None = None) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "job.yaml").write_text(job_yaml)
    for name, content in (files or {}).items():
        path = parent / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return parent


def steps_table(shown: str) -> dict[str, list[str]]:
    """The rows of the steps table `runwright runs show` prints, by step id."""
    lines = shown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "STEP"])
    assert lines[start].split() == [
        "#",
        "STEP",
        "USES",
        "STATUS",
        "TRIES",
        "DURATION",
        "OUTPUT",
        "/",
        "ERROR",
    ]
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) < 6 or not cells[0].isdigit():
            break
        rows[cells[1]] = cells
    return rows


# -- deploy, run --follow, runs show, runs context -----------------------------------------------
def test_deploy_run_follow_show_and_context(server: Server, tmp_path: Path) -> None:
    folder = steps_folder(
        tmp_path / "greeter", JOB_YAML, {"lib/__init__.py": "", "lib/count.py": COUNT_PY}
    )
    bad = steps_folder(
        tmp_path / "bad", JOB_YAML.replace("command:", "comand:", 1), {"lib/count.py": COUNT_PY}
    )
    deployed, invalid = together(
        server,
        ("deploy", str(folder), "--job", "greeter"),
        ("deploy", str(bad), "--job", "badsteps"),
    )
    assert re.search(r"Deployed greeter v1 \([0-9a-f]{12}\)\.", ok(deployed)), deployed.stdout
    assert "steps[0].with.comand: shell has no input 'comand'; it has command, env" in refused(
        invalid
    )
    assert api(server, "GET", "/api/jobs/greeter")["kind"] == "steps"
    set_variable(server, "region", "eu-west")

    followed = cli(server, "run", "greeter", "-p", "who=Ada", "-p", "limit=3", "--follow")
    text = ok(followed)
    assert "[greet] Step greet (shell) started" in text
    assert "[greet] hello Ada from eu-west" in text
    assert "[count] counting to 3 in step count" in text
    assert re.search(r"Run \d+ succeeded in \d+\.\d\ds", text), text
    run_id = started_run(text)

    shown, context, one, missing = together(
        server,
        ("runs", "show", str(run_id)),
        ("runs", "context", str(run_id)),
        ("runs", "context", str(run_id), "--step", "count"),
        ("runs", "context", str(run_id), "--step", "nope"),
    )
    table = ok(shown)
    rows = steps_table(table)
    assert list(rows) == ["greet", "count"]
    assert rows["greet"][:5] == ["1", "greet", "shell", "succeeded", "1"]
    assert rows["count"][:5] == ["2", "count", "python", "succeeded", "1"]
    assert re.fullmatch(r"\d+\.\d\ds", rows["greet"][5])
    assert '{"stdout":"hello Ada from eu-west"' in " ".join(rows["greet"][6:])
    assert '{"words":4,"limit":3' in " ".join(rows["count"][6:])
    assert "runs resume" not in table  # only offered for failed runs

    saved = json.loads(ok(context))
    assert saved["execution_id"] == run_id
    assert saved["job"] == "greeter"
    assert saved["params"] == {"who": "Ada", "limit": 3}
    assert saved["variables"]["region"] == "eu-west"
    assert saved["steps"]["greet"]["output"]["stdout"] == "hello Ada from eu-west"
    assert saved["steps"]["count"]["status"] == "succeeded"
    assert json.loads(ok(one)) == {"words": 4, "limit": 3, "numbers": [0, 1, 2]}
    assert f"Run {run_id} has no step 'nope'; its steps: greet, count." in " ".join(
        refused(missing).split()
    )


def test_the_steps_commands_on_other_runs(server: Server) -> None:
    echo = api(server, "POST", "/api/runs", json={"type": "demo.echo", "payload": 1})
    server.wait_status(echo["id"], {"succeeded"}, timeout=20)
    context, resume, unknown = together(
        server,
        ("runs", "context", str(echo["id"])),
        ("runs", "resume", str(echo["id"])),
        ("runs", "context", "999999"),
    )
    assert "only multi-step runs have a context" in refused(context)
    assert "only multi-step runs resume from a failed step" in refused(resume)
    assert "Run 999999 does not exist" in refused(unknown)


# -- variables -----------------------------------------------------------------------------------
SECRET = "hunter2-correct-horse"


def test_a_sensitive_variable_from_stdin_is_never_shown(server: Server) -> None:
    done = pipe(server, SECRET, "var", "set", "partner_password", "--stdin", "--sensitive")
    out = ok(done)
    assert "Set sensitive global variable partner_password" in out
    assert "{{ variables.partner_password }}" in out
    assert SECRET not in out + done.stderr
    listed = api(server, "GET", "/api/variables")
    assert [(v["value"], v["sensitive"]) for v in listed if v["name"] == "partner_password"] == [
        (None, True)
    ]

    put_steps(
        server,
        "uses-secret",
        shell("login", "echo logging in with {{ variables.partner_password }}"),
    )
    table, followed, both = together(
        server,
        ("var", "list"),
        ("run", "uses-secret", "--follow"),
        ("var", "set", "x", "value", "--stdin"),
    )
    row = next(line for line in ok(table).splitlines() if "partner_password" in line)
    assert row.split()[:2] == ["partner_password", "global"]
    assert "******** (sensitive)" in row
    assert SECRET not in table.stdout
    text = ok(followed)
    assert SECRET not in text + followed.stderr
    assert re.search(r"\[login\] logging in with \*{4,}\n", text), text
    assert "not both" in refused(both, code=2)

    run_id = started_run(text)
    context = ok(cli(server, "runs", "context", str(run_id)))
    assert SECRET not in context
    assert json.loads(context)["variables"]["partner_password"] == "********"
    log = httpx.get(
        f"{server.url}/api/runs/{run_id}/log.txt", headers=server.headers, timeout=10
    ).text
    assert "logging in with" in log
    assert SECRET not in log


def test_var_set_json_job_scope_list_and_rm(server: Server) -> None:
    put_steps(server, "scoped", shell("show", "echo {{ variables.level }}"))
    set_variable(server, "level", "global-level")
    for done in together(
        server,
        ("var", "set", "level", "job-level", "--job", "scoped"),
        ("var", "set", "limits", '{"rows": 10}', "--json", "--description", "caps"),
    ):
        ok(done)
    table, bad_name = together(server, ("var", "list"), ("var", "set", "1bad", "x"))
    listing = ok(table)
    assert re.search(r"^\s*limits\s+global\s+\{'rows': 10\}.*caps", listing, re.MULTILINE), listing
    assert re.search(r"^\s*level\s+job scoped\s+'job-level'", listing, re.MULTILINE), listing
    assert re.search(r"^\s*level\s+global\s+'global-level'", listing, re.MULTILINE), listing
    seen = api(server, "GET", "/api/variables", params={"job": "scoped"})
    values = {(v["name"], v["job"]): v["value"] for v in seen}
    assert values[("level", "scoped")] == "job-level"
    assert values[("level", None)] == "global-level"
    assert values[("limits", None)] == {"rows": 10}
    assert "is not valid: use letters, digits and '_'" in refused(bad_name)

    removed, removed_global = together(
        server, ("var", "rm", "level", "--job", "scoped"), ("var", "rm", "limits")
    )
    assert "Deleted variable level of job scoped." in ok(removed)
    assert "Deleted variable limits." in ok(removed_global)
    again = cli(server, "var", "rm", "level", "--job", "scoped")
    assert "There is no job 'scoped' variable 'level'" in refused(again)
    names = {(v["name"], v["job"]) for v in api(server, "GET", "/api/variables")}
    assert ("limits", None) not in names
    assert ("level", "scoped") not in names
    assert ("level", None) in names


# -- resume --------------------------------------------------------------------------------------
def test_a_failed_run_resumes_from_the_failed_step(server: Server) -> None:
    put_steps(
        server,
        "gated",
        shell("prepare", "echo prepared"),
        shell("gate", "echo gate is {{ variables.gate }}; test {{ variables.gate }} = open"),
        shell("finish", "echo finished after {{ steps.prepare.output.stdout }}"),
    )
    set_variable(server, "gate", "closed", job="gated")
    failed = cli(server, "run", "gated", "--follow")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    no_traceback(failed)
    assert "[gate] gate is closed" in failed.stdout
    run_id = started_run(failed.stdout)
    assert f"runwright runs resume {run_id}" in failed.stdout + failed.stderr

    shown = ok(cli(server, "runs", "show", str(run_id)))
    rows = steps_table(shown)
    assert (rows["prepare"][3], rows["gate"][3]) == ("succeeded", "failed")
    assert "exited with code 1" in " ".join(rows["gate"])
    assert "finish" not in rows
    assert f"Continue from the failed step with: runwright runs resume {run_id}" in shown

    set_variable(server, "gate", "open", job="gated")
    resumed = ok(cli(server, "runs", "resume", str(run_id)))
    assert f"Run {run_id} queued again as attempt 2" in resumed
    final = server.wait_status(run_id, {"succeeded", "failed", "canceled"}, timeout=30)
    assert final["status"] == "succeeded", final["error"]
    assert final["attempt"] == 2

    shown, again = together(server, ("runs", "show", str(run_id)), ("runs", "resume", str(run_id)))
    table = ok(shown)
    assert re.search(r"attempt\s+2 of 2", table), table
    rows = steps_table(table)
    assert [(step, cells[3]) for step, cells in rows.items()] == [
        ("prepare", "succeeded"),
        ("gate", "succeeded"),
        ("finish", "succeeded"),
    ]
    assert "Continue from the failed step" not in table
    assert "only a failed or canceled run can be resumed" in refused(again)
    steps = api(server, "GET", f"/api/runs/{run_id}/steps")
    assert [(s["step_id"], s["attempt"]) for s in steps] == [
        ("prepare", 1),
        ("gate", 2),
        ("finish", 2),
    ]
    context = api(server, "GET", f"/api/runs/{run_id}/context")
    assert context["steps"]["finish"]["output"]["stdout"] == "finished after prepared"
    log = httpx.get(
        f"{server.url}/api/runs/{run_id}/log.txt", headers=server.headers, timeout=10
    ).text
    assert "gate is closed" in log
    assert "gate is open" in log
    assert "Step prepare: succeeded in attempt 1; not run again" in log
