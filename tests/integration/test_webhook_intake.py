"""Webhook calls stored by group commit (services/webhook_intake.py), seen from outside:
two real `runwright server` processes on one database, SQLite and PostgreSQL, called
over HTTP by concurrent clients.

Bursts, replays within a server and across servers, the per-process cache of webhooks
and jobs (what drops it at once, and how long another server trusts it), last_called_at,
the shape of the answer, and refused calls in the history.

The servers of a database (per xdist worker) are shared by the tests of this module,
server B started only for the tests across servers; every test uses its own jobs and
webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from runwright.db.tables import webhook_calls
from runwright.services.webhooks import CACHE_SECONDS
from tests.conftest import make_database
from tests.e2e.test_cli import start_server
from tests.helpers import no_server_errors
from tests.integration.test_webhooks_http import SCRIPT, Hooks, signature
from tests.procs import Db, Processes

MAX_BYTES = 4096
PROPAGATION = 1.5  # seconds another server may answer from what it cached
assert PROPAGATION > CACHE_SECONDS


class Fleet:
    """Servers on one database, each started when a test first needs it (server B only
    for the tests across servers), and the database itself, to read and to seed."""

    def __init__(self, url: str, tmp: pytest.TempPathFactory, stack: contextlib.ExitStack) -> None:
        self.url = url
        self.db = Db(url)
        stack.callback(self.db.close)
        self._tmp = tmp
        self._stack = stack
        self._servers: dict[str, Hooks] = {}
        # A fleet shares one key: server B decrypts the signing secrets A created.
        self._env = {
            "RUNWRIGHT_WEBHOOK_MAX_BYTES": str(MAX_BYTES),
            "RUNWRIGHT_SECRET_KEY": Fernet.generate_key().decode(),
        }

    def server(self, name: str) -> Hooks:
        if name not in self._servers:
            procs = Processes(self._tmp.mktemp(f"intake-logs-{name}"))
            self._stack.callback(procs.kill_all)
            home = self._tmp.mktemp(f"intake-home-{name}")
            server = start_server(procs, home, "--database-url", self.url, **self._env)
            http = self._stack.enter_context(httpx.Client(timeout=30))
            self._servers[name] = Hooks(server=server, http=http)
        return self._servers[name]

    @property
    def a(self) -> Hooks:
        return self.server("a")

    @property
    def b(self) -> Hooks:
        return self.server("b")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    database = make_database(request.param, request, tmp_path_factory.mktemp("intake-db"))
    url = next(database)
    try:
        with contextlib.ExitStack() as stack:
            yield Fleet(url, tmp_path_factory, stack)
    finally:
        database.close()


# -- concurrent calls ---------------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    """One HTTP request, sent as is (a signed one byte for byte, however many times)."""

    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def signed(url: str, secret: str, payload: Any) -> Send:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", "X-Runwright-Signature": signature(secret, body)}
    return Send("POST", url, {"content": body, "headers": headers})


async def _refuse_5xx(response: httpx.Response) -> None:
    if response.status_code >= 500:
        await response.aread()
        no_server_errors(response)


def send_all(sends: Sequence[Send], *, clients: int) -> list[httpx.Response]:
    """Every request started at once over ``clients`` connections; answers in order.
    Any 5xx fails the test on the spot."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            timeout=60, limits=limits, event_hooks={"response": [_refuse_5xx]}
        ) as client:
            return list(
                await asyncio.gather(*(client.request(s.method, s.url, **s.kwargs) for s in sends))
            )

    return asyncio.run(main())


# -- what a user can see of a job and a webhook -----------------------------------------------
def total_runs(hooks: Hooks, job: str) -> int:
    return int(hooks.api("GET", f"/api/jobs/{job}")["total_runs"])


def runs_of(hooks: Hooks, job: str) -> list[dict[str, Any]]:
    page = hooks.api("GET", "/api/runs", params={"job": job, "limit": 500})
    runs: list[dict[str, Any]] = page["runs"]
    return runs


def history(hooks: Hooks, webhook_id: int) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = hooks.api(
        "GET", f"/api/webhooks/{webhook_id}/calls", params={"limit": 100}
    )
    return calls


