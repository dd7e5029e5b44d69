"""Webhooks through a real `runwright server` subprocess, on SQLite and PostgreSQL:
created with the CLI and the API, called over HTTP with and without signatures, and
every refusal (401, 403, 404, 409, 413, 422, 429) without a single 5xx.

One server per database (and per xdist worker) is shared by the tests of this
module; every test uses its own jobs and webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_database
from tests.e2e.test_cli import Server, no_traceback, start_server
from tests.procs import Processes, wait_for

MAX_BYTES = 4096
SCRIPT = """\
from runwright import sdk
print("webhook run", sdk.run_id, flush=True)
sdk.set_result({"params": sdk.params, "webhook": sdk.webhook})
"""


@dataclass
class Hooks:
    """The shared server, and an HTTP client that refuses every 5xx on the spot."""

    server: Server
    http: httpx.Client
    seen: list[tuple[str, int]] = field(default_factory=list)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else self.server.url + path
        if path.startswith("/api/"):  # webhooks (/hooks/...) need no API token
            kwargs["headers"] = {**self.server.headers, **kwargs.get("headers", {})}
        response = self.http.request(method, url, **kwargs)
        self.seen.append((f"{method} {path[:60]}", response.status_code))
        assert response.status_code < 500, f"{method} {path}: {response.text}"
        return response

    def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def cli(self, *args: str) -> str:
        done: subprocess.CompletedProcess[str] = self.server.cli(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        no_traceback(done)
        return done.stdout

    def run(self, run_id: int, timeout: float = 30) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            run: dict[str, Any] = self.api("GET", f"/api/runs/{run_id}")
            return run if run["status"] in ("succeeded", "failed", "canceled") else None

        return wait_for(final, timeout=timeout, what=f"run {run_id} to end", interval=0.1)

    # -- jobs ------------------------------------------------------------------------------
    def script_job(self, name: str, tmp: Path, parameters: list[dict[str, Any]]) -> None:
        path = tmp / f"{name.replace('-', '_')}.py"
        path.write_text(SCRIPT)
        with path.open("rb") as handle:
            self.api(
                "POST",
                "/api/scripts",
                expect=201,
                files={"file": (path.name, handle, "text/x-python")},
                data={"job": name},
            )
        self.api("PATCH", f"/api/jobs/{name}", json={"parameters": parameters})

    def task_job(self, name: str, task_type: str = "demo.echo", **extra: Any) -> None:
        body = {"name": name, "kind": "task", "task_type": task_type, **extra}
        self.api("POST", "/api/jobs", expect=201, json=body)

    def webhook(self, job: str, **body: Any) -> dict[str, Any]:
        issued: dict[str, Any] = self.api(
            "POST", f"/api/jobs/{job}/webhooks", expect=201, json=body
        )
        return issued


def signature(secret: str, body: bytes, t: int | None = None) -> str:
    """The documented header: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def signed_post(hooks: Hooks, url: str, secret: str, payload: Any, **kwargs: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        "X-Runwright-Signature": signature(secret, body),
        **kwargs.pop("headers", {}),
    }
    return hooks.request("POST", url, content=body, headers=headers, **kwargs)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hooks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hooks]:
    database = make_database(request.param, request, tmp_path_factory.mktemp("hooks-db"))
    url = next(database)
    procs = Processes(tmp_path_factory.mktemp("hooks-logs"))
    try:
        server = start_server(
            procs,
            tmp_path_factory.mktemp("hooks-home"),
            "--database-url",
            url,
            RUNWRIGHT_WEBHOOK_MAX_BYTES=str(MAX_BYTES),
        )
        with httpx.Client(timeout=30) as http:
            yield Hooks(server=server, http=http)
    finally:
        procs.kill_all()
        database.close()


# -- creation with the CLI, signatures ----------------------------------------------------------
def created(output: str) -> tuple[int, str, str | None]:
    """(webhook id, URL, secret) from `runwright webhook create`."""
    ident = re.search(r"Webhook (\d+) of job", output)
    url = re.search(r"^\s+(http://\S+/hooks/\S+)$", output, re.MULTILINE)
    secret = re.search(r"Signing secret \(shown once\):\n\s+(\S+)", output)
    assert ident, output
    assert url, output
    return int(ident.group(1)), url.group(1), secret.group(1) if secret else None


