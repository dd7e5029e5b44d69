"""Submit, inspect, cancel and re-run runs."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from runwright.db.notify import Waker
from runwright.db.runs import RunFilter, RunRepository
from runwright.db.workers import WorkerRegistry
from runwright.errors import Conflict, InvalidRequest, NotFound, UnknownTaskType
from runwright.model.runs import Run, SubmitRequest, WorkerInfo
from runwright.model.states import RunStatus
from runwright.worker.registry import TaskRegistry

MAX_PAGE = 500
KNOWN_TYPES_TTL = 5.0  # seconds a task type read from the workers' table is trusted


@dataclass(frozen=True, slots=True)
class Submitted:
    run: Run
    created: bool  # False when an idempotency key returned an earlier run


@dataclass(frozen=True, slots=True)
class TaskTypeInfo:
    name: str
    description: str
    workers: int  # live workers that serve it


class RunService:
    def __init__(
        self,
        *,
        runs: RunRepository,
        workers: WorkerRegistry,
        registry: TaskRegistry,
        waker: Waker | None,
        lease_timeout: float,
    ) -> None:
        self._runs = runs
        self._workers = workers
        self._registry = registry
        self._waker = waker
        self._live_age = lease_timeout
        self._seen_types: dict[str, float] = {}

    # -- submit --------------------------------------------------------------------
    def submit(self, request: SubmitRequest, *, check_type: bool = True) -> Submitted:
        if check_type:
            self._check_type(request.type)
        request = self._with_task_defaults(request)
        run, created = self._runs.submit(request)
        if created and self._waker is not None:
            self._waker.wake()
        return Submitted(run=run, created=created)

    def checked(self, request: SubmitRequest, *, check_type: bool = True) -> SubmitRequest:
        """The request as ``submit`` would store it: its task type known, its task's
        defaults applied. For callers that store runs on their own transaction."""
        if check_type:
            self._check_type(request.type)
        return self._with_task_defaults(request)

    def insert_on(self, conn: Connection, requests: Sequence[SubmitRequest]) -> builtins.list[Run]:
        """Store ``checked`` requests on the caller's transaction; call ``wake`` once
        it has committed."""
        return self._runs.insert_on(conn, requests)

    def wake(self) -> None:
        """Tell this process's workers that new runs are queued."""
        if self._waker is not None:
            self._waker.wake()

    def submit_keyed(self, requests: Sequence[SubmitRequest]) -> dict[str, tuple[int, bool]]:
        """Many keyed runs in one transaction (the scheduler's batch of fires)."""
        result = self._runs.submit_keyed(requests)
        if any(created for _, created in result.values()) and self._waker is not None:
            self._waker.wake()
        return result

    def by_idempotency_key(self, key: str) -> Run | None:
        return self._runs.by_idempotency_key(key)

    def submit_many(self, requests: Sequence[SubmitRequest]) -> builtins.list[int]:
        for name in sorted({r.type for r in requests}):
            self._check_type(name)
        if any(r.idempotency_key for r in requests):
            raise InvalidRequest(
                "bulk submit does not take idempotency keys; submit those one by one"
            )
        ids = self._runs.submit_many([self._with_task_defaults(r) for r in requests])
        if self._waker is not None:
            self._waker.wake()
        return ids

    def _check_type(self, name: str) -> None:
        if self._registry.get(name) is not None:
            return
        if time.monotonic() - self._seen_types.get(name, -KNOWN_TYPES_TTL) < KNOWN_TYPES_TTL:
            return  # a worker elsewhere registered it a moment ago: spare the lookup
        known = set(self._registry.names()) | set(self._workers.known_task_types())
        if name not in known:
            raise UnknownTaskType(name, sorted(known))
        self._seen_types[name] = time.monotonic()

    def _with_task_defaults(self, request: SubmitRequest) -> SubmitRequest:
        spec = self._registry.get(request.type)
        if spec is None:
            return request
        changes: dict[str, Any] = {}
        if spec.queue and request.queue == "default":
            changes["queue"] = spec.queue
        if spec.max_attempts and request.max_attempts == 1:
            changes["max_attempts"] = spec.max_attempts
        if spec.timeout and request.timeout is None:
            changes["timeout"] = spec.timeout
        return replace(request, **changes) if changes else request

    # -- read ----------------------------------------------------------------------
    def get(self, run_id: int) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"Run {run_id} does not exist; list runs with `runwright runs list`.")
        return run

    def list(self, query: RunFilter) -> builtins.list[Run]:
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        return self._runs.list(query)

    def result(self, run_id: int) -> Any:
        run = self.get(run_id)
        if run.status is RunStatus.SUCCEEDED:
            return run.result
        raise Conflict(_why_no_result(run))

    # -- change --------------------------------------------------------------------
    def cancel(self, run_id: int) -> Run:
        outcome = self._runs.cancel(run_id)
        if outcome is None:
            raise NotFound(f"Run {run_id} does not exist.")
        if not outcome.changed:
            raise Conflict(
                f"Run {run_id} already finished ({outcome.run.status.value}); there is nothing "
                "to cancel. Use `runwright runs retry` to run it again."
            )
        return outcome.run

    def retry(self, run_id: int) -> Run:
        """Submit a new run with the same type, payload and options as a finished one."""
        original = self.get(run_id)
        if original.status not in (RunStatus.FAILED, RunStatus.CANCELED):
            raise Conflict(
                f"Run {run_id} is {original.status.value}; only failed or canceled runs can be "
                "retried."
            )
        request = SubmitRequest(
            type=original.type,
            payload=original.payload,
            queue=original.queue,
            priority=original.priority,
            max_attempts=original.max_attempts,
            timeout=original.timeout,
            job=original.job,
            trigger="retry",
            retry_of=original.id,
            job_id=original.job_id,
            package_id=original.package_id,
            environment=original.environment,
        )
        return self.submit(request, check_type=False).run

    def resume(self, run_id: int) -> Run:
        """Run a failed multi-step run again from its first step that did not succeed,
        as a new attempt of the same run (the saved context carries the earlier outputs)."""
        run = self.get(run_id)
        if run.type != "steps":
            raise Conflict(
                f"Run {run_id} is a {run.type} run; only multi-step runs resume from a failed "
                f"step. Use `runwright runs retry {run_id}` to run it again."
            )
        if run.status not in (RunStatus.FAILED, RunStatus.CANCELED):
            raise Conflict(
                f"Run {run_id} is {run.status.value}; only a failed or canceled run can be resumed."
            )
        resumed = self._runs.resume(run_id, types=("steps",))
        if resumed is None:
            raise Conflict(f"Run {run_id} changed while resuming it; look at it again.")
        if self._waker is not None:
            self._waker.wake()
        return resumed

    # -- catalogue -----------------------------------------------------------------
    def task_types(self) -> builtins.list[TaskTypeInfo]:
        live = self._workers.live(self._live_age)
        names = set(self._registry.names()) | set(self._workers.known_task_types())
        infos = []
        for name in sorted(names):
            spec = self._registry.get(name)
            infos.append(
                TaskTypeInfo(
                    name=name,
                    description=spec.description if spec else "",
                    workers=sum(1 for w in live if name in w.task_types),
                )
            )
        return infos

    def workers(self) -> builtins.list[WorkerInfo]:
        return self._workers.live(self._live_age)


def _why_no_result(run: Run) -> str:
    if run.status is RunStatus.QUEUED:
        return f"Run {run.id} is still queued; it has no result yet. Wait for it to finish."
    if run.status is RunStatus.RUNNING:
        return f"Run {run.id} is still running; it has no result yet. Wait for it to finish."
    if run.status is RunStatus.FAILED:
        detail = (run.error or "").strip().splitlines()
        last = detail[-1] if detail else "no error recorded"
        return f"Run {run.id} failed ({run.outcome.value if run.outcome else 'error'}): {last}"
    return f"Run {run.id} was canceled; it has no result."