def stored_calls(fleet: Fleet, webhook_id: int) -> list[Any]:
    return fleet.db.rows(
        "SELECT id, received_at, status_code, run_id, error FROM webhook_calls "
        "WHERE webhook_id = :w ORDER BY id",
        w=webhook_id,
    )


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def upload_script(hooks: Hooks, job: str, tmp: Path, text: str) -> dict[str, Any]:
    path = tmp / f"{job.replace('-', '_')}.py"
    path.write_text(text)
    with path.open("rb") as handle:
        deployed: dict[str, Any] = hooks.api(
            "POST",
            "/api/scripts",
            expect=201,
            files={"file": (path.name, handle, "text/x-python")},
            data={"job": job},
        )
    return deployed


# -- 1. a burst -------------------------------------------------------------------------------
def test_a_burst_of_200_calls_from_20_clients_starts_200_runs(fleet: Fleet) -> None:
    hooks = fleet.a
    hooks.task_job("in-burst", parameters=[{"name": "i", "type": "integer", "required": True}])
    issued = hooks.webhook("in-burst", rate_limit=10_000)
    webhook_id, url = issued["webhook"]["id"], issued["url"]
    before = total_runs(hooks, "in-burst")
    # 30 calls from an hour ago: past the last 100 and older than any replay window,
    # they go with the prune that the 200th call of this webhook brings.
    old = time.time() - 3600
    with fleet.db.engine.begin() as conn:
        conn.execute(
            sa.insert(webhook_calls),
            [
                {"webhook_id": webhook_id, "received_at": old + i, "method": "POST",
                 "status_code": 202, "source": "10.0.0.1"}
                for i in range(30)
            ],
        )  # fmt: skip

    answers = send_all([Send("POST", url, {"json": {"i": i}}) for i in range(200)], clients=20)

    assert [a.status_code for a in answers] == [202] * 200, [a.text for a in answers][:5]
    bodies = [a.json() for a in answers]
    run_ids = [b["run_id"] for b in bodies]
    assert len(set(run_ids)) == 200
    # Every caller got the run of its own call, not a neighbour's from the same batch.
    assert [b["run"]["payload"] for b in bodies] == [{"i": i} for i in range(200)]
    assert [b["run"]["id"] for b in bodies] == run_ids

    runs = {run["id"]: run for run in runs_of(hooks, "in-burst")}
    assert set(runs) == set(run_ids)
    for i, run_id in enumerate(run_ids):
        run = runs[run_id]
        assert (run["trigger"], run["trigger_id"]) == ("webhook", webhook_id)
        assert run["job"] == "in-burst"
        assert run["payload"] == {"i": i}

    job = hooks.api("GET", "/api/jobs/in-burst")
    assert job["total_runs"] - before == 200
    assert job["last_run_id"] == max(run_ids)

    stored = stored_calls(fleet, webhook_id)
    assert len(stored) == 200, "the old calls should have been pruned, the young ones kept"
    assert all(row.received_at > old + 1000 for row in stored)
    assert sorted(row.run_id for row in stored) == sorted(run_ids)
    assert {row.status_code for row in stored} == {202}
    newest = history(hooks, webhook_id)
    assert [(c["status_code"], c["run_id"]) for c in newest] == [
        (202, run_id) for run_id in sorted(run_ids, reverse=True)[:100]
    ]


# -- 2. the same signed request, ten times at once --------------------------------------------
@pytest.mark.parametrize("concurrency", ["allow", "skip"])
def test_the_same_signed_request_sent_10_times_at_once_starts_one_run(
    fleet: Fleet, concurrency: str
) -> None:
    hooks = fleet.a
    job = f"in-replay-{concurrency}"
    hooks.task_job(job, concurrency=concurrency)
    issued = hooks.webhook(job, signed=True, rate_limit=10_000)
    webhook_id = issued["webhook"]["id"]
    request = signed(issued["url"], issued["secret"], {"deploy": "v1"})

    answers = send_all([request] * 10, clients=10)

    codes = sorted(a.status_code for a in answers)
    assert codes == [202] + [401] * 9, [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 401):
        assert "replay" in refused.json()["error"]
    (accepted,) = (a for a in answers if a.status_code == 202)
    run_id = accepted.json()["run_id"]
    assert [run["id"] for run in runs_of(hooks, job)] == [run_id]
    assert total_runs(hooks, job) == 1
    calls = history(hooks, webhook_id)
    assert (
        sorted((c["status_code"], c["run_id"]) for c in calls)
        == [(202, run_id)] + [(401, None)] * 9
    )


