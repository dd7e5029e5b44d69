"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from runwright.services.runs import RunService
from runwright.services.runtime import Runtime


# async: FastAPI would run a plain function in its thread pool, on every request.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_run_service(request: Request) -> RunService:
    runtime: Runtime = request.app.state.runtime
    return runtime.runs


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RunServiceDep = Annotated[RunService, Depends(get_run_service)]

MAX_ID = 2**63 - 1
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]
