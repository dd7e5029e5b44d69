"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runwright.model.runs import Run, WorkerInfo, to_datetime


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="Registered task type.")
    payload: Any = Field(default=None, description="Any JSON value handed to the task.")
    queue: str = Field(default="default", min_length=1, max_length=100)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="Higher runs first.")
    max_attempts: int = Field(default=1, ge=1, le=1000)
    timeout: float | None = Field(default=None, gt=0, description="Seconds per attempt.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    scheduled_at: datetime | None = Field(
        default=None, description="Not before this time (ISO 8601; naive means UTC)."
    )


class ProgressOut(BaseModel):
    percent: float | None
    message: str | None


class RunOut(BaseModel):
    id: int
    type: str
    job: str | None
    trigger: str
    queue: str
    priority: int
    status: str
    outcome: str | None
    payload: Any
    result: Any
    error: str | None
    attempt: int
    max_attempts: int
    timeout: float | None
    idempotency_key: str | None
    progress: ProgressOut
    worker: str | None
    cancel_requested: bool
    retry_of: int | None
    package_id: int | None
    environment: str | None
    exit_code: int | None
    log_count: int
    created_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    trigger_id: int | None = Field(default=None, description="The schedule or webhook.")
    fired_at: datetime | None = Field(default=None, description="The schedule's fire time.")
    held: bool = Field(
        default=False, description="Waiting for the job's active run (concurrency: queue)."
    )

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            type=run.type,
            job=run.job,
            trigger=run.trigger,
            queue=run.queue,
            priority=run.priority,
            status=run.status.value,
            outcome=run.outcome.value if run.outcome else None,
            payload=run.payload,
            result=run.result,
            error=run.error,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            timeout=run.timeout,
            idempotency_key=run.idempotency_key,
            progress=ProgressOut(percent=run.progress.percent, message=run.progress.message),
            worker=run.worker_id,
            cancel_requested=run.cancel_requested,
            retry_of=run.retry_of,
            package_id=run.package_id,
            environment=run.environment,
            exit_code=run.exit_code,
            log_count=run.log_count,
            created_at=to_datetime(run.created_at),
            scheduled_at=None if run.held else to_datetime(run.scheduled_at),
            started_at=to_datetime(run.started_at),
            finished_at=to_datetime(run.finished_at),
            duration=run.duration,
            trigger_id=run.trigger_id,
            fired_at=to_datetime(run.fired_at),
            held=run.held,
        )


class RunPage(BaseModel):
    runs: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next, older page.")


class ResultOut(BaseModel):
    id: int
    result: Any


class TaskTypeOut(BaseModel):
    name: str
    description: str
    workers: int


class WorkerOut(BaseModel):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    task_types: list[str]
    running: int
    started_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, info: WorkerInfo) -> WorkerOut:
        return cls(
            id=info.id,
            hostname=info.hostname,
            pid=info.pid,
            queues=list(info.queues),
            concurrency=info.concurrency,
            task_types=list(info.task_types),
            running=info.running,
            started_at=to_datetime(info.started_at),
            heartbeat_at=to_datetime(info.heartbeat_at),
        )


class ErrorOut(BaseModel):
    error: str
    detail: list[dict[str, Any]] | None = None


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(default="package", description="task, script or package")
    description: str = ""
    task_type: str | None = Field(default=None, description="For task jobs: the @task type.")
    queue: str = Field(default="default", min_length=1, max_length=100)
    priority: int = 0
    timeout: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=1, ge=1, le=1000)
    parameters: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Declared parameters: [{name, type, required, default, description, "
        "choices}]; type is string, integer, number, boolean, date, datetime or enum.",
    )
    enabled: bool = True
    concurrency: str = Field(default="allow", description="allow, skip or queue.")


class JobPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    task_type: str | None = None
    queue: str | None = Field(default=None, min_length=1, max_length=100)
    priority: int | None = None
    timeout: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    parameters: list[dict[str, Any]] | None = None
    enabled: bool | None = None
    concurrency: str | None = Field(default=None, description="allow, skip or queue.")


class PackageOut(BaseModel):
    id: int
    version: int
    sha256: str
    size: int
    entrypoint: str
    requirements: list[str]
    environments: list[str]
    description: str
    created_at: datetime | None
    created_by: str | None
    current: bool


class JobOut(BaseModel):
    id: int
    name: str
    kind: str
    description: str
    task_type: str | None
    queue: str
    priority: int
    timeout: float | None
    max_attempts: int
    parameters: list[dict[str, Any]]
    enabled: bool
    archived: bool
    concurrency: str
    current_version: int | None
    total_runs: int
    last_run_id: int | None
    last_run_at: datetime | None
    last_status: str | None
    last_outcome: str | None
    created_at: datetime | None
    updated_at: datetime | None


class DeployedOut(BaseModel):
    job: JobOut
    package: PackageOut
    created: bool = Field(description="False when this content was deployed before.")
    uploaded: bool = Field(description="False when the store already had these bytes.")


class TargetsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = Field(default=None, min_length=1, description="Targets' tags.")
    max_parallel: int | None = Field(default=None, ge=1, le=1000, description="At once.")


class JobRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list)
    environment: str | None = Field(default=None, max_length=50)
    queue: str | None = Field(default=None, min_length=1, max_length=100)
    priority: int | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    timeout: float | None = Field(default=None, gt=0)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    scheduled_at: datetime | None = None
    targets: TargetsIn | None = Field(
        default=None,
        description="Run the job on these targets instead of those it declares (a script or "
        "package's `targets`, or its steps with `targets:`).",
    )


class RunTargetOut(BaseModel):
    step_id: str = Field(description="The step ('' for a script or package).")
    target: str
    address: str
    status: str = Field(
        description="pending, running, succeeded, failed, no_credentials or canceled."
    )
    credential: str | None = Field(description="The credential that logged in.")
    credentials_tried: int
    started_at: float | None
    finished_at: float | None
    duration: float | None
    exit_status: int | None
    output: str | None = Field(description="The last lines of the target's output.")
    error: str | None
    error_type: str | None = Field(
        description="auth, connection, timeout, host_key, command, credential, unexpected."
    )


class LogLineOut(BaseModel):
    seq: int
    ts: datetime
    stream: str
    level: str
    message: str
    step: str | None = None
    target: str | None = None


class LogPage(BaseModel):
    lines: list[LogLineOut]
    next_after: int = Field(description="Pass as `after` to get the following lines.")
    complete: bool = Field(description="True when the run has finished and no lines follow.")


class ScriptOut(BaseModel):
    name: str
    description: str
    version: int | None
    total_runs: int
    last_run_id: int | None
    last_run_at: datetime | None
    last_status: str | None
    last_outcome: str | None
