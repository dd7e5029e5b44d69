"""/api/jobs: jobs, their package versions and their runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, UploadFile, status

from runwright.api.auth import AuditDep
from runwright.api.deps import RuntimeDep
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import (
    DeployedOut,
    JobIn,
    JobOut,
    JobPatch,
    JobRunIn,
    PackageOut,
    RunOut,
)
from runwright.api.uploads import read_upload
from runwright.model.runs import Job, Package, to_datetime, to_epoch
from runwright.services.jobs import JobSettings, RunOptions
from runwright.services.runtime import Runtime

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

MAX_PACKAGE_BYTES = 100 * 1024 * 1024


def package_out(package: Package, current_id: int | None) -> PackageOut:
    manifest = package.manifest
    return PackageOut(
        id=package.id,
        version=package.version,
        sha256=package.sha256,
        size=package.size,
        entrypoint=manifest.get("entrypoint", ""),
        requirements=list(manifest.get("requirements", [])),
        environments=list(manifest.get("environments", [])),
        description=manifest.get("description", ""),
        created_at=to_datetime(package.created_at),
        created_by=package.created_by,
        current=package.id == current_id,
    )


def job_out(runtime: Runtime, job: Job, last: tuple[str, str | None] | None = None) -> JobOut:
    if last is None:
        last = runtime.jobs.last_statuses([job]).get(job.id)
    current = runtime.jobs.current_package(job)
    return JobOut(
        id=job.id,
        name=job.name,
        kind=job.kind,
        description=job.description,
        task_type=job.task_type,
        queue=job.queue,
        priority=job.priority,
        timeout=job.timeout,
        max_attempts=job.max_attempts,
        parameters=job.parameters,
        enabled=job.enabled,
        archived=job.archived,
        concurrency=job.concurrency,
        current_version=current.version if current else None,
        total_runs=job.total_runs,
        last_run_id=job.last_run_id,
        last_run_at=to_datetime(job.last_run_at),
        last_status=last[0] if last else None,
        last_outcome=last[1] if last else None,
        created_at=to_datetime(job.created_at),
        updated_at=to_datetime(job.updated_at),
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=ERRORS)
def create_job(body: JobIn, runtime: RuntimeDep) -> JobOut:
    job = runtime.jobs.create(
        body.name,
        JobSettings(
            kind=body.kind,
            description=body.description,
            task_type=body.task_type,
            queue=body.queue,
            priority=body.priority,
            timeout=body.timeout,
            max_attempts=body.max_attempts,
            parameters=body.parameters,
            enabled=body.enabled,
            concurrency=body.concurrency,
        ),
    )
    return job_out(runtime, job)


@router.get("", responses=ERRORS)
def list_jobs(
    runtime: RuntimeDep,
    kind: Annotated[list[str] | None, Query()] = None,
    archived: bool = False,
) -> list[JobOut]:
    jobs = runtime.jobs.list(kinds=tuple(kind or ()), archived=archived)
    last = runtime.jobs.last_statuses(jobs)
    return [job_out(runtime, job, last.get(job.id)) for job in jobs]


@router.get("/{name}", responses=ERRORS)
def get_job(name: str, runtime: RuntimeDep) -> JobOut:
    return job_out(runtime, runtime.jobs.get(name))


@router.patch("/{name}", responses=ERRORS)
def update_job(name: str, body: JobPatch, runtime: RuntimeDep) -> JobOut:
    fields = body.model_dump(exclude_unset=True)
    return job_out(runtime, runtime.jobs.update(name, JobSettings(**fields)))


@router.post("/{name}/archive", responses=ERRORS)
def archive_job(name: str, runtime: RuntimeDep) -> JobOut:
    """Hide the job from lists and triggers; its history stays."""
    return job_out(runtime, runtime.jobs.archive(name))


@router.get("/{name}/packages", responses=ERRORS)
def list_packages(name: str, runtime: RuntimeDep) -> list[PackageOut]:
    job = runtime.jobs.get(name)
    return [package_out(p, job.current_package_id) for p in runtime.jobs.packages(name)]


@router.post("/{name}/packages", status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def upload_package(
    name: str, file: UploadFile, runtime: RuntimeDep, audit: AuditDep
) -> DeployedOut:
    """Upload a package zip (from `runwright package build`); stored once by content
    and made the job's current version. The job is created if it does not exist."""
    from starlette.concurrency import run_in_threadpool

    data = await read_upload(file, MAX_PACKAGE_BYTES, "package")
    deployed = await run_in_threadpool(runtime.jobs.deploy, name, data, created_by=audit.actor)
    if deployed.created:
        audit.record("job.deployed", name, {"version": deployed.package.version})
    return DeployedOut(
        job=job_out(runtime, deployed.job),
        package=package_out(deployed.package, deployed.job.current_package_id),
        created=deployed.created,
        uploaded=deployed.uploaded,
    )


@router.post("/{name}/packages/{version}/activate", responses=ERRORS)
def activate_package(name: str, version: int, runtime: RuntimeDep, audit: AuditDep) -> JobOut:
    """Make version `version` the one new runs use."""
    job = runtime.jobs.activate(name, version)
    audit.record("job.deployed", name, {"version": version, "activated": True})
    return job_out(runtime, job)


@router.post("/{name}/runs", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS)
def run_job(name: str, body: JobRunIn, runtime: RuntimeDep) -> RunOut:
    """Start a run of the job's current version with parameters and arguments."""
    run = runtime.jobs.run(
        name,
        RunOptions(
            params=body.params,
            args=body.args,
            environment=body.environment,
            queue=body.queue,
            priority=body.priority,
            timeout=body.timeout,
            max_attempts=body.max_attempts,
            idempotency_key=body.idempotency_key,
            scheduled_at=to_epoch(body.scheduled_at),
            trigger="api",
            targets=body.targets.model_dump(exclude_none=True) if body.targets else None,
        ),
    )
    return RunOut.of(run)
