"""Health, metrics, task types and workers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from runwright import __version__
from runwright.api.deps import RunServiceDep, RuntimeDep
from runwright.api.metrics import RunCollector
from runwright.api.schemas import TaskTypeOut, WorkerOut
from runwright.db.runs import RunRepository
from runwright.db.schema import inspect_schema
from runwright.db.workers import WorkerRegistry
from runwright.errors import SchemaOutdated

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(runtime: RuntimeDep) -> dict[str, object]:
    """200 when the database answers and its schema is current; 503 otherwise."""
    state = inspect_schema(runtime.engine)
    if not state.up_to_date:
        raise SchemaOutdated(
            f"The database schema is at {state.current} but {state.head} is required; "
            "run `runwright db upgrade`."
        )
    return {"status": "ok", "version": __version__, "schema": state.current}


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    registry = CollectorRegistry()
    registry.register(
        RunCollector(
            RunRepository(runtime.engine),
            WorkerRegistry(runtime.engine),
            runtime.settings.lease_timeout,
        )
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/task-types")
def task_types(service: RunServiceDep) -> list[TaskTypeOut]:
    """Types that can be submitted, with the number of live workers serving each."""
    return [
        TaskTypeOut(name=t.name, description=t.description, workers=t.workers)
        for t in service.task_types()
    ]


@router.get("/api/workers")
def list_workers(service: RunServiceDep) -> list[WorkerOut]:
    """Workers with a heartbeat within the lease timeout."""
    return [WorkerOut.of(info) for info in service.workers()]