# -- 3. replays across servers ----------------------------------------------------------------
def test_a_signed_request_sent_to_two_servers_at_once_is_accepted_once(fleet: Fleet) -> None:
    a, b = fleet.a, fleet.b
    a.task_job("in-cross-signed")
    a.task_job("in-cross-open")
    signed_hook = a.webhook("in-cross-signed", signed=True, rate_limit=10_000)
    open_hook = a.webhook("in-cross-open", rate_limit=10_000)
    token, secret = signed_hook["token"], signed_hook["secret"]
    pairs = [
        (
            signed(f"{a.server.url}/hooks/{token}", secret, {"n": n}),
            signed(f"{b.server.url}/hooks/{token}", secret, {"n": n}),
        )
        for n in range(20)
    ]
    for sent_a, sent_b in pairs:  # the very same bytes to both servers
        assert sent_a.kwargs == sent_b.kwargs
    sends: list[Send] = []
    for n, pair in enumerate(pairs):
        sends.extend(pair)
        for server in (a, b):
            open_url = f"{server.server.url}/hooks/{open_hook['token']}"
            sends.append(Send("POST", open_url, {"json": {"n": n}}))

    answers = send_all(sends, clients=40)

    signed_answers = [(x, y) for x, y in zip(answers[0::4], answers[1::4], strict=True)]
    open_answers = [x for pair in zip(answers[2::4], answers[3::4], strict=True) for x in pair]
    accepted: list[int] = []
    for n, (x, y) in enumerate(signed_answers):
        codes = sorted((x.status_code, y.status_code))
        assert codes == [202, 401], f"request {n}: {x.text} / {y.text}"
        refused = x if x.status_code == 401 else y
        assert "replay" in refused.json()["error"]
        accepted.append((y if refused is x else x).json()["run_id"])
    assert [r.status_code for r in open_answers] == [202] * 40, [r.text for r in open_answers]
    open_ids = [r.json()["run_id"] for r in open_answers]

    twos = len(accepted) + len(open_ids)
    assert twos == 60
    assert total_runs(a, "in-cross-signed") + total_runs(a, "in-cross-open") == twos
    assert sorted(run["id"] for run in runs_of(a, "in-cross-signed")) == sorted(accepted)
    assert sorted(run["id"] for run in runs_of(b, "in-cross-open")) == sorted(open_ids)
    stored = stored_calls(fleet, signed_hook["webhook"]["id"])
    assert sorted(row.status_code for row in stored) == [202] * 20 + [401] * 20
    assert sorted(row.run_id for row in stored if row.run_id is not None) == sorted(accepted)


# -- 4. changes in this process drop the cache at once -----------------------------------------
def test_changes_made_through_a_server_apply_to_its_very_next_call(fleet: Fleet) -> None:
    hooks = fleet.a
    hooks.task_job("in-change")
    issued = hooks.webhook("in-change", rate_limit=10_000)
    webhook_id, url = issued["webhook"]["id"], issued["url"]

    def call(target: str = url, **kwargs: Any) -> httpx.Response:
        return hooks.request("POST", target, **kwargs)

    assert call(json={}).status_code == 202  # the webhook and its job are cached now
    hooks.api("POST", f"/api/webhooks/{webhook_id}/disable")
    refused = call(json={})
    assert refused.status_code == 403
    assert "webhook is disabled" in refused.json()["error"]
    hooks.api("POST", f"/api/webhooks/{webhook_id}/enable")
    assert call(json={}).status_code == 202

    again = hooks.api("POST", f"/api/webhooks/{webhook_id}/regenerate")
    new_url = again["url"]
    gone = call(json={})
    assert gone.status_code == 404
    assert "regenerated" in gone.json()["error"]
    assert call(new_url, json={}).status_code == 202

    hooks.api("PATCH", "/api/jobs/in-change", json={"enabled": False})
    job_off = call(new_url, json={})
    assert job_off.status_code == 403
    assert "Job 'in-change' is disabled" in job_off.json()["error"]
    hooks.api("PATCH", "/api/jobs/in-change", json={"enabled": True})
    assert call(new_url, json={}).status_code == 202

    hooks.api(
        "PATCH",
        "/api/jobs/in-change",
        json={"parameters": [{"name": "n", "type": "integer", "required": True}]},
    )
    typed = call(new_url, json={"n": "many"})
    assert typed.status_code == 422
    assert "parameter 'n' must be a whole number" in typed.json()["error"]
    assert call(new_url, json={"n": "3"}).json()["run"]["payload"] == {"n": 3}

    hooks.api("POST", "/api/jobs/in-change/archive")
    archived = call(new_url, json={"n": 1})
    assert archived.status_code == 403
    assert "archived" in archived.json()["error"]


