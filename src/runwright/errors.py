"""runwright's error tree.

::

    RunwrightError
    ├── ConfigError             settings that cannot work
    ├── NotFound                a run, worker or task type that does not exist
    ├── InvalidRequest          input the caller must fix (HTTP 422)
    │   ├── UnknownTaskType
    │   └── TooLarge            an upload over its size limit (HTTP 413)
    ├── Conflict                the request does not fit the current state (HTTP 409)
    ├── DatabaseError
    │   ├── DatabaseUnavailable the database cannot be reached right now (HTTP 503)
    │   └── SchemaOutdated      migrations must be applied first
    ├── StoreError              the artifact store failed or refused (bad key, missing bucket)
    │   ├── ObjectNotFound      no object under that key (HTTP 404)
    │   └── StoreUnavailable    the store cannot be reached right now (HTTP 503)
    └── ServerUnreachable       the CLI or Client cannot reach the REST API

Control flow inside tasks:

    Retry      raise to ask for another attempt after ``delay`` seconds
    Cancelled  raised by ``TaskContext.raise_if_cancelled``
"""

from __future__ import annotations


class RunwrightError(Exception):
    """Root of every error runwright raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RunwrightError):
    status_code = 400


class NotFound(RunwrightError):
    status_code = 404


class InvalidRequest(RunwrightError):
    status_code = 422


class TooLarge(InvalidRequest):
    status_code = 413


class UnknownTaskType(InvalidRequest):
    def __init__(self, task_type: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) if known else "none are registered yet"
        super().__init__(
            f"Unknown task type {task_type!r}. Known types: {listed}. "
            "Register it with @task in a module passed to --tasks (RUNWRIGHT_TASKS)."
        )
        self.task_type = task_type
        self.known = sorted(known)


class Unauthorized(RunwrightError):
    status_code = 401


class Forbidden(RunwrightError):
    status_code = 403


class RateLimited(RunwrightError):
    status_code = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(RunwrightError):
    status_code = 409


class DatabaseError(RunwrightError):
    status_code = 500


class DatabaseConflict(DatabaseError):
    """A write refused by a unique or foreign-key constraint."""

    status_code = 409


class DatabaseUnavailable(DatabaseError):
    status_code = 503


class SchemaOutdated(DatabaseError):
    status_code = 503


class StoreError(RunwrightError):
    status_code = 500


class ObjectNotFound(StoreError):
    status_code = 404


class StoreUnavailable(StoreError):
    status_code = 503


class ServerUnreachable(RunwrightError):
    status_code = 503


class Retry(Exception):
    """Raised by a task to be run again after ``delay`` seconds (if attempts remain)."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Cancelled(Exception):
    """Raised inside a task when its run was canceled."""


class ExecutionFailed(RunwrightError):
    """A job's process failed; ``outcome`` says how (error, killed, out_of_memory)."""

    status_code = 500

    def __init__(self, message: str, *, outcome: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.exit_code = exit_code
