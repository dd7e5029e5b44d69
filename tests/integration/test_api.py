"""The REST API over a real database (SQLite and PostgreSQL), through FastAPI's TestClient.

Every response of every test is checked by a hook: none may be a 5xx.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.config import Settings
from runwright.services.runtime import Runtime
from runwright.worker.worker import Worker
from tests.helpers import admin_headers, make_registry, no_server_errors, wait_until

with warnings.catch_warnings():
    # Starlette now prefers the httpx2 package for its TestClient; the project ships httpx,
    # which still works (the warning is about the future, not about these tests).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, registry=make_registry())
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


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/runs", json={"type": "echo", **body})
    assert response.status_code == 202, response.text
    return response.json()


def wait_final(client: TestClient, run_id: int, timeout: float = 10) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        data = client.get(f"/api/runs/{run_id}").json()
        return data if data["status"] in {"succeeded", "failed", "canceled"} else None

    return wait_until(probe, timeout=timeout, what=f"run {run_id} to finish")


# -- submit -----------------------------------------------------------------------------------
def test_submit_queues_a_run_and_answers_202(client: TestClient) -> None:
    response = client.post(
        "/api/runs",
        json={
            "type": "echo",
            "payload": {"x": [1, 2]},
            "priority": 5,
            "max_attempts": 3,
            "timeout": 2.5,
            "queue": "default",
        },
    )
    assert response.status_code == 202
    run = response.json()
    assert response.headers["location"] == f"/api/runs/{run['id']}"
    assert run["type"] == "echo"
    assert run["status"] == "queued"
    assert run["outcome"] is None
    assert run["payload"] == {"x": [1, 2]}
    assert (run["priority"], run["max_attempts"], run["timeout"]) == (5, 3, 2.5)
    assert run["attempt"] == 0
    assert run["trigger"] == "api"
    assert run["result"] is None
    assert run["error"] is None
    assert run["progress"] == {"percent": None, "message": None}
    created = datetime.fromisoformat(run["created_at"])
    assert abs(created.timestamp() - time.time()) < 60
    scheduled = datetime.fromisoformat(run["scheduled_at"])
    assert abs((scheduled - created).total_seconds()) < 0.01  # "now", by the database clock
    assert run["started_at"] is None
    assert run["finished_at"] is None


def test_a_repeated_idempotency_key_returns_the_same_run_with_200(client: TestClient) -> None:
    first = client.post("/api/runs", json={"type": "echo", "payload": 1, "idempotency_key": "k1"})
    again = client.post("/api/runs", json={"type": "echo", "payload": 2, "idempotency_key": "k1"})
    other = client.post("/api/runs", json={"type": "echo", "payload": 3, "idempotency_key": "k2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert again.json()["payload"] == 1
    assert again.json()["idempotency_key"] == "k1"
    assert again.headers["location"] == f"/api/runs/{first.json()['id']}"


def test_naive_scheduled_at_means_utc(client: TestClient) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    run = submit(client, scheduled_at=when.replace(tzinfo=None).isoformat())
    assert datetime.fromisoformat(run["scheduled_at"]) == when
    aware = submit(client, scheduled_at=when.astimezone(timezone_plus_two()).isoformat())
    assert datetime.fromisoformat(aware["scheduled_at"]) == when


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


def test_an_unknown_type_is_422_naming_the_known_types(client: TestClient) -> None:
    response = client.post("/api/runs", json={"type": "nope"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert "Unknown task type 'nope'" in error
    assert "echo, fail" in error


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"type": "echo", "max_attempts": 0}, "max_attempts"),
        ({"type": "echo", "max_attempts": 1001}, "max_attempts"),
        ({"type": "echo", "surprise": True}, "surprise"),
        ({"type": "echo", "priority": "high"}, "priority"),
        ({"type": "echo", "timeout": 0}, "timeout"),
        ({"type": "echo", "idempotency_key": ""}, "idempotency_key"),
        ({"type": "echo", "scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"type": ""}, "type"),
        ({"payload": 1}, "type"),
    ],
)
def test_an_invalid_body_is_422_with_a_readable_error(
    client: TestClient, body: dict[str, Any], mentions: str
) -> None:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    data = response.json()
    assert data["error"].startswith("The request is invalid: ")
    assert mentions in data["error"]
    assert isinstance(data["detail"], list)
    assert data["detail"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b""])
def test_a_body_that_is_not_an_object_is_422(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/api/runs", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "invalid" in response.json()["error"]


def test_a_payload_with_nan_is_refused_as_not_json(client: TestClient) -> None:
    # Python's json module reads NaN, but JSON has no such value: jsonb refuses it and
    # a run stored with it would read back as null.
    response = client.post(
        "/api/runs",
        content=b'{"type": "echo", "payload": {"score": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "payload" in response.json()["error"]


def test_text_with_a_nul_character_is_stored_faithfully_or_refused(client: TestClient) -> None:
    for body in (
        {"type": "echo", "payload": "nul \u0000 inside"},
        {"type": "echo", "payload": {"k\u0000": 1}},
        {"type": "echo", "idempotency_key": "key-\u0000"},
    ):
        response = client.post("/api/runs", json=body)
        assert response.status_code in (202, 422), response.text
        if response.status_code == 202:
            stored = client.get(f"/api/runs/{response.json()['id']}").json()
            assert stored["payload"] == body.get("payload")
            assert stored["idempotency_key"] == body.get("idempotency_key")
        else:
            assert response.json()["error"]


# -- read ---------------------------------------------------------------------------------------
def test_get_a_run_and_404_for_a_missing_one(client: TestClient) -> None:
    run = submit(client, payload="p")
    response = client.get(f"/api/runs/{run['id']}")
    assert response.status_code == 200
    assert response.json() == run
    missing = client.get("/api/runs/987654")
    assert missing.status_code == 404
    assert "Run 987654 does not exist" in missing.json()["error"]
    assert client.get("/api/runs/abc").status_code == 422


def test_an_out_of_range_run_id_is_a_client_error(client: TestClient) -> None:
    # Ids are 64-bit in the database; a larger number in the path is no run at all.
    for run_id in ("99999999999999999999", str(2**63), "-99999999999999999999"):
        for method, suffix in (
            ("GET", ""),
            ("GET", "/result"),
            ("POST", "/cancel"),
            ("POST", "/retry"),
        ):
            response = client.request(method, f"/api/runs/{run_id}{suffix}")
            assert response.status_code in (404, 422), (method, suffix, response.text)
            assert response.json()["error"]


def test_list_filters_by_status_type_and_queue_newest_first(
    client: TestClient,
) -> None:
    a = submit(client)
    b = submit(client, queue="reports")
    c = client.post("/api/runs", json={"type": "fail"}).json()
    d = submit(client, queue="reports")
    assert client.post(f"/api/runs/{d['id']}/cancel").status_code == 200

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/runs", params=params)
        assert response.status_code == 200, response.text
        return [run["id"] for run in response.json()["runs"]]

    assert ids() == [d["id"], c["id"], b["id"], a["id"]]
    assert ids(status="queued") == [c["id"], b["id"], a["id"]]
    assert ids(status=["queued", "canceled"]) == [d["id"], c["id"], b["id"], a["id"]]
    assert ids(status=["queued", "running"], type="echo") == [b["id"], a["id"]]
    assert ids(status="canceled") == [d["id"]]
    assert ids(status="succeeded") == []
    assert ids(type="fail") == [c["id"]]
    assert ids(type=["fail", "echo"], queue="reports") == [d["id"], b["id"]]
    assert ids(queue=["default"]) == [c["id"], a["id"]]
    assert ids(queue="nowhere") == []
    bad = client.get("/api/runs", params={"status": "lost"})
    assert bad.status_code == 422
    assert "status" in bad.json()["error"]


def test_paging_with_next_cursor_returns_every_run_exactly_once(client: TestClient) -> None:
    made = [submit(client, payload=i)["id"] for i in range(23)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get("/api/runs", params=params).json()
        pages += 1
        seen += [run["id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 20
    assert seen == sorted(made, reverse=True)
    assert pages == 5
    first = client.get("/api/runs", params={"limit": 23}).json()
    assert len(first["runs"]) == 23


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"cursor": "abc"},
        {"cursor": "-5"},
        {"cursor": "99999999999999999999"},
    ],
)
def test_bad_list_parameters_are_client_errors(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/api/runs", params=params)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]


# -- result, cancel, retry ------------------------------------------------------------------------
def test_result_is_409_until_the_run_succeeds(client: TestClient, runtime: Runtime) -> None:
    run = submit(client, payload={"answer": 42})
    waiting = client.get(f"/api/runs/{run['id']}/result")
    assert waiting.status_code == 409
    assert "still queued" in waiting.json()["error"]
    assert client.get("/api/runs/424242/result").status_code == 404
    worker = runtime.worker(concurrency=1, in_process=True)
    worker.start()
    try:
        done = wait_final(client, run["id"])
        failed = wait_final(client, client.post("/api/runs", json={"type": "fail"}).json()["id"])
    finally:
        worker.stop_and_wait(grace=1)
    assert done["status"] == "succeeded"
    assert done["duration"] is not None
    assert done["duration"] >= 0
    response = client.get(f"/api/runs/{run['id']}/result")
    assert response.status_code == 200
    assert response.json() == {"id": run["id"], "result": {"answer": 42}}
    no_result = client.get(f"/api/runs/{failed['id']}/result")
    assert no_result.status_code == 409
    assert "failed (error)" in no_result.json()["error"]
    assert "this task always fails" in no_result.json()["error"]


def test_cancel_then_cancel_again_then_retry(client: TestClient) -> None:
    run = submit(client, payload="again", priority=2)
    canceled = client.post(f"/api/runs/{run['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["outcome"] == "canceled"
    twice = client.post(f"/api/runs/{run['id']}/cancel")
    assert twice.status_code == 409
    assert "already finished (canceled)" in twice.json()["error"]
    assert client.post("/api/runs/424242/cancel").status_code == 404

    retried = client.post(f"/api/runs/{run['id']}/retry")
    assert retried.status_code == 202
    new = retried.json()
    assert new["id"] != run["id"]
    assert new["retry_of"] == run["id"]
    assert (new["status"], new["trigger"], new["payload"], new["priority"]) == (
        "queued",
        "retry",
        "again",
        2,
    )
    refused = client.post(f"/api/runs/{new['id']}/retry")
    assert refused.status_code == 409
    assert "only failed or canceled runs can be retried" in refused.json()["error"]
    assert client.post("/api/runs/424242/retry").status_code == 404


def test_a_run_canceled_while_queued_has_no_started_event(client: TestClient) -> None:
    run = submit(client, payload="never")
    client.post(f"/api/runs/{run['id']}/cancel")
    stream = client.get(f"/api/runs/{run['id']}/events").text  # ends after the final event
    assert "event: canceled" in stream
    assert "event: started" not in stream


# -- system ---------------------------------------------------------------------------------------
def test_task_types_and_workers(client: TestClient, runtime: Runtime) -> None:
    types = client.get("/api/task-types")
    assert types.status_code == 200
    names = [t["name"] for t in types.json()]
    assert names == sorted(names)
    by_name = {t["name"]: t for t in types.json()}  # built-in types may be listed too
    assert by_name["echo"] == {
        "name": "echo",
        "description": "Return the payload unchanged.",
        "workers": 0,
    }
    assert by_name["fail"] == {"name": "fail", "description": "Always fail.", "workers": 0}
    assert client.get("/api/workers").json() == []
    worker = runtime.worker(concurrency=3, queues=("default", "reports"), in_process=True)
    worker.start()
    try:
        listed = wait_until(
            lambda: client.get("/api/workers").json(), what="the worker to be listed"
        )
        assert len(listed) == 1
        info = listed[0]
        assert info["id"] == worker.id
        assert info["queues"] == ["default", "reports"]
        assert info["concurrency"] == 3
        assert {"echo", "fail"} <= set(info["task_types"])
        assert info["running"] == 0
        assert datetime.fromisoformat(info["heartbeat_at"]) <= datetime.now(UTC) + timedelta(
            seconds=5
        )
        counted = {t["name"]: t["workers"] for t in client.get("/api/task-types").json()}
        assert (counted["echo"], counted["fail"]) == (1, 1)
    finally:
        worker.stop_and_wait(grace=1)
    assert client.get("/api/workers").json() == []


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert data["schema"]
    assert data["version"]


def test_metrics_report_runs_queue_depth_and_durations(client: TestClient, worker: Worker) -> None:
    done = submit(client, payload=1)
    wait_final(client, done["id"])
    client.post("/api/runs", json={"type": "echo", "queue": "reports"})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'runwright_runs{queue="default",status="succeeded"} 1.0' in text
    assert 'runwright_runs{queue="reports",status="queued"} 1.0' in text
    assert 'runwright_queue_depth{queue="reports"} 1.0' in text
    assert 'runwright_run_duration_seconds_bucket{le="+Inf"} 1.0' in text
    assert "runwright_run_duration_seconds_count 1.0" in text
    assert "runwright_workers_alive 1.0" in text


def test_metrics_of_an_empty_database(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "# TYPE runwright_runs gauge" in text
    assert "# TYPE runwright_queue_depth gauge" in text
    assert 'runwright_run_duration_seconds_bucket{le="0.01"} 0.0' in text


def test_openapi_document(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.text)
    assert document["info"]["title"] == "runwright"
    assert {"post", "get"} <= set(document["paths"]["/api/runs"])
    for path in (
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/result",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/retry",
        "/api/task-types",
        "/api/workers",
        "/healthz",
    ):
        assert path in document["paths"]


def test_an_end_to_end_run_through_the_api(client: TestClient, worker: Worker) -> None:
    run = submit(client, payload={"values": [1.5, "two", None, True]})
    done = wait_final(client, run["id"])
    assert done["status"] == "succeeded"
    assert done["attempt"] == 1
    assert done["result"] == {"values": [1.5, "two", None, True]}
    assert not math.isnan(done["duration"])
    assert datetime.fromisoformat(done["finished_at"]) >= datetime.fromisoformat(done["started_at"])