def test_a_signed_webhook_from_the_cli_starts_a_run_with_the_calls_data(
    hooks: Hooks, tmp_path: Path
) -> None:
    hooks.script_job(
        "wh-signed",
        tmp_path,
        [
            {"name": "n", "type": "integer", "required": True},
            {"name": "mode", "type": "enum", "choices": ["fast", "full"], "default": "fast"},
            {"name": "day", "type": "date"},
        ],
    )
    output = hooks.cli("webhook", "create", "wh-signed", "--sign")
    webhook_id, url, secret = created(output)
    assert secret
    assert url.startswith(hooks.server.url + "/hooks/")
    assert "X-Runwright-Signature: t=<unix time>" in output

    listed = hooks.api("GET", "/api/webhooks", params={"job": "wh-signed"})
    assert [(w["id"], w["signed"], w["enabled"]) for w in listed] == [(webhook_id, True, True)]
    token = url.rsplit("/", 1)[1]
    assert token not in json.dumps(listed)
    assert secret not in json.dumps(listed)
    assert token.startswith(listed[0]["token_hint"])

    unsigned = hooks.request("POST", url, json={"n": 1})
    assert unsigned.status_code == 401
    assert "X-Runwright-Signature" in unsigned.json()["error"]

    body = json.dumps({"n": "7", "note": "deploy"}).encode()
    header = signature(secret, body)
    good = hooks.request(
        "POST",
        url + "?day=2026-11-22&mode=full&source=ci",
        content=body,
        headers={
            "content-type": "application/json",
            "X-Runwright-Signature": header,
            "Authorization": "Bearer top-secret",
            "Cookie": "session=abc",
            "X-Api-Key": "k",
            "X-Delivery": "42",
        },
    )
    assert good.status_code == 202, good.text
    answer = good.json()
    run_id = answer["run_id"]
    assert answer["status"] == "queued"
    assert good.headers["location"] == f"/api/runs/{run_id}"
    run = hooks.run(run_id)
    assert run["status"] == "succeeded", run
    assert (run["trigger"], run["trigger_id"]) == ("webhook", webhook_id)
    result = run["result"]
    assert result["params"] == {"n": 7, "mode": "full", "day": "2026-11-22"}
    seen = result["webhook"]
    assert seen["payload"] == {"n": "7", "note": "deploy"}
    assert seen["query_params"] == {"day": "2026-11-22", "mode": "full", "source": "ci"}
    headers = seen["headers"]
    assert headers["x-delivery"] == "42"
    assert headers["content-type"] == "application/json"
    for hidden in ("authorization", "cookie", "x-api-key", "x-runwright-signature"):
        assert hidden not in headers
    assert "top-secret" not in json.dumps(run)
    assert run["payload"]["webhook"] == seen

    # The same data, refused in every other way.
    tampered = hooks.request(
        "POST",
        url,
        content=body.replace(b"7", b"8"),
        headers={"content-type": "application/json", "X-Runwright-Signature": header},
    )
    assert tampered.status_code == 401
    assert "does not match" in tampered.json()["error"]
    wrong_secret = signed_post(hooks, url, secret + "x", {"n": 1})
    assert wrong_secret.status_code == 401
    stale_t = int(time.time()) - 600
    stale = hooks.request(
        "POST",
        url,
        content=body,
        headers={
            "content-type": "application/json",
            "X-Runwright-Signature": signature(secret, body, stale_t),
        },
    )
    assert stale.status_code == 401
    assert "at most 300s is accepted" in stale.json()["error"]
    replay = hooks.request(
        "POST",
        url + "?day=2026-11-22&mode=full&source=ci",
        content=body,
        headers={"content-type": "application/json", "X-Runwright-Signature": header},
    )
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]
    garbage = hooks.request(
        "POST", url, json={"n": 1}, headers={"X-Runwright-Signature": "t=soon,v1=zz"}
    )
    assert garbage.status_code == 401

    calls = hooks.api("GET", f"/api/webhooks/{webhook_id}/calls")
    assert [c["status_code"] for c in calls] == [401, 401, 401, 401, 401, 202, 401]
    assert calls[5]["run_id"] == run_id
    assert all(c["source"] == "127.0.0.1" for c in calls)

    history = hooks.cli("webhook", "history", str(webhook_id))
    rows = [line.split() for line in history.splitlines()[1:] if line.strip()]
    statuses = [next(p for p in row if re.fullmatch(r"[1-5]\d\d", p)) for row in rows]
    assert statuses == ["401", "401", "401", "401", "401", "202", "401"]
    assert any(str(run_id) in row for row in rows)
    assert "replay" in history


