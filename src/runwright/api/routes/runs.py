"""/api/runs: submit, read, list, result, cancel and retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from runwright.api.auth import AuditDep
from runwright.api.deps import MAX_ID, RunId, RunServiceDep
from runwright.api.schemas import ErrorOut, ResultOut, RunOut, RunPage, SubmitBody
from runwright.db.runs import RunFilter
from runwright.errors import InvalidRequest
from runwright.model.runs import SubmitRequest, to_epoch
from runwright.model.states import RunStatus

router = APIRouter(prefix="/api/runs", tags=["runs"])

ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut},
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS)
def submit_run(body: SubmitBody, service: RunServiceDep, response: Response) -> RunOut:
    """Queue a run of a task type. With an `idempotency_key` already used, the earlier
    run is returned (200 instead of 202)."""
    submitted = service.submit(
        SubmitRequest(
            type=body.type,
            payload=body.payload,
            queue=body.queue,
            priority=body.priority,
            max_attempts=body.max_attempts,
            timeout=body.timeout,
            idempotency_key=body.idempotency_key,
            scheduled_at=to_epoch(body.scheduled_at),
        )
    )
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/runs/{submitted.run.id}"
    return RunOut.of(submitted.run)


@router.get("", responses=ERRORS)
def list_runs(
    service: RunServiceDep,
    status_: Annotated[list[RunStatus] | None, Query(alias="status")] = None,
    type_: Annotated[list[str] | None, Query(alias="type")] = None,
    job: Annotated[list[str] | None, Query()] = None,
    queue: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> RunPage:
    """Runs, newest first, filtered by any of status, type, job and queue."""
    before = None
    if cursor:
        if not cursor.isdigit() or not 1 <= int(cursor) <= MAX_ID:
            raise InvalidRequest("cursor must be the next_cursor value of a previous page")
        before = int(cursor)
    runs = service.list(
        RunFilter(
            statuses=status_ or (),
            types=type_ or (),
            jobs=job or (),
            queues=queue or (),
            before_id=before,
            limit=limit,
        )
    )
    next_cursor = str(runs[-1].id) if len(runs) == limit else None
    return RunPage(runs=[RunOut.of(run) for run in runs], next_cursor=next_cursor)


@router.get("/{run_id}", responses=ERRORS)
def get_run(run_id: RunId, service: RunServiceDep) -> RunOut:
    return RunOut.of(service.get(run_id))


@router.get("/{run_id}/result", responses=ERRORS)
def get_result(run_id: RunId, service: RunServiceDep) -> ResultOut:
    """The result of a succeeded run; 409 with the reason while it has none."""
    return ResultOut(id=run_id, result=service.result(run_id))


@router.post("/{run_id}/cancel", responses=ERRORS)
def cancel_run(run_id: RunId, service: RunServiceDep, audit: AuditDep) -> RunOut:
    """A queued run is canceled at once; a running one within one heartbeat interval."""
    run = service.cancel(run_id)
    audit.record("run.canceled", str(run_id), {"type": run.type, "status": run.status.value})
    return RunOut.of(run)


@router.post("/{run_id}/retry", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS)
def retry_run(run_id: RunId, service: RunServiceDep) -> RunOut:
    """Run a failed or canceled run again as a new run (its `retry_of` names the original)."""
    return RunOut.of(service.retry(run_id))
