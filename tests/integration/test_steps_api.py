"""Multi-step jobs and variables over the REST API, on SQLite and PostgreSQL, through
FastAPI's TestClient with an in-process worker. Every response is checked by a hook:
none may be a 5xx."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from runwright.api.app import create_app
from runwright.artifacts.keys import context_key
from runwright.config import Settings
from runwright.db.tables import variables as variables_table
from runwright.services.runtime import Runtime
from runwright.worker.worker import Worker
from tests.helpers import admin_headers, make_registry, no_server_errors, wait_until

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings.with_overrides(job_kill_grace=0.5), registry=make_registry())
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(
        create_app(runtime),
        raise_server_exceptions=False,
        headers=admin_headers(runtime),
    ) as test_client:
        test_client.event_hooks = {"request": [], "response": [no_server_errors]}
        yield test_client


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[Worker]:
    instance = runtime.worker(concurrency=2, in_process=True)
    instance.start()
    yield instance
    instance.stop_and_wait(grace=1)


def shell(step_id: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": "shell", "with": {"command": command}, **extra}


def put_steps(client: TestClient, job: str, *steps: dict[str, Any], **top: Any) -> Any:
    return client.put(f"/api/jobs/{job}/steps", json={"steps": list(steps), **top})


def deployed(client: TestClient, job: str, *steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    response = put_steps(client, job, *steps, **top)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def start(client: TestClient, job: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/jobs/{job}/runs", json=body)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


def wait_final(client: TestClient, run_id: int, timeout: float = 30) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        data = client.get(f"/api/runs/{run_id}").json()
        return data if data["status"] in {"succeeded", "failed", "canceled"} else None

    return wait_until(probe, timeout=timeout, what=f"run {run_id} to finish")


def error_of(response: Any) -> str:
    message: str = response.json()["error"]
    return message


# -- PUT /api/jobs/{name}/steps ------------------------------------------------------------------
def test_put_steps_creates_a_steps_job_and_runs_it(client: TestClient, worker: Worker) -> None:
    first = deployed(client, "report", shell("hello", "echo hello {{ params.who }}"))
    assert first["created"] is True
    assert first["uploaded"] is True
    assert first["job"]["kind"] == "steps"
    assert first["job"]["current_version"] == 1
    assert first["package"]["version"] == 1
    assert first["package"]["current"] is True

    again = deployed(client, "report", shell("hello", "echo hello {{ params.who }}"))
    assert (again["created"], again["package"]["version"]) == (False, 1)

    second = deployed(
        client,
        "report",
        shell("hello", "echo hello {{ params.who }}"),
        shell("bye", "echo bye"),
        description="Says hello",
    )
    assert second["created"] is True
    assert second["job"]["current_version"] == 2
    versions = client.get("/api/jobs/report/packages").json()
    assert [(v["version"], v["current"]) for v in versions] == [(2, True), (1, False)]
    assert client.get("/api/jobs/report").json()["kind"] == "steps"

    run = start(client, "report", params={"who": "Ada"})
    assert run["type"] == "steps"
    assert run["job"] == "report"
    done = wait_final(client, run["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["stdout"] == "bye"

    steps = client.get(f"/api/runs/{run['id']}/steps").json()
    assert [(s["step_id"], s["position"], s["uses"], s["status"]) for s in steps] == [
        ("hello", 0, "shell", "succeeded"),
        ("bye", 1, "shell", "succeeded"),
    ]
    assert set(steps[0]) == {
        "step_id",
        "position",
        "uses",
        "status",
        "attempt",
        "tries",
        "started_at",
        "finished_at",
        "duration",
        "error",
        "error_type",
        "output_summary",
    }
    assert (steps[0]["attempt"], steps[0]["tries"]) == (1, 1)
    assert steps[0]["duration"] is not None
    assert '"stdout":"hello Ada"' in steps[0]["output_summary"]

    context = client.get(f"/api/runs/{run['id']}/context").json()
    assert context["execution_id"] == run["id"]
    assert context["job"] == "report"
    assert context["params"] == {"who": "Ada"}
    assert context["steps"]["hello"]["output"]["stdout"] == "hello Ada"
    assert context["steps"]["bye"]["status"] == "succeeded"

    logs = client.get(f"/api/runs/{run['id']}/logs").json()["lines"]
    assert {"hello Ada", "bye"} <= {line["message"] for line in logs}
    tagged = {line["message"]: line.get("step") for line in logs}
    assert (tagged["hello Ada"], tagged["bye"]) == ("hello", "bye")


def test_put_steps_keeps_the_python_modules_of_the_current_version(
    client: TestClient, worker: Worker
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(
            "job.yaml",
            "steps:\n  - id: one\n    uses: python\n    with: {function: 'mod:double', "
            "inputs: {x: 2}}\n",
        )
        zf.writestr("mod.py", "def double(x):\n    return 2 * x\n")
    uploaded = client.post(
        "/api/jobs/calc/packages", files={"file": ("p.zip", buffer.getvalue(), "application/zip")}
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["job"]["kind"] == "steps"
    data = deployed(
        client,
        "calc",
        {"id": "one", "uses": "python", "with": {"function": "mod:double", "inputs": {"x": 21}}},
    )
    assert data["package"]["version"] == 2
    done = wait_final(client, start(client, "calc")["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == 42


def test_put_steps_over_a_package_job_drops_its_entrypoint(client: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("runwright.toml", 'entrypoint = "main.py"\nrequirements = []\n')
        zf.writestr("main.py", "print('package')\n")
    uploaded = client.post(
        "/api/jobs/pkg/packages", files={"file": ("p.zip", buffer.getvalue(), "application/zip")}
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["job"]["kind"] == "package"
    data = deployed(client, "pkg", shell("s", "echo now steps"))
    assert data["job"]["kind"] == "steps"
    assert data["package"]["entrypoint"] in ("", None)


def test_put_steps_with_a_python_module_that_is_not_there(client: TestClient) -> None:
    response = put_steps(
        client, "nomod", {"id": "p", "uses": "python", "with": {"function": "gone:fn"}}
    )
    assert response.status_code == 422
    assert "steps[0].with.function: module gone.py is not in the package" in error_of(response)
    assert client.get("/api/jobs/nomod").status_code == 404  # nothing was created


@pytest.mark.parametrize(
    ("steps", "path"),
    [
        (
            [{"id": "a", "uses": "http", "with": {"url": "https://x", "methd": "GET"}}],
            "steps[0].with.methd",
        ),
        ([shell("a", "x"), {"id": "b", "uses": "ftp", "with": {}}], "steps[1].uses"),
        ([shell("a", "x"), shell("a", "y")], "steps[1].id"),
        ([shell("1a", "x")], "steps[0].id"),
        ([{"id": "a", "uses": "shell", "with": {}}], "steps[0].with.command"),
        ([shell("a", "echo {{ steps.b.output }}"), shell("b", "x")], "steps[0].with.command"),
        ([shell("a", "echo {{ x")], "steps[0].with.command"),
        ([shell("a", "x", when="params.x ==")], "steps[0].when"),
        ([shell("a", "x", timeout=0)], "steps[0].timeout"),
        ([shell("a", "x", retries={"cnt": 1})], "steps[0].retries.cnt"),
        ([], "steps"),
    ],
)
def test_an_invalid_definition_is_a_422_naming_the_path(
    client: TestClient, steps: list[dict[str, Any]], path: str
) -> None:
    response = put_steps(client, "invalid", *steps)
    assert response.status_code == 422, response.text
    message = error_of(response)
    assert message.startswith("the definition is not valid: ")
    assert f"{path}:" in message
    assert client.get("/api/jobs/invalid").status_code == 404


def test_a_definition_that_is_not_an_object_is_a_422(client: TestClient) -> None:
    for body in ([{"id": "a"}], "steps", 3):
        response = client.put("/api/jobs/x/steps", json=body)
        assert response.status_code == 422, response.text
    response = client.put(
        "/api/jobs/x/steps", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_put_steps_with_an_invalid_job_name(client: TestClient) -> None:
    response = put_steps(client, "-bad", shell("a", "x"))
    assert response.status_code == 422
    assert "Job name '-bad' is not valid" in error_of(response)


def test_put_steps_on_a_task_or_script_job_is_a_conflict(client: TestClient) -> None:
    created = client.post("/api/jobs", json={"name": "t", "kind": "task", "task_type": "echo"})
    assert created.status_code == 201, created.text
    response = put_steps(client, "t", shell("a", "x"))
    assert response.status_code == 409
    assert "task job" in error_of(response)
    script = client.post(
        "/api/scripts", files={"file": ("tidy.py", b"print('tidy')\n", "text/x-python")}
    )
    assert script.status_code == 201, script.text
    response = put_steps(client, "tidy", shell("a", "x"))
    assert response.status_code == 409
    assert "script job" in error_of(response)


# -- a run's steps and context -------------------------------------------------------------------
def test_steps_and_context_of_unknown_and_non_steps_runs(
    client: TestClient, worker: Worker
) -> None:
    assert client.get("/api/runs/999999/steps").status_code == 404
    missing = client.get("/api/runs/999999/context")
    assert missing.status_code == 404
    assert "Run 999999 does not exist" in error_of(missing)

    echo = client.post("/api/runs", json={"type": "echo", "payload": 1}).json()
    wait_final(client, echo["id"])
    assert client.get(f"/api/runs/{echo['id']}/steps").json() == []
    context = client.get(f"/api/runs/{echo['id']}/context")
    assert context.status_code == 404
    assert error_of(context) == (
        f"Run {echo['id']} is a echo run; only multi-step runs have a context."
    )


def test_the_context_of_a_steps_run_that_has_not_started(client: TestClient) -> None:
    deployed(client, "later", shell("a", "echo a"))
    run = start(client, "later")  # no worker: it stays queued
    response = client.get(f"/api/runs/{run['id']}/context")
    assert response.status_code == 404
    assert "no saved context for run" in error_of(response)
    assert client.get(f"/api/runs/{run['id']}/steps").json() == []


def test_an_unreadable_saved_context_is_a_4xx_naming_the_run(
    client: TestClient, runtime: Runtime
) -> None:
    job_id = deployed(client, "damaged", shell("a", "echo a"))["job"]["id"]
    run = start(client, "damaged")  # no worker: nothing overwrites the context below
    key = context_key(job_id, run["id"])
    runtime.store.put(key, b"{not json")
    response = client.get(f"/api/runs/{run['id']}/context")
    assert response.status_code == 422
    assert f"The saved context of run {run['id']} of job damaged is not valid JSON" in error_of(
        response
    )
    runtime.store.put(key, json.dumps({"format": 9, "execution_id": run["id"]}).encode())
    response = client.get(f"/api/runs/{run['id']}/context")
    assert response.status_code == 422
    assert "this version of runwright reads format 1" in error_of(response)


# Regression (fixed in e3f1904 after the unit test in tests/unit/test_job_context.py
# found it): a saved context whose step state is not an object raised AttributeError, and
# the API answered 500 instead of a 4xx naming the run.
def test_a_saved_context_with_a_malformed_step_is_a_4xx_not_a_500(
    client: TestClient, runtime: Runtime
) -> None:
    job_id = deployed(client, "damaged2", shell("a", "echo a"))["job"]["id"]
    run = start(client, "damaged2")
    data = {"execution_id": run["id"], "job_id": job_id, "steps": {"a": None}}
    runtime.store.put(context_key(job_id, run["id"]), json.dumps(data).encode())
    response = client.get(f"/api/runs/{run['id']}/context")
    assert response.status_code == 422
    assert "is unreadable" in error_of(response)


# -- resume --------------------------------------------------------------------------------------
def test_resume_only_failed_steps_runs(client: TestClient, worker: Worker) -> None:
    deployed(client, "good", shell("a", "echo fine"))
    good = wait_final(client, start(client, "good")["id"])
    assert good["status"] == "succeeded"
    response = client.post(f"/api/runs/{good['id']}/resume")
    assert response.status_code == 409
    assert "is succeeded; only a failed or canceled run can be resumed" in error_of(response)

    failed_task = client.post("/api/runs", json={"type": "fail"}).json()
    assert wait_final(client, failed_task["id"])["status"] == "failed"
    response = client.post(f"/api/runs/{failed_task['id']}/resume")
    assert response.status_code == 409
    assert "is a fail run; only multi-step runs resume" in error_of(response)
    assert f"runwright runs retry {failed_task['id']}" in error_of(response)

    assert client.post("/api/runs/999999/resume").status_code == 404


def test_resume_a_failed_run_from_its_failed_step(client: TestClient, worker: Worker) -> None:
    response = client.put("/api/variables/gate", json={"value": "closed"})
    assert response.status_code == 200, response.text
    deployed(
        client,
        "gated",
        shell("first", "echo first"),
        shell("check", "test {{ variables.gate }} = open"),
        shell("last", "echo last"),
    )
    run = start(client, "gated")
    failed = wait_final(client, run["id"])
    assert (failed["status"], failed["outcome"]) == ("failed", "error")
    assert f"runwright runs resume {run['id']}" in failed["error"]
    steps = {s["step_id"]: s for s in client.get(f"/api/runs/{run['id']}/steps").json()}
    assert (steps["check"]["status"], steps["check"]["error_type"]) == ("failed", "exit_code")
    assert "last" not in steps

    assert client.put("/api/variables/gate", json={"value": "open"}).status_code == 200
    resumed = client.post(f"/api/runs/{run['id']}/resume")
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["id"] == run["id"]
    assert resumed.json()["status"] in ("queued", "running", "succeeded")
    done = wait_final(client, run["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 2
    assert done["error"] is None
    steps = {s["step_id"]: s for s in client.get(f"/api/runs/{run['id']}/steps").json()}
    assert [(s, steps[s]["status"], steps[s]["attempt"]) for s in ("first", "check", "last")] == [
        ("first", "succeeded", 1),
        ("check", "succeeded", 2),
        ("last", "succeeded", 2),
    ]
    again = client.post(f"/api/runs/{run['id']}/resume")
    assert again.status_code == 409


# -- variables -----------------------------------------------------------------------------------
def test_variables_put_get_delete(client: TestClient) -> None:
    assert client.get("/api/variables").json() == []
    put = client.put(
        "/api/variables/region", json={"value": "eu-west", "description": "Where we run"}
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["name"], body["job"], body["value"], body["sensitive"]) == (
        "region",
        None,
        "eu-west",
        False,
    )
    assert body["description"] == "Where we run"
    structured = {"rows": [1, 2], "nested": {"a": None, "b": 1.5}, "flag": True}
    assert client.put("/api/variables/limits", json={"value": structured}).status_code == 200
    listed = {v["name"]: v for v in client.get("/api/variables").json()}
    assert listed["region"]["value"] == "eu-west"
    assert listed["limits"]["value"] == structured
    replaced = client.put("/api/variables/region", json={"value": "us-east"})
    assert replaced.json()["value"] == "us-east"
    listed = {v["name"]: v for v in client.get("/api/variables").json()}
    assert listed["region"]["value"] == "us-east"
    assert listed["region"]["description"] == ""

    deleted = client.delete("/api/variables/region")
    assert deleted.status_code == 204
    assert [v["name"] for v in client.get("/api/variables").json()] == ["limits"]
    again = client.delete("/api/variables/region")
    assert again.status_code == 404
    assert "There is no global variable 'region'" in error_of(again)


def test_job_variables_and_what_a_job_sees(client: TestClient) -> None:
    deployed(client, "sales", shell("a", "echo a"))
    deployed(client, "other", shell("a", "echo a"))
    client.put("/api/variables/region", json={"value": "global"})
    client.put("/api/variables/only_global", json={"value": 1})
    mine = client.put("/api/variables/region", json={"value": "sales-only", "job": "sales"})
    assert mine.status_code == 200, mine.text
    assert mine.json()["job"] == "sales"
    client.put("/api/variables/theirs", json={"value": 2, "job": "other"})

    everything = [(v["name"], v["job"]) for v in client.get("/api/variables").json()]
    assert sorted(everything, key=str) == sorted(
        [("only_global", None), ("region", None), ("region", "sales"), ("theirs", "other")],
        key=str,
    )
    seen = [(v["name"], v["job"]) for v in client.get("/api/variables?job=sales").json()]
    assert sorted(seen, key=str) == sorted(
        [("only_global", None), ("region", None), ("region", "sales")], key=str
    )
    assert client.delete("/api/variables/region?job=other").status_code == 404
    assert client.delete("/api/variables/region?job=sales").status_code == 204
    names = [(v["name"], v["job"]) for v in client.get("/api/variables?job=sales").json()]
    assert ("region", "sales") not in names
    assert ("region", None) in names


SECRET = "tr0ub4dor-3-horse"


def test_a_sensitive_variable_is_never_returned_and_is_encrypted(
    client: TestClient, runtime: Runtime
) -> None:
    put = client.put("/api/variables/api_token", json={"value": SECRET, "sensitive": True})
    assert put.status_code == 200, put.text
    assert put.json()["value"] is None
    assert put.json()["sensitive"] is True
    assert SECRET not in put.text
    listed = client.get("/api/variables")
    assert SECRET not in listed.text
    assert [(v["name"], v["value"], v["sensitive"]) for v in listed.json()] == [
        ("api_token", None, True)
    ]
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            sa.select(variables_table.c.value, variables_table.c.sensitive).where(
                variables_table.c.name == "api_token"
            )
        ).all()
    assert len(rows) == 1
    stored, sensitive = rows[0]
    assert bool(sensitive) is True
    assert SECRET not in stored
    assert "tr0ub4dor" not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    # Runs still see the real value.
    assert runtime.variables.resolve(0).values["api_token"] == SECRET

    # Making it non-sensitive stores it in clear, and sensitive again encrypts it again.
    client.put("/api/variables/api_token", json={"value": "public", "sensitive": False})
    assert client.get("/api/variables").json()[0]["value"] == "public"


def test_a_sensitive_variable_is_masked_in_the_api_context(
    client: TestClient, worker: Worker
) -> None:
    deployed(client, "leaky", shell("say", "echo the token is {{ variables.api_token }}"))
    client.put("/api/variables/api_token", json={"value": SECRET, "sensitive": True})
    run = start(client, "leaky")
    done = wait_final(client, run["id"])
    assert done["status"] == "succeeded", done["error"]
    context = client.get(f"/api/runs/{run['id']}/context")
    assert SECRET not in context.text
    assert context.json()["variables"]["api_token"] == "********"
    assert context.json()["steps"]["say"]["output"]["stdout"] == "the token is ********"
    for path in ("logs", "log.txt", "steps"):
        response = client.get(f"/api/runs/{run['id']}/{path}")
        assert response.status_code == 200
        assert SECRET not in response.text, path
    assert SECRET not in json.dumps(client.get(f"/api/runs/{run['id']}").json())


@pytest.mark.parametrize("name", ["1abc", "has-dash", "has space", "a.b", "x" * 101, "é"])
def test_an_invalid_variable_name_is_a_422(client: TestClient, name: str) -> None:
    response = client.put(f"/api/variables/{name}", json={"value": 1})
    assert response.status_code == 422, response.text
    assert "is not valid: use letters, digits and '_'" in error_of(response)


def test_variables_of_an_unknown_job_are_a_404(client: TestClient) -> None:
    response = client.put("/api/variables/x", json={"value": 1, "job": "nope"})
    assert response.status_code == 404
    assert "Job 'nope' does not exist" in error_of(response)
    assert client.get("/api/variables?job=nope").status_code == 404
    assert client.delete("/api/variables/x?job=nope").status_code == 404


def test_a_variable_value_over_64_kib_is_a_422(client: TestClient) -> None:
    just_fits = "x" * (64 * 1024 - 2)  # JSON text: two quotes more
    assert client.put("/api/variables/big", json={"value": just_fits}).status_code == 200
    response = client.put("/api/variables/big", json={"value": just_fits + "x"})
    assert response.status_code == 422
    assert "the limit is 65,536" in error_of(response)
    sensitive = client.put("/api/variables/big2", json={"value": "y" * 70_000, "sensitive": True})
    assert sensitive.status_code == 422


def test_a_variable_body_is_checked(client: TestClient) -> None:
    assert (
        client.put("/api/variables/x", json={"sensitive": "maybe", "value": 1}).status_code == 422
    )
    assert (
        client.put("/api/variables/x", json={"value": 1, "description": "d" * 1001}).status_code
        == 422
    )
    assert client.put("/api/variables/x", content=b"nope").status_code == 422
    assert client.put("/api/variables/x", json={}).status_code == 422  # no value
    response = client.put("/api/variables/x", json={"value": None})
    assert response.status_code == 200
    assert response.json()["value"] is None