def test_a_new_version_of_a_script_job_is_used_by_the_very_next_call(
    fleet: Fleet, tmp_path: Path
) -> None:
    hooks = fleet.a
    first = upload_script(hooks, "in-deploy", tmp_path, SCRIPT)
    url = hooks.webhook("in-deploy", rate_limit=10_000)["url"]

    def package_of_next_call() -> tuple[int, int, str]:
        answer = hooks.request("POST", url, json={"x": 1})
        assert answer.status_code == 202, answer.text
        run = answer.json()["run"]
        stored = hooks.api("GET", f"/api/runs/{run['id']}")
        assert stored["package_id"] == run["package_id"]
        payload = stored["payload"]
        assert payload["package_id"] == run["package_id"]
        return run["package_id"], payload["version"], payload["sha256"]

    v1 = (first["package"]["id"], 1, first["package"]["sha256"])
    assert package_of_next_call() == v1
    second = upload_script(hooks, "in-deploy", tmp_path, SCRIPT + "# v2\n")
    assert second["created"]
    v2 = (second["package"]["id"], 2, second["package"]["sha256"])
    assert package_of_next_call() == v2
    hooks.api("POST", "/api/jobs/in-deploy/packages/1/activate")
    assert package_of_next_call() == v1


# -- 5. changes through another server ---------------------------------------------------------
Change = tuple[str, Callable[[], object], str, int]  # what, the change, URL to call, answer


def watch(hooks: Hooks, changes: Sequence[Change]) -> None:
    """Make every change (through another server than ``hooks``), then call each URL
    through ``hooks`` until it answers as expected. A call sent more than PROPAGATION
    seconds after the answer to its change must get the new answer, and so must every
    call after it."""
    changed: dict[str, float] = {}
    for what, change, _, _ in changes:
        change()
        changed[what] = time.monotonic()
    pending = {what: (url, expect) for what, _, url, expect in changes}
    before: dict[str, list[int]] = {what: [] for what in pending}
    while pending:
        for what, (url, expect) in list(pending.items()):
            sent = time.monotonic() - changed[what]
            code = hooks.request("POST", url, json={}).status_code
            if code == expect:
                del pending[what]
                continue
            before[what].append(code)
            assert sent <= PROPAGATION, (
                f"{what}: {code}, not {expect}, to a call sent {sent:.2f}s after: {before[what]}"
            )
        time.sleep(0.05)
    for what, _, url, expect in changes:  # and from then on, every time
        later = [hooks.request("POST", url, json={}).status_code for _ in range(3)]
        assert later == [expect] * 3, f"{what}: {before[what]}, then {expect}, then {later}"


