"""Multi-step jobs over HTTP: definitions as JSON, a run's steps and saved context,
resume, and the variables that references read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from pydantic import BaseModel, Field

from runwright.api.auth import AuditDep
from runwright.api.deps import RunId, RuntimeDep
from runwright.api.routes.jobs import job_out, package_out
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import DeployedOut, RunOut, RunTargetOut
from runwright.errors import NotFound
from runwright.services.contexts import masked_json

router = APIRouter(tags=["steps"])


class StepOut(BaseModel):
    step_id: str
    position: int
    uses: str
    status: str
    attempt: int
    tries: int
    started_at: float | None
    finished_at: float | None
    duration: float | None
    error: str | None
    error_type: str | None
    output_summary: str | None


class VariableIn(BaseModel):
    value: Any = Field(description="Any JSON value.")
    sensitive: bool = Field(
        default=False, description="Encrypted at rest; never returned; masked in logs."
    )
    description: str = Field(default="", max_length=1000)
    job: str | None = Field(default=None, description="The job it belongs to; none: global.")


class VariableOut(BaseModel):
    name: str
    job: str | None
    value: Any = Field(description="Null for a sensitive variable.")
    sensitive: bool
    description: str
    updated_at: float


@router.put("/api/jobs/{name}/steps", status_code=status.HTTP_201_CREATED, responses=ERRORS)
def deploy_steps(
    name: str,
    runtime: RuntimeDep,
    audit: AuditDep,
    definition: Annotated[dict[str, Any], Body(description="The job.yaml content as JSON.")],
) -> DeployedOut:
    """Deploy a multi-step definition (the content of job.yaml, as JSON) as a new version
    of the job, created if needed. Other files of the current version are kept."""
    deployed = runtime.jobs.deploy_steps(name, definition)
    if deployed.created:
        audit.record("job.deployed", name, {"version": deployed.package.version})
    return DeployedOut(
        job=job_out(runtime, deployed.job),
        package=package_out(deployed.package, deployed.job.current_package_id),
        created=deployed.created,
        uploaded=deployed.uploaded,
    )


@router.get("/api/runs/{run_id}/steps", responses=ERRORS)
def run_steps(run_id: RunId, runtime: RuntimeDep) -> list[StepOut]:
    """The steps of a multi-step run: status, timing, tries, error, output summary."""
    runtime.runs.get(run_id)
    return [StepOut(**step.to_json()) for step in runtime.steps.list(run_id)]


@router.get("/api/runs/{run_id}/targets", responses=ERRORS)
def run_targets(run_id: RunId, runtime: RuntimeDep) -> list[RunTargetOut]:
    """What happened on each target of the run: status, credential used, timing, exit
    status, the last lines of output, error and its type."""
    runtime.runs.get(run_id)
    return [RunTargetOut(**row.to_json()) for row in runtime.run_targets.list(run_id)]


@router.get("/api/runs/{run_id}/context", responses=ERRORS)
def run_context(run_id: RunId, runtime: RuntimeDep) -> dict[str, Any]:
    """The saved job context of a multi-step run, sensitive values masked."""
    run = runtime.runs.get(run_id)
    if run.type != "steps" or run.job_id is None:
        raise NotFound(f"Run {run_id} is a {run.type} run; only multi-step runs have a context.")
    context = runtime.contexts.load(run.job_id, run_id, job=run.job or "")
    resolved = runtime.variables.resolve(run.job_id)
    return masked_json(context, resolved.sensitive, resolved.secrets())


@router.post("/api/runs/{run_id}/resume", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS)
def resume_run(run_id: RunId, runtime: RuntimeDep) -> RunOut:
    """Run a failed multi-step run again from the step that failed."""
    return RunOut.of(runtime.runs.resume(run_id))


@router.get("/api/variables", responses=ERRORS)
def list_variables(
    runtime: RuntimeDep,
    job: Annotated[str | None, Query(description="Only what this job sees.")] = None,
) -> list[VariableOut]:
    return [
        VariableOut(
            name=v.name,
            job=v.job,
            value=v.value,
            sensitive=v.sensitive,
            description=v.description,
            updated_at=v.updated_at,
        )
        for v in runtime.variables.list(job=job)
    ]


@router.put("/api/variables/{name}", responses=ERRORS)
def set_variable(name: str, body: VariableIn, runtime: RuntimeDep) -> VariableOut:
    """Create or replace a variable (global, or of `job`)."""
    v = runtime.variables.set(
        name, body.value, job=body.job, sensitive=body.sensitive, description=body.description
    )
    return VariableOut(
        name=v.name,
        job=v.job,
        value=v.value,
        sensitive=v.sensitive,
        description=v.description,
        updated_at=v.updated_at,
    )


@router.delete("/api/variables/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_variable(
    name: str,
    runtime: RuntimeDep,
    job: Annotated[str | None, Query(description="The job it belongs to.")] = None,
) -> None:
    runtime.variables.delete(name, job=job)