def test_regenerate_makes_the_old_url_and_secret_stop(hooks: Hooks) -> None:
    hooks.task_job("wh-regen")
    issued = hooks.webhook("wh-regen", signed=True)
    webhook_id, old_url, old_secret = issued["webhook"]["id"], issued["url"], issued["secret"]
    assert old_secret
    assert signed_post(hooks, old_url, old_secret, {"a": 1}).status_code == 202

    again = hooks.cli("webhook", "regenerate", str(webhook_id))
    same_id, new_url, new_secret = created(again)
    assert same_id == webhook_id
    assert new_secret
    assert (new_url, new_secret) != (old_url, old_secret)
    gone = signed_post(hooks, old_url, old_secret, {"a": 2})
    assert gone.status_code == 404
    assert "regenerated" in gone.json()["error"]
    assert signed_post(hooks, new_url, old_secret, {"a": 3}).status_code == 401
    assert signed_post(hooks, new_url, new_secret, {"a": 4}).status_code == 202


# -- steps jobs: the job context -----------------------------------------------------------------
def test_a_steps_job_finds_the_call_in_its_job_context(hooks: Hooks) -> None:
    definition = {
        "steps": [
            {
                "id": "greet",
                "uses": "shell",
                "with": {"command": "echo hello {{ webhook.payload.who }} {{ params.region }}"},
            }
        ]
    }
    hooks.api("PUT", "/api/jobs/wh-steps/steps", expect=201, json=definition)
    hooks.api(
        "PATCH",
        "/api/jobs/wh-steps",
        json={"parameters": [{"name": "region", "type": "enum", "choices": ["eu", "us"]}]},
    )
    issued = hooks.webhook("wh-steps")
    assert issued["secret"] is None
    response = hooks.request(
        "POST",
        issued["url"] + "?region=eu&ref=main",
        json={"who": "ada", "region": "us"},  # the JSON body comes before the query string
        headers={"Authorization": "Basic c2VjcmV0", "X-GitHub-Event": "push"},
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    run = hooks.run(run_id)
    assert run["status"] == "succeeded", run
    context = hooks.api("GET", f"/api/runs/{run_id}/context")
    webhook = context["webhook"]
    assert webhook["payload"] == {"who": "ada", "region": "us"}
    assert webhook["query_params"] == {"region": "eu", "ref": "main"}
    assert webhook["headers"]["x-github-event"] == "push"
    assert "authorization" not in webhook["headers"]
    assert context["params"] == {"region": "us"}
    logs = hooks.api("GET", f"/api/runs/{run_id}/logs")
    messages = [line["message"] for line in (logs["lines"] if isinstance(logs, dict) else logs)]
    assert "hello ada us" in messages


# -- bodies and waiting --------------------------------------------------------------------------
def test_form_and_text_bodies_and_a_get_with_wait(hooks: Hooks, tmp_path: Path) -> None:
    hooks.script_job("wh-bodies", tmp_path, [{"name": "flag", "type": "boolean", "default": False}])
    url = hooks.webhook("wh-bodies")["url"]

    form = hooks.request("POST", url + "?wait=20", data={"flag": "yes", "who": "bob"})
    assert form.status_code == 200, form.text
    answer = form.json()
    assert (answer["status"], answer["outcome"], answer["error"]) == ("succeeded", None, None)
    assert answer["result"]["params"] == {"flag": True}
    assert answer["result"]["webhook"]["payload"] == {"flag": "yes", "who": "bob"}
    assert answer["result"]["webhook"]["query_params"] == {}  # wait is not the job's

    text = hooks.request(
        "POST",
        url + "?wait=20&flag=off",
        content=b"plain words",
        headers={"content-type": "text/plain"},
    )
    assert text.status_code == 200, text.text
    assert text.json()["result"]["webhook"]["payload"] == "plain words"
    assert text.json()["result"]["params"] == {"flag": False}

    got = hooks.request("GET", url + "?wait=20&flag=1")
    assert got.status_code == 200, got.text
    assert got.json()["result"]["webhook"]["payload"] is None
    assert got.json()["result"]["params"] == {"flag": True}
    assert got.json()["run"]["trigger"] == "webhook"


def test_wait_returns_202_when_the_run_is_not_done_yet(hooks: Hooks) -> None:
    hooks.task_job(
        "wh-slow",
        task_type="demo.count",
        parameters=[{"name": "to", "type": "integer"}, {"name": "every", "type": "number"}],
    )
    url = hooks.webhook("wh-slow")["url"]
    started = time.monotonic()
    response = hooks.request("GET", url + "?wait=0.5&to=3&every=0.5")
    assert response.status_code == 202
    assert 0.4 < time.monotonic() - started < 10
    assert response.json()["status"] in ("queued", "running")
    done = hooks.run(response.json()["run_id"])
    assert (done["status"], done["result"]) == ("succeeded", {"counted": 3})
    assert done["payload"] == {"to": 3, "every": 0.5}


# -- refusals -----------------------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after(hooks: Hooks) -> None:
    hooks.task_job("wh-limited")
    issued = hooks.webhook("wh-limited", rate_limit=3)
    webhook_id, url = issued["webhook"]["id"], issued["url"]
    codes = [hooks.request("POST", url, json={"i": i}).status_code for i in range(3)]
    assert codes == [202, 202, 202]
    limited = hooks.request("POST", url, json={"i": 4})
    assert limited.status_code == 429
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert "3 per minute" in limited.json()["error"]
    assert hooks.api("GET", f"/api/webhooks/{webhook_id}/calls")[0]["status_code"] == 429


def test_disabled_webhook_and_disabled_job_answer_403(hooks: Hooks) -> None:
    hooks.task_job("wh-toggle")
    issued = hooks.webhook("wh-toggle")
    webhook_id, url = issued["webhook"]["id"], issued["url"]
    assert not hooks.api("POST", f"/api/webhooks/{webhook_id}/disable")["enabled"]
    off = hooks.request("POST", url, json={})
    assert off.status_code == 403
    assert "webhook is disabled" in off.json()["error"]
    assert hooks.api("POST", f"/api/webhooks/{webhook_id}/enable")["enabled"]
    assert hooks.request("POST", url, json={}).status_code == 202

    hooks.api("PATCH", "/api/jobs/wh-toggle", json={"enabled": False})
    job_off = hooks.request("POST", url, json={})
    assert job_off.status_code == 403
    assert "Job 'wh-toggle' is disabled" in job_off.json()["error"]
    hooks.api("PATCH", "/api/jobs/wh-toggle", json={"enabled": True})
    assert hooks.request("GET", url).status_code == 202
    codes = [c["status_code"] for c in hooks.api("GET", f"/api/webhooks/{webhook_id}/calls")]
    assert codes == [202, 403, 202, 403]


def test_unknown_token_is_404_and_not_recorded(hooks: Hooks) -> None:
    response = hooks.request("POST", "/hooks/not-a-token-at-all", json={"a": 1})
    assert response.status_code == 404
    assert "No webhook has this address" in response.json()["error"]
    assert hooks.request("GET", "/hooks/" + "x" * 300).status_code == 404


def test_a_body_over_the_limit_is_413(hooks: Hooks) -> None:
    hooks.task_job("wh-big")
    issued = hooks.webhook("wh-big")
    big = hooks.request("POST", issued["url"], content=b"x" * (MAX_BYTES + 1000))
    assert big.status_code == 413
    assert f"at most {MAX_BYTES:,}" in big.json()["error"]
    assert "RUNWRIGHT_WEBHOOK_MAX_BYTES" in big.json()["error"]
    fits = hooks.request("POST", issued["url"], content=b"x" * (MAX_BYTES - 10))
    assert fits.status_code == 202
    codes = [
        c["status_code"] for c in hooks.api("GET", f"/api/webhooks/{issued['webhook']['id']}/calls")
    ]
    assert codes == [202, 413]


def test_bad_parameters_422_bad_json_422_and_skip_concurrency_409(hooks: Hooks) -> None:
    hooks.task_job("wh-params", task_type="demo.count")
    hooks.cli(
        "job",
        "update",
        "wh-params",
        "--param",
        "to:integer:required",
        "--param",
        "every:number=0.3",
        "--concurrency",
        "skip",
    )
    job = hooks.api("GET", "/api/jobs/wh-params")
    assert job["concurrency"] == "skip"
    assert [p["name"] for p in job["parameters"]] == ["to", "every"]
    url = hooks.webhook("wh-params")["url"]

    bad = hooks.request("POST", url + "?to=many")
    assert bad.status_code == 422
    assert "parameter 'to' must be a whole number, got 'many'" in bad.json()["error"]
    missing = hooks.request("POST", url, json={"every": 1})
    assert missing.status_code == 422
    assert "parameter 'to' is required" in missing.json()["error"]
    broken = hooks.request(
        "POST", url, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert "not valid JSON" in broken.json()["error"]

    first = hooks.request("POST", url + "?to=10")
    assert first.status_code == 202
    second = hooks.request("POST", url, json={"to": 1})
    assert second.status_code == 409
    assert f"already has run {first.json()['run_id']} active" in second.json()["error"]
    hooks.api("POST", f"/api/runs/{first.json()['run_id']}/cancel")


# -- src bugs found by these tests ----------------------------------------------------------------
def test_bug_a_replay_is_refused_even_after_100_other_calls(hooks: Hooks) -> None:
    """SRC BUG: replay protection lives in webhook_calls.signature, and WebhookService
    ._prune keeps only the last 100 calls of a webhook: once 100 more calls arrived
    (cheap: unsigned calls are recorded too), a captured signed request is accepted
    again while its timestamp is still within the 5 minutes."""
    hooks.task_job("wh-replay")
    issued = hooks.webhook("wh-replay", signed=True, rate_limit=1000)
    url, secret = issued["url"], issued["secret"]
    body = b'{"transfer": 1}'
    header = {"content-type": "application/json", "X-Runwright-Signature": signature(secret, body)}
    assert hooks.request("POST", url, content=body, headers=header).status_code == 202
    assert hooks.request("POST", url, content=body, headers=header).status_code == 401
    for _ in range(120):
        assert hooks.request("POST", url, json={}).status_code == 401
    replay = hooks.request("POST", url, content=body, headers=header)
    assert replay.status_code == 401, "a replayed signed request started a second run"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b'{"reading": NaN}', "not JSON-serialisable"),
        ("application/json", b'{"reading": -Infinity}', "not JSON-serialisable"),
        ("application/json", b'{"text": "a\\u0000b"}', "NUL character"),
        ("text/plain", b"a\x00b", "NUL character"),
    ],
    ids=["nan", "infinity", "json-nul", "text-nul"],
)
def test_bodies_that_cannot_be_stored_are_422_not_5xx(
    hooks: Hooks, tmp_path: Path, content_type: str, body: bytes, message: str
) -> None:
    """json.loads takes NaN and Infinity, and text may hold NUL: neither fits a JSON
    column (PostgreSQL refuses both in JSONB), so the call is refused, never a 500."""
    name = f"wh-odd-{abs(hash((content_type, body))) % 10**6}"
    hooks.script_job(name, tmp_path, [])
    issued = hooks.webhook(name)
    response = hooks.request(
        "POST", issued["url"], content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]
    calls = hooks.api("GET", f"/api/webhooks/{issued['webhook']['id']}/calls")
    assert [(c["status_code"], c["run_id"]) for c in calls] == [(422, None)]