def test_a_change_through_one_server_reaches_the_other_within_1_5_s(fleet: Fleet) -> None:
    a, b = fleet.a, fleet.b
    kinds = ("hook", "job", "regen", "rm")  # one job and webhook per change: all at once
    issued = {}
    for kind in kinds:
        a.task_job(f"in-fleet-{kind}")
        issued[kind] = a.webhook(f"in-fleet-{kind}", rate_limit=10_000)
    ident = {kind: issued[kind]["webhook"]["id"] for kind in kinds}
    on_b = {kind: f"{b.server.url}/hooks/{issued[kind]['token']}" for kind in kinds}
    for kind in kinds:
        assert b.request("POST", on_b[kind], json={}).status_code == 202  # cached by B now
    regenerated: dict[str, Any] = {}

    def webhook(kind: str, action: str) -> Callable[[], object]:
        return lambda: a.api("POST", f"/api/webhooks/{ident[kind]}/{action}")

    def job_enabled(enabled: bool) -> Callable[[], object]:
        return lambda: a.api("PATCH", "/api/jobs/in-fleet-job", json={"enabled": enabled})

    def regenerate() -> None:
        regenerated.update(a.api("POST", f"/api/webhooks/{ident['regen']}/regenerate"))

    def delete() -> None:
        a.api("DELETE", f"/api/webhooks/{ident['rm']}", expect=204)

    watch(
        b,
        [
            ("webhook disabled", webhook("hook", "disable"), on_b["hook"], 403),
            ("job disabled", job_enabled(False), on_b["job"], 403),
            ("webhook regenerated", regenerate, on_b["regen"], 404),
            ("webhook deleted", delete, on_b["rm"], 404),
        ],
    )
    new_on_b = f"{b.server.url}/hooks/{regenerated['token']}"
    assert b.request("POST", new_on_b, json={}).status_code == 202
    watch(
        b,
        [
            ("webhook enabled", webhook("hook", "enable"), on_b["hook"], 202),
            ("job enabled", job_enabled(True), on_b["job"], 202),
        ],
    )


# -- 6. last_called_at -------------------------------------------------------------------------
def cli_last_calls(hooks: Hooks, job: str) -> dict[int, str]:
    """The LAST CALL column of `runwright webhook list --job JOB`, by webhook id."""
    output = hooks.cli("webhook", "list", "--job", job)
    shown = {}
    for line in output.splitlines()[1:]:
        parts = line.split()
        if parts:
            assert parts[1] == job, line
            shown[int(parts[0])] = " ".join(parts[6:])
    return shown


def test_last_called_at_follows_the_calls_in_the_api_and_the_cli(fleet: Fleet) -> None:
    hooks = fleet.a
    hooks.task_job("in-last")
    issued = hooks.webhook("in-last", rate_limit=10_000)
    webhook_id, url = issued["webhook"]["id"], issued["url"]
    never = hooks.webhook("in-last")["webhook"]["id"]
    assert issued["webhook"]["last_called_at"] is None
    listed = hooks.api("GET", "/api/webhooks", params={"job": "in-last"})
    assert [w["last_called_at"] for w in listed] == [None, None]

    sent = time.time()
    assert hooks.request("POST", url, json={}).status_code == 202
    answered = time.time()
    by_id = {w["id"]: w for w in hooks.api("GET", "/api/webhooks")}
    seen = by_id[webhook_id]["last_called_at"]
    assert seen is not None
    assert sent - 2 <= epoch(seen) <= answered + 2, (seen, sent, answered)
    assert by_id[never]["last_called_at"] is None
    shown = cli_last_calls(hooks, "in-last")
    assert shown == {webhook_id: seen[:19].replace("T", " "), never: "-"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown[webhook_id])

    # A refused call is a call too.
    time.sleep(0.01)
    hooks.api("POST", f"/api/webhooks/{webhook_id}/disable")
    assert hooks.request("POST", url, json={}).status_code == 403
    later = {w["id"]: w for w in hooks.api("GET", "/api/webhooks")}[webhook_id]["last_called_at"]
    assert epoch(later) > epoch(seen)


