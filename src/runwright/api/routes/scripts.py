"""/api/scripts: one-file Python scripts uploaded as jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, UploadFile, status
from starlette.concurrency import run_in_threadpool

from runwright.api.auth import AuditDep
from runwright.api.deps import RuntimeDep
from runwright.api.routes.jobs import job_out, package_out
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import DeployedOut, JobOut, ScriptOut
from runwright.api.uploads import read_upload
from runwright.model.runs import to_datetime

router = APIRouter(prefix="/api/scripts", tags=["scripts"])


@router.post("", status_code=status.HTTP_201_CREATED, responses={**ERRORS, 413: ERRORS[422]})
async def upload_script(
    runtime: RuntimeDep,
    audit: AuditDep,
    file: UploadFile,
    description: Annotated[str, Form()] = "",
    job: Annotated[str | None, Form(description="Job name; default: from the file name")] = None,
) -> DeployedOut:
    """Upload a `.py` script (multipart field `file`). The first upload creates a script
    job named after the file; later uploads add versions."""
    limit = runtime.settings.script_max_bytes
    data = await read_upload(file, limit, f"script {file.filename!r}")
    deployed = await run_in_threadpool(
        runtime.scripts.upload,
        file.filename or "",
        data,
        description=description,
        job_name=job,
        created_by=audit.actor,
    )
    if deployed.created:
        audit.record("job.deployed", deployed.job.name, {"version": deployed.package.version})
    return DeployedOut(
        job=job_out(runtime, deployed.job),
        package=package_out(deployed.package, deployed.job.current_package_id),
        created=deployed.created,
        uploaded=deployed.uploaded,
    )


@router.get("", responses=ERRORS)
def list_scripts(runtime: RuntimeDep) -> list[ScriptOut]:
    """Active (not archived) scripts with their last execution."""
    summaries = runtime.scripts.list()
    out = []
    for summary in summaries:
        current = runtime.jobs.current_package(summary.job)
        out.append(
            ScriptOut(
                name=summary.job.name,
                description=summary.job.description,
                version=current.version if current else None,
                total_runs=summary.job.total_runs,
                last_run_id=summary.job.last_run_id,
                last_run_at=to_datetime(summary.job.last_run_at),
                last_status=summary.last_status,
                last_outcome=summary.last_outcome,
            )
        )
    return out


@router.delete("/{name}", responses=ERRORS)
def archive_script(name: str, runtime: RuntimeDep) -> JobOut:
    """Archive (soft delete): hidden from lists and triggers, history kept."""
    return job_out(runtime, runtime.jobs.archive(name))
