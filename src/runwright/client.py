"""The Python client: over the REST API, or straight to the database when given its URL
(for applications that embed runwright the way they would embed Celery)."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import httpx

from runwright.config import Settings
from runwright.errors import (
    Conflict,
    DatabaseUnavailable,
    InvalidRequest,
    NotFound,
    RunwrightError,
    ServerUnreachable,
)
from runwright.model.runs import Progress, Run, SubmitRequest
from runwright.model.states import Outcome, RunStatus

DEFAULT_URL = "http://127.0.0.1:8080"


def resolve_server_url(settings: Settings) -> str:
    """RUNWRIGHT_URL, else the address a running server wrote to its home, else the default."""
    if settings.url:
        return settings.url.rstrip("/")
    info = settings.home / "server.json"
    try:
        data = json.loads(info.read_text())
        return str(data["url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


def resolve_token(settings: Settings) -> str | None:
    if settings.token:
        return settings.token
    path: Path = settings.home / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class _Backend(Protocol):
    def submit(self, request: SubmitRequest) -> Run: ...
    def get(self, run_id: int) -> Run: ...
    def list(self, params: dict[str, Any]) -> builtins.list[Run]: ...
    def result(self, run_id: int) -> Any: ...
    def cancel(self, run_id: int) -> Run: ...
    def retry(self, run_id: int) -> Run: ...
    def resume(self, run_id: int) -> Run: ...
    def steps(self, run_id: int) -> builtins.list[dict[str, Any]]: ...
    def context(self, run_id: int) -> dict[str, Any]: ...
    def targets(self, run_id: int) -> builtins.list[dict[str, Any]]: ...
    def workers(self) -> builtins.list[dict[str, Any]]: ...
    def task_types(self) -> builtins.list[dict[str, Any]]: ...
    def close(self) -> None: ...


class Client:
    """Submit runs and follow them.

    ``Client()`` talks to the server named by RUNWRIGHT_URL (or the local one);
    ``Client(database_url=...)`` writes to the database directly.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        database_url: str | None = None,
        settings: Settings | None = None,
        timeout: float = 30.0,
    ) -> None:
        settings = settings or Settings()
        self._backend: _Backend
        if database_url is not None:
            self._backend = _DatabaseBackend(settings.with_overrides(database_url=database_url))
        else:
            self._backend = _HttpBackend(
                url or resolve_server_url(settings),
                token if token is not None else resolve_token(settings),
                timeout,
            )

    def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 1,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        scheduled_at: datetime | float | None = None,
    ) -> Run:
        when = scheduled_at.timestamp() if isinstance(scheduled_at, datetime) else scheduled_at
        return self._backend.submit(
            SubmitRequest(
                type=type,
                payload=payload,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                idempotency_key=idempotency_key,
                scheduled_at=when,
            )
        )

    def get(self, run_id: int) -> Run:
        return self._backend.get(run_id)

    def list(
        self,
        status: str | Iterable[str] | None = None,
        *,
        type: str | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> builtins.list[Run]:
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: dict[str, Any] = {"status": statuses, "limit": limit}
        if type:
            params["type"] = [type]
        if job:
            params["job"] = [job]
        if queue:
            params["queue"] = [queue]
        if cursor is not None:
            params["cursor"] = cursor
        return self._backend.list(params)

    def result(self, run_id: int) -> Any:
        return self._backend.result(run_id)

    def cancel(self, run_id: int) -> Run:
        return self._backend.cancel(run_id)

    def retry(self, run_id: int) -> Run:
        return self._backend.retry(run_id)

    def resume(self, run_id: int) -> Run:
        """Run a failed multi-step run again from the step that failed."""
        return self._backend.resume(run_id)

    def steps(self, run_id: int) -> builtins.list[dict[str, Any]]:
        """The steps of a multi-step run (empty for other runs)."""
        return self._backend.steps(run_id)

    def context(self, run_id: int) -> dict[str, Any]:
        """The saved job context of a multi-step run, sensitive values masked."""
        return self._backend.context(run_id)

    def targets(self, run_id: int) -> builtins.list[dict[str, Any]]:
        """What happened on each target of a run (empty for a run on no targets)."""
        return self._backend.targets(run_id)

    def workers(self) -> builtins.list[dict[str, Any]]:
        """Live workers: id, hostname, pid, queues, concurrency, running, heartbeat_at."""
        return self._backend.workers()

    def task_types(self) -> builtins.list[dict[str, Any]]:
        """Submittable types with the number of live workers serving each."""
        return self._backend.task_types()

    # -- jobs, scripts and logs (over the REST API) ----------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call any REST endpoint and return its JSON (needs the server, not a database URL)."""
        if not isinstance(self._backend, _HttpBackend):
            raise InvalidRequest(
                "This call needs the runwright server: create the client with Client(url=...) "
                "instead of Client(database_url=...)."
            )
        return self._backend.call(method, path, **kwargs)

    def run_job(
        self,
        job: str,
        params: builtins.dict[str, Any] | None = None,
        *,
        args: builtins.list[str] | None = None,
        environment: str | None = None,
        **options: Any,
    ) -> Run:
        """Start a run of a job's current version (options: timeout, priority, queue,
        max_attempts, idempotency_key, targets={"tags": [...], "max_parallel": N})."""
        body = {"params": params or {}, "args": args or [], "environment": environment, **options}
        return run_from_json(self.request("POST", f"/api/jobs/{job}/runs", json=body))

    def logs(
        self, run_id: int, *, after: int = 0, limit: int = 1000, level: str | None = None
    ) -> builtins.dict[str, Any]:
        """A page of log lines: {"lines": [...], "next_after": N, "complete": bool}."""
        params: builtins.dict[str, Any] = {"after": after, "limit": limit}
        if level:
            params["level"] = level
        page: builtins.dict[str, Any] = self.request(
            "GET", f"/api/runs/{run_id}/logs", params=params
        )
        return page

    def events(self, run_id: int, *, after: int = 0) -> Iterator[tuple[str, Any]]:
        """Live events of a run as ``(name, data)`` until it ends; reconnects by itself
        (resuming after the last line) when the connection drops."""
        if not isinstance(self._backend, _HttpBackend):
            self.request("GET", "/")  # raises the explanation
        assert isinstance(self._backend, _HttpBackend)
        yield from self._backend.events(run_id, after)

    def wait(self, run_id: int, timeout: float | None = None) -> Run:
        """Block until the run is final; raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.02
        while True:
            run = self.get(run_id)
            if run.status.is_final:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Run {run_id} is still {run.status.value} after {timeout:g}s")
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, 1.0)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _DatabaseBackend:
    def __init__(self, settings: Settings) -> None:
        from runwright.services.runtime import Runtime

        self._runtime = Runtime.open(settings, create_schema=True)
        self._runs = self._runtime.runs

    def submit(self, request: SubmitRequest) -> Run:
        return self._runs.submit(request).run

    def get(self, run_id: int) -> Run:
        return self._runs.get(run_id)

    def list(self, params: dict[str, Any]) -> builtins.list[Run]:
        from runwright.db.runs import RunFilter

        return self._runs.list(
            RunFilter(
                statuses=[RunStatus(s) for s in params.get("status", [])],
                types=params.get("type", []),
                jobs=params.get("job", []),
                queues=params.get("queue", []),
                before_id=params.get("cursor"),
                limit=params["limit"],
            )
        )

    def result(self, run_id: int) -> Any:
        return self._runs.result(run_id)

    def cancel(self, run_id: int) -> Run:
        return self._runs.cancel(run_id)

    def retry(self, run_id: int) -> Run:
        return self._runs.retry(run_id)

    def resume(self, run_id: int) -> Run:
        return self._runs.resume(run_id)

    def steps(self, run_id: int) -> builtins.list[dict[str, Any]]:
        self._runs.get(run_id)
        return [step.to_json() for step in self._runtime.steps.list(run_id)]

    def context(self, run_id: int) -> dict[str, Any]:
        from runwright.api.routes.steps import run_context

        return run_context(run_id, self._runtime)

    def targets(self, run_id: int) -> builtins.list[dict[str, Any]]:
        self._runs.get(run_id)
        return [row.to_json() for row in self._runtime.run_targets.list(run_id)]

    def workers(self) -> builtins.list[dict[str, Any]]:
        from runwright.api.schemas import WorkerOut

        return [WorkerOut.of(w).model_dump(mode="json") for w in self._runs.workers()]

    def task_types(self) -> builtins.list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "workers": t.workers}
            for t in self._runs.task_types()
        ]

    def close(self) -> None:
        self._runtime.close()


class _HttpBackend:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(method, path, **kwargs)

    def events(self, run_id: int, after: int) -> Iterator[tuple[str, Any]]:
        last = after
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with self._http.stream(
                    "GET", f"/api/runs/{run_id}/events", headers=headers, timeout=None
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise _error_from(response)
                    failures = 0
                    for name, event_id, data in _parse_sse(response.iter_lines()):
                        if event_id is not None and event_id.isdigit():
                            last = int(event_id)
                        yield name, data
                        if name in ("completed", "failed", "canceled"):
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > 5:
                    raise ServerUnreachable(
                        f"Lost the event stream of run {run_id} from {self.url} ({exc})."
                    ) from exc
                time.sleep(min(2.0, 0.2 * failures))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"Cannot reach the runwright server at {self.url} ({exc}). Start it with "
                "`runwright server`, or set RUNWRIGHT_URL (or --url) to its address."
            ) from exc
        if response.is_success:
            return response.json() if response.content else None
        raise _error_from(response)

    def submit(self, request: SubmitRequest) -> Run:
        body: dict[str, Any] = {
            "type": request.type,
            "payload": request.payload,
            "queue": request.queue,
            "priority": request.priority,
            "max_attempts": request.max_attempts,
            "timeout": request.timeout,
            "idempotency_key": request.idempotency_key,
        }
        if request.scheduled_at is not None:
            body["scheduled_at"] = (
                datetime.fromtimestamp(request.scheduled_at).astimezone().isoformat()
            )
        return run_from_json(self._call("POST", "/api/runs", json=body))

    def get(self, run_id: int) -> Run:
        return run_from_json(self._call("GET", f"/api/runs/{run_id}"))

    def list(self, params: dict[str, Any]) -> builtins.list[Run]:
        page = self._call("GET", "/api/runs", params=params)
        return [run_from_json(item) for item in page["runs"]]

    def result(self, run_id: int) -> Any:
        return self._call("GET", f"/api/runs/{run_id}/result")["result"]

    def cancel(self, run_id: int) -> Run:
        return run_from_json(self._call("POST", f"/api/runs/{run_id}/cancel"))

    def retry(self, run_id: int) -> Run:
        return run_from_json(self._call("POST", f"/api/runs/{run_id}/retry"))

    def resume(self, run_id: int) -> Run:
        return run_from_json(self._call("POST", f"/api/runs/{run_id}/resume"))

    def steps(self, run_id: int) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", f"/api/runs/{run_id}/steps"))

    def context(self, run_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/runs/{run_id}/context"))

    def targets(self, run_id: int) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", f"/api/runs/{run_id}/targets"))

    def workers(self) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", "/api/workers"))

    def task_types(self) -> builtins.list[dict[str, Any]]:
        return list(self._call("GET", "/api/task-types"))

    def close(self) -> None:
        self._http.close()


def _error_from(response: httpx.Response) -> RunwrightError:
    try:
        message = str(response.json().get("error") or response.text)
    except ValueError:
        message = response.text or response.reason_phrase
    kinds: dict[int, type[RunwrightError]] = {
        404: NotFound,
        409: Conflict,
        422: InvalidRequest,
        400: InvalidRequest,
        503: DatabaseUnavailable,
    }
    error = kinds.get(response.status_code, RunwrightError)(message)
    error.status_code = response.status_code
    return error


def _parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str | None, Any]]:
    """Server-Sent Events as ``(event, id, json data)``."""
    name: str = "message"
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, event_id, json.loads("\n".join(data))
            name, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "id":
                event_id = value
            elif field == "data":
                data.append(value)


def _epoch(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def run_from_json(data: dict[str, Any]) -> Run:
    progress = data.get("progress") or {}
    return Run(
        id=data["id"],
        type=data["type"],
        payload=data.get("payload"),
        queue=data["queue"],
        priority=data["priority"],
        status=RunStatus(data["status"]),
        outcome=Outcome(data["outcome"]) if data.get("outcome") else None,
        attempt=data["attempt"],
        max_attempts=data["max_attempts"],
        timeout=data.get("timeout"),
        idempotency_key=data.get("idempotency_key"),
        progress=Progress(percent=progress.get("percent"), message=progress.get("message")),
        result=data.get("result"),
        error=data.get("error"),
        worker_id=data.get("worker"),
        cancel_requested=data.get("cancel_requested", False),
        job=data.get("job"),
        trigger=data.get("trigger", "api"),
        retry_of=data.get("retry_of"),
        package_id=data.get("package_id"),
        environment=data.get("environment"),
        exit_code=data.get("exit_code"),
        log_count=data.get("log_count", 0),
        created_at=_epoch(data.get("created_at")) or 0.0,
        scheduled_at=_epoch(data.get("scheduled_at")) or 0.0,
        started_at=_epoch(data.get("started_at")),
        finished_at=_epoch(data.get("finished_at")),
        trigger_id=data.get("trigger_id"),
        fired_at=_epoch(data.get("fired_at")),
        held=bool(data.get("held", False)),
    )
