"""Records of runs that cross layers (never database rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from runwright.model.states import Outcome, RunStatus

JSON = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitRequest:
    """What a caller asks for when it submits a run."""

    type: str
    payload: JSON = None
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    idempotency_key: str | None = None
    scheduled_at: float | None = None  # epoch seconds; None means now (database clock)
    job: str | None = None
    trigger: str = "api"
    retry_of: int | None = None
    job_id: int | None = None
    package_id: int | None = None
    environment: str | None = None
    trigger_id: int | None = None  # the schedule or webhook
    fired_at: float | None = None  # a schedule's fire time
    held: bool = False  # wait for the job's active run (concurrency: queue)

    def __post_init__(self) -> None:
        problems = validate_submit(self)
        if problems:
            from runwright.errors import InvalidRequest

            raise InvalidRequest("; ".join(problems))


def clean_text(text: str) -> str:
    """Text a database can store: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def json_problem(value: JSON, what: str) -> str | None:
    """Why ``value`` cannot be stored as JSON, or None."""
    import json

    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"{what} is not JSON-serialisable ({exc})"
    if "\\u0000" in text:
        return f"{what} contains a NUL character (\\u0000), which cannot be stored"
    return None


def validate_submit(request: SubmitRequest) -> list[str]:
    problems: list[str] = []
    payload_problem = json_problem(request.payload, "payload")
    if payload_problem:
        problems.append(payload_problem)
    for name in ("type", "queue", "idempotency_key", "job"):
        value = getattr(request, name)
        if isinstance(value, str) and "\x00" in value:
            problems.append(f"{name} contains a NUL character")
    if not request.type or len(request.type) > 200:
        problems.append("type must be 1 to 200 characters")
    if not request.queue or len(request.queue) > 100:
        problems.append("queue must be 1 to 100 characters")
    if not 1 <= request.max_attempts <= 1000:
        problems.append("max_attempts must be between 1 and 1000")
    if request.timeout is not None and request.timeout <= 0:
        problems.append("timeout must be a positive number of seconds")
    if request.idempotency_key is not None and not 1 <= len(request.idempotency_key) <= 255:
        problems.append("idempotency_key must be 1 to 255 characters")
    if not -1_000_000 <= request.priority <= 1_000_000:
        problems.append("priority must be between -1000000 and 1000000")
    return problems


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    percent: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: int
    type: str
    payload: JSON
    queue: str
    priority: int
    status: RunStatus
    outcome: Outcome | None
    attempt: int
    max_attempts: int
    timeout: float | None
    idempotency_key: str | None
    progress: Progress = field(default_factory=Progress)
    result: JSON = None
    error: str | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    job: str | None = None
    trigger: str = "api"
    retry_of: int | None = None
    job_id: int | None = None
    package_id: int | None = None
    environment: str | None = None
    exit_code: int | None = None
    trigger_id: int | None = None
    fired_at: float | None = None
    held: bool = False
    log_count: int = 0
    created_at: float = 0.0
    scheduled_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedRun:
    """A run a worker holds, with the fencing token every later write presents."""

    id: int
    type: str
    payload: JSON
    queue: str
    attempt: int
    max_attempts: int
    timeout: float | None
    lease_token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    task_types: tuple[str, ...]
    started_at: float
    heartbeat_at: float
    running: int


def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def to_epoch(value: datetime | None) -> float | None:
    """Epoch seconds of a datetime; a naive one is taken as UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """The end of one attempt, written with the attempt's fencing token.

    ``kind`` is ``succeeded``, ``failed``, ``canceled`` or ``retry`` (back to the queue
    after ``delay`` seconds).
    """

    run_id: int
    lease_token: int
    kind: str
    result: JSON = None
    outcome: Outcome | None = None
    error: str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressUpdate:
    run_id: int
    lease_token: int
    percent: float | None
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
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
    concurrency: str = "allow"
    current_package_id: int | None
    total_runs: int
    last_run_id: int | None
    last_run_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    id: int
    job_id: int
    version: int
    sha256: str
    size: int
    storage_key: str
    manifest: dict[str, Any]
    created_at: float
    created_by: str | None


class LogLine(NamedTuple):
    """One line of a run's output (a tuple: cheap to build on the log-capture path)."""

    run_id: int
    seq: int
    ts: float
    stream: str
    level: str
    message: str
    step: str | None = None
    target: str | None = None
