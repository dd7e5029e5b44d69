"""A run's output: pages of log lines, the whole log, and live Server-Sent Events."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from runwright.api.deps import RunId, RuntimeDep
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import LogPage
from runwright.errors import InvalidRequest
from runwright.model.logs import Level
from runwright.model.runs import LogLine, Run
from runwright.model.states import RunStatus
from runwright.services.runtime import Runtime

router = APIRouter(prefix="/api/runs", tags=["logs"])

PAGE = 5000
POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
FINAL_EVENTS = {
    RunStatus.SUCCEEDED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELED: "canceled",
}


def line_json(line: LogLine) -> dict[str, Any]:
    """A line as the API shows it (the shape of LogLineOut)."""
    return {
        "seq": line.seq,
        "ts": _iso(line.ts),
        "stream": line.stream,
        "level": line.level,
        "message": line.message,
        "step": line.step,
        "target": line.target,
    }


def line_text(line: LogLine) -> str:
    """``json.dumps(line_json(line))``, built directly: this runs for every line a
    live follower receives."""
    return (
        f'{{"seq":{line.seq},"ts":"{_iso(line.ts)}","stream":"{line.stream}",'
        f'"level":"{line.level}","message":{_dumps(line.message)},'
        f'"step":{_nullable(line.step)},"target":{_nullable(line.target)}}}'
    )


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _nullable(value: str | None) -> str:
    return "null" if value is None else _dumps(value)


@functools.lru_cache(maxsize=4096)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _iso(ts: float) -> str:
    """ISO 8601 in UTC with microseconds, like datetime.isoformat()."""
    whole = int(ts)
    return f"{_second(whole)}.{int((ts - whole) * 1_000_000):06d}Z"


def _level(value: str | None) -> Level | None:
    if value is None:
        return None
    try:
        return Level(value)
    except ValueError as exc:
        names = ", ".join(level.value for level in Level)
        raise InvalidRequest(f"level must be one of {names} (got {value!r}).") from exc


@router.get("/{run_id}/logs", response_model=LogPage, responses=ERRORS)
def get_logs(
    run_id: RunId,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0, description="Return lines after this line number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    level: Annotated[str | None, Query(description="Minimum level: debug ... error.")] = None,
) -> Response:
    """Lines in order; follow with `after=next_after` until `complete` is true."""
    run = runtime.runs.get(run_id)
    lines = runtime.logs.page(run_id, after=after, limit=limit, min_level=_level(level))
    # Built directly: validating thousands of lines through the response model would
    # cost more than reading them.
    body = (
        f'{{"lines":[{",".join(line_text(line) for line in lines)}],'
        f'"next_after":{lines[-1].seq if lines else after},'
        f'"complete":{"true" if run.status.is_final and len(lines) < limit else "false"}}}'
    )
    return Response(body, media_type="application/json")


@router.get("/{run_id}/log.txt", response_class=PlainTextResponse, responses=ERRORS)
def download_log(run_id: RunId, runtime: RuntimeDep) -> PlainTextResponse:
    """The whole log as text: timestamp, stream, level and message per line."""
    runtime.runs.get(run_id)
    parts: list[str] = []
    after = 0
    while True:
        lines = runtime.logs.page(run_id, after=after, limit=10_000)
        for line in lines:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(line.ts))
            millis = int(line.ts % 1 * 1000)
            parts.append(f"{stamp}.{millis:03d}Z {line.stream:<6} {line.level:<7} {line.message}\n")
        if len(lines) < 10_000:
            break
        after = lines[-1].seq
    return PlainTextResponse(
        "".join(parts),
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}.log"'},
    )


def _event(name: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _run_data(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status.value,
        "outcome": run.outcome.value if run.outcome else None,
        "error": run.error,
        "exit_code": run.exit_code,
        "duration": run.duration,
        "log_count": run.log_count,
        "progress": {"percent": run.progress.percent, "message": run.progress.message},
    }


@router.get("/{run_id}/events", responses=ERRORS)
async def run_events(
    run_id: RunId,
    request: Request,
    runtime: RuntimeDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """Live events of a run as Server-Sent Events: `started`, `log` (one per line, the
    event id is the line number), `progress`, then `completed`, `failed` or `canceled`
    (no `started` for a run canceled before it started). The stream ends after the final
    event: close the EventSource then, or it reconnects and gets that event again.
    Reconnecting with `Last-Event-ID` resumes after that line."""
    await run_in_threadpool(runtime.runs.get, run_id)  # 404 before streaming
    start = after
    if last_event_id:
        if not last_event_id.isdigit():
            raise InvalidRequest("Last-Event-ID must be a line number sent by this stream.")
        start = int(last_event_id)
    return StreamingResponse(
        _stream(runtime, request, run_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(runtime: Runtime, request: Request, run_id: int, seq: int) -> AsyncIterator[str]:
    started = False
    progress: tuple[float | None, str | None] | None = None
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        run = await run_in_threadpool(runtime.runs.get, run_id)
        lines = await run_in_threadpool(runtime.logs.page, run_id, after=seq, limit=PAGE)
        if not started and run.status is not RunStatus.QUEUED:
            started = True
            if run.started_at is not None:  # not for a run canceled while queued
                yield _event("started", _run_data(run), seq)
        if lines:
            # One write per page, not per line.
            yield "".join(
                f"id: {line.seq}\nevent: log\ndata: {line_text(line)}\n\n" for line in lines
            )
            seq = lines[-1].seq
        current = (run.progress.percent, run.progress.message)
        if current != progress and current != (None, None):
            progress = current
            yield _event("progress", _run_data(run)["progress"], seq)
        if run.status.is_final and len(lines) < PAGE:
            yield _event(FINAL_EVENTS[run.status], _run_data(run), seq)
            return
        if lines:
            quiet_since = time.monotonic()
            if len(lines) == PAGE:
                continue
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)
