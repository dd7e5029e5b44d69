"""The job context of a multi-step run: what its steps produced and what they may read.

It is saved to the artifact store when a run starts and after every step, so that a
run resumed after a failure (or on another worker) continues from the saved state.
Pure data and helpers; the storage lives in ``services/contexts.py``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from runwright.errors import InvalidRequest

CONTEXT_FORMAT = 1


class StepStatus:
    """Statuses of one step of a run (plain strings in the saved context)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"

    ALL = (PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, TIMED_OUT, CANCELED)
    FINAL = (SUCCEEDED, FAILED, SKIPPED, TIMED_OUT, CANCELED)
    # Steps a resumed run does not execute again.
    DONE = (SUCCEEDED, SKIPPED)


@dataclass(slots=True)
class StepState:
    step_id: str
    status: str = StepStatus.PENDING
    output: Any = None
    error: str | None = None
    error_type: str | None = None  # reference, input, timeout, http_status, auth, ...
    started_at: float | None = None
    completed_at: float | None = None
    attempt: int = 0  # the run attempt that produced this state

    def to_json(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "error_type": self.error_type,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepState:
        status = data.get("status", StepStatus.PENDING)
        if status not in StepStatus.ALL:
            raise ValueError(f"unknown step status {status!r}")
        return cls(
            step_id=str(data["step_id"]),
            status=status,
            output=data.get("output"),
            error=data.get("error"),
            error_type=data.get("error_type"),
            started_at=data.get("started_at"),
            completed_at=data.get("completed_at"),
            attempt=int(data.get("attempt") or 0),
        )


@dataclass(slots=True)
class WebhookData:
    payload: Any = None
    query_params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload, "query_params": self.query_params, "headers": self.headers}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> WebhookData:
        data = data or {}
        return cls(
            payload=data.get("payload"),
            query_params=dict(data.get("query_params") or {}),
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FileMetadata:
    """A file a step wrote or fetched; ``path`` is its key in the artifact store."""

    path: str
    filename: str
    size: int
    mime_type: str
    row_count: int | None = None
    created_at: float = field(default_factory=time.time)
    step_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "filename": self.filename,
            "size": self.size,
            "mime_type": self.mime_type,
            "row_count": self.row_count,
            "created_at": self.created_at,
            "step_id": self.step_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileMetadata:
        return cls(
            path=str(data["path"]),
            filename=str(data["filename"]),
            size=int(data["size"]),
            mime_type=str(data.get("mime_type") or "application/octet-stream"),
            row_count=data.get("row_count"),
            created_at=float(data.get("created_at") or 0.0),
            step_id=data.get("step_id"),
        )


@dataclass(slots=True, kw_only=True)
class JobContext:
    """Execution (run) id, job id, variables, steps, webhook data and files."""

    execution_id: int
    job_id: int
    job: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepState] = field(default_factory=dict)
    webhook: WebhookData = field(default_factory=WebhookData)
    files: list[FileMetadata] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, execution_id: int, job_id: int, **values: Any) -> JobContext:
        return cls(execution_id=execution_id, job_id=job_id, **values)

    # -- steps ---------------------------------------------------------------------
    def get_step_output(self, step_id: str) -> Any:
        state = self.steps.get(step_id)
        return None if state is None else state.output

    def set_step_output(self, step_id: str, output: Any) -> None:
        state = self.steps.setdefault(step_id, StepState(step_id))
        state.output = output
        self.touch()

    def step(self, step_id: str) -> StepState:
        """The state of a step, created as pending on first use."""
        return self.steps.setdefault(step_id, StepState(step_id))

    def has_step_output(self, step_id: str) -> bool:
        state = self.steps.get(step_id)
        return state is not None and state.status == StepStatus.SUCCEEDED

    def completed_steps_count(self) -> int:
        return sum(1 for state in self.steps.values() if state.status in StepStatus.FINAL)

    def get_executed_step_ids(self) -> list[str]:
        """Steps that ran to an end (in the order they were first recorded)."""
        return [s.step_id for s in self.steps.values() if s.status in StepStatus.FINAL]

    # -- variables -----------------------------------------------------------------
    def get_variable(self, name: str) -> Any:
        return self.variables.get(name)

    def set_variable(self, name: str, value: Any) -> None:
        self.variables[name] = value
        self.touch()

    # -- webhook -------------------------------------------------------------------
    def get_webhook_data(self) -> WebhookData:
        return self.webhook

    def set_webhook_data(self, webhook: WebhookData) -> None:
        self.webhook = webhook
        self.touch()

    # -- files ---------------------------------------------------------------------
    def add_file_metadata(self, metadata: FileMetadata) -> None:
        """Record a file; a later file with the same path replaces the earlier entry."""
        self.files = [f for f in self.files if f.path != metadata.path]
        self.files.append(metadata)
        self.touch()

    def get_files(self) -> list[FileMetadata]:
        return list(self.files)

    def touch(self) -> None:
        self.updated_at = time.time()

    # -- views ---------------------------------------------------------------------
    def references(self) -> dict[str, Any]:
        """What ``{{ ... }}`` references see: deep copies, so a template cannot change
        the context it reads."""
        return {
            "run_id": self.execution_id,
            "job_id": self.job_id,
            "job": self.job,
            "params": copy.deepcopy(self.params),
            "variables": copy.deepcopy(self.variables),
            "steps": {
                step_id: {
                    "status": state.status,
                    "output": copy.deepcopy(state.output),
                    "error": state.error,
                    "error_type": state.error_type,
                }
                for step_id, state in self.steps.items()
            },
            "webhook": copy.deepcopy(self.webhook.to_json()),
            "files": [f.to_json() for f in self.files],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CONTEXT_FORMAT,
            "execution_id": self.execution_id,
            "job_id": self.job_id,
            "job": self.job,
            "params": self.params,
            "variables": self.variables,
            "steps": {step_id: state.to_json() for step_id, state in self.steps.items()},
            "webhook": self.webhook.to_json(),
            "files": [f.to_json() for f in self.files],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> JobContext:
        """Parse a saved context; anything malformed is an InvalidRequest naming why."""
        if not isinstance(data, dict):
            raise InvalidRequest("the saved context is not a JSON object")
        if data.get("format", CONTEXT_FORMAT) != CONTEXT_FORMAT:
            raise InvalidRequest(
                f"the saved context has format {data.get('format')!r}; this version of "
                f"runwright reads format {CONTEXT_FORMAT}"
            )
        try:
            return cls(
                execution_id=int(data["execution_id"]),
                job_id=int(data["job_id"]),
                job=str(data.get("job") or ""),
                params=dict(data.get("params") or {}),
                variables=dict(data.get("variables") or {}),
                steps={
                    str(step_id): StepState.from_json(state)
                    for step_id, state in (data.get("steps") or {}).items()
                },
                webhook=WebhookData.from_json(data.get("webhook")),
                files=[FileMetadata.from_json(f) for f in data.get("files") or []],
                created_at=float(data.get("created_at") or 0.0),
                updated_at=float(data.get("updated_at") or 0.0),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidRequest(f"the saved context is malformed: {exc}") from exc


MASK = "********"


def mask_values(value: Any, secrets: set[str]) -> Any:
    """A copy of a JSON value with every occurrence of a secret replaced by a mask."""
    if not secrets:
        return value
    ordered = sorted(secrets, key=len, reverse=True)

    def walk(node: Any) -> Any:
        if isinstance(node, int | float) and not isinstance(node, bool):
            # A sensitive number is a secret too, wherever it ends up.
            return MASK if str(node) in secrets else node
        if isinstance(node, str):
            for secret in ordered:
                if secret in node:
                    node = node.replace(secret, MASK)
            return node
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(value)