# -- 7. the answer ----------------------------------------------------------------------------
def test_the_answer_of_a_call_with_and_without_wait(fleet: Fleet) -> None:
    hooks = fleet.a
    hooks.task_job("in-answer", parameters=[{"name": "word", "type": "string"}])
    url = hooks.webhook("in-answer", rate_limit=10_000)["url"]

    sent = time.time()
    queued = hooks.request("POST", url, json={"word": "now"})
    assert queued.status_code == 202
    body = queued.json()
    assert set(body) == {"run_id", "status", "outcome", "result", "error", "run"}
    run_id = body["run_id"]
    assert body["run"]["id"] == run_id
    assert body["status"] == body["run"]["status"] == "queued"
    assert (body["outcome"], body["result"], body["error"]) == (None, None, None)
    assert (body["run"]["trigger"], body["run"]["job"]) == ("webhook", "in-answer")
    assert body["run"]["payload"] == {"word": "now"}
    assert abs(epoch(body["run"]["created_at"]) - sent) < 5, body["run"]["created_at"]
    assert abs(epoch(body["run"]["scheduled_at"]) - sent) < 5, body["run"]["scheduled_at"]
    assert queued.headers["location"] == f"/api/runs/{run_id}"
    assert hooks.api("GET", queued.headers["location"])["id"] == run_id

    waited = hooks.request("POST", url + "?wait=10", json={"word": "later"})
    assert waited.status_code == 200, waited.text
    body = waited.json()
    assert set(body) == {"run_id", "status", "outcome", "result", "error", "run"}
    assert waited.headers["location"] == f"/api/runs/{body['run_id']}"
    assert body["run"]["id"] == body["run_id"] != run_id
    assert body["status"] == body["run"]["status"] == "succeeded"
    # A succeeded run has no outcome: the outcome is the detail of a failure.
    assert (body["outcome"], body["error"]) == (None, None)
    assert body["result"] == body["run"]["result"] == {"word": "later"}

    hooks.task_job("in-answer-fail", task_type="demo.fail")
    failing = hooks.webhook("in-answer-fail", rate_limit=10_000)["url"]
    failed = hooks.request("GET", failing + "?wait=10")
    assert failed.status_code == 200, failed.text
    body = failed.json()
    assert body["status"] == "failed"
    assert body["outcome"] == body["run"]["outcome"] == "error"
    assert "demo failure on attempt 1 of 1" in body["error"]
    assert body["result"] is None


# -- 8. refused calls -------------------------------------------------------------------------
@pytest.mark.parametrize("concurrency", ["allow", "skip"])
def test_refused_calls_are_in_the_history_and_start_no_run(fleet: Fleet, concurrency: str) -> None:
    hooks = fleet.a
    job = f"in-refused-{concurrency}"
    hooks.task_job(
        job,
        concurrency=concurrency,
        parameters=[{"name": "n", "type": "integer", "required": True}],
    )
    open_hook = hooks.webhook(job, rate_limit=10_000)
    signed_hook = hooks.webhook(job, signed=True, rate_limit=10_000)

    wrong = signed(signed_hook["url"], signed_hook["secret"] + "x", {"n": 1})
    bad_signature = hooks.request(wrong.method, wrong.url, **wrong.kwargs)
    assert bad_signature.status_code == 401
    assert "does not match" in bad_signature.json()["error"]

    bad_value = hooks.request("POST", open_hook["url"] + "?n=abc")
    assert bad_value.status_code == 422
    assert "parameter 'n' must be a whole number, got 'abc'" in bad_value.json()["error"]
    too_big = hooks.request("POST", open_hook["url"], content=b"x" * (MAX_BYTES + 1))
    assert too_big.status_code == 413
    hooks.api("POST", f"/api/webhooks/{open_hook['webhook']['id']}/disable")
    disabled = hooks.request("POST", open_hook["url"], json={"n": 1})
    assert disabled.status_code == 403

    assert total_runs(hooks, job) == 0
    assert runs_of(hooks, job) == []
    assert fleet.db.scalar("SELECT count(*) FROM runs WHERE job = :j", j=job) == 0
    calls = history(hooks, open_hook["webhook"]["id"])
    refused = [(c["status_code"], c["run_id"]) for c in calls]
    assert refused == [(403, None), (413, None), (422, None)]
    assert "disabled" in calls[0]["error"]
    assert "RUNWRIGHT_WEBHOOK_MAX_BYTES" in calls[1]["error"]
    assert "parameter 'n'" in calls[2]["error"]
    calls = history(hooks, signed_hook["webhook"]["id"])
    assert [(c["status_code"], c["run_id"]) for c in calls] == [(401, None)]
    assert "does not match" in calls[0]["error"]

    # The same webhook still starts runs once the call is right.
    good = signed(signed_hook["url"], signed_hook["secret"], {"n": 1})
    accepted = hooks.request(good.method, good.url, **good.kwargs)
    assert accepted.status_code == 202, accepted.text
    assert total_runs(hooks, job) == 1
    assert [run["id"] for run in runs_of(hooks, job)] == [accepted.json()["run_id"]]
