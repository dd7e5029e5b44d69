"""What every step action receives, and how it says that it failed."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwright.artifacts.base import ArtifactStore
from runwright.model.context import FileMetadata
from runwright.model.logs import Level


class StepFailed(Exception):
    """A step's action failed; ``error_type`` says how (for retries and the UI)."""

    def __init__(self, message: str, error_type: str = "error", *, output: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.output = output  # what the step did produce (per-target results)


class StepTimedOut(StepFailed):
    def __init__(self, message: str) -> None:
        super().__init__(message, "timeout")


@dataclass(kw_only=True)
class StepEnv:
    run_id: int
    job_id: int
    job: str
    step_id: str
    folder: Path  # the extracted package: the working directory of shell and python steps
    store: ArtifactStore
    variables: dict[str, Any]
    files: list[FileMetadata]
    log: Callable[[str, Level], None]
    should_stop: Callable[[], bool]  # canceled, or past the step's deadline
    remaining: Callable[[], float | None]  # seconds left before the step's deadline
    recorded: list[FileMetadata] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.log(message, Level.INFO)

    def warn(self, message: str) -> None:
        self.log(message, Level.WARNING)

    def record_file(self, metadata: FileMetadata) -> None:
        self.recorded.append(metadata)

    def bounded(self, seconds: float) -> float:
        """A timeout that does not outlive the step's own deadline."""
        left = self.remaining()
        return seconds if left is None else max(0.001, min(seconds, left))


def json_safe(value: Any) -> Any:
    """Database and file values as JSON: dates as ISO 8601, decimals as numbers,
    bytes as base64, anything else unknown as its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)


def summary(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
