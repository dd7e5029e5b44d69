"""The calls to webhooks themselves: ``/hooks/{token}``. A router of its own, matched
before every other route: under a burst of calls, route matching is part of each
call's cost."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field

from runwright.api.deps import RuntimeDep
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import RunOut
from runwright.services.webhooks import Incoming

router = APIRouter(tags=["webhooks"])
MAX_WAIT = 300.0


class HookAnswer(BaseModel):
    run_id: int
    status: str
    outcome: str | None = Field(description="Set when the run has ended (with ?wait).")
    result: Any = Field(description="The run's result, when it has ended (with ?wait).")
    error: str | None = Field(description="The run's error, when it has failed (with ?wait).")
    run: RunOut


HOOK_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    200: {"model": HookAnswer, "description": "The run ended within ?wait seconds."},
    401: {"description": "Missing, wrong, stale or replayed signature."},
    403: {"description": "The webhook or its job is disabled."},
    413: {"description": "The body is too large."},
    429: {"description": "Too many calls; see Retry-After."},
}


@router.get(
    "/hooks/{token}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HookAnswer,
    responses=HOOK_ERRORS,
    tags=["webhooks"],
    operation_id="call_webhook_get",
)
@router.post(
    "/hooks/{token}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HookAnswer,
    responses=HOOK_ERRORS,
    tags=["webhooks"],
    operation_id="call_webhook_post",
)
async def call_webhook(
    token: str,
    request: Request,
    runtime: RuntimeDep,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for the result.")
    ] = 0,
) -> Response:
    """Start a run of the webhook's job. The body (JSON, form or text), the query
    parameters and the headers (minus authentication headers) reach the run's context
    as webhook.payload, webhook.query_params and webhook.headers, and are its
    parameters where the job declares them. 202 with the run; with `?wait=N`, the
    run's result if it ends within N seconds."""
    limit = runtime.settings.webhook_max_bytes
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            body = body[: limit + 1]
            break
    query = {k: v for k, v in request.query_params.items() if k != "wait"}
    incoming = Incoming(
        method=request.method,
        body=bytes(body),
        content_type=request.headers.get("content-type", ""),
        query=query,
        headers={k.lower(): v for k, v in request.headers.items()},
        source=request.client.host if request.client else None,
    )
    run = await runtime.webhooks.call(token, incoming)
    if wait > 0:
        run = await anyio.to_thread.run_sync(_wait, runtime, run.id, wait)
    out = RunOut.of(run)
    final = run.status.is_final
    answer = HookAnswer(
        run_id=run.id,
        status=out.status,
        outcome=out.outcome if final else None,
        result=out.result if final else None,
        error=out.error if final else None,
        run=out,
    )
    # Serialized by pydantic-core straight to bytes: this answer is the hot path of a
    # burst of calls.
    return Response(
        answer.model_dump_json(),
        status_code=status.HTTP_200_OK if final else status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers={"Location": f"/api/runs/{run.id}"},
    )


def _wait(runtime: Any, run_id: int, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    run = runtime.runs.get(run_id)
    while not run.status.is_final and time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        run = runtime.runs.get(run_id)
    return run
