"""What a task sees of its run."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from runwright.errors import Cancelled
from runwright.model.runs import clean_text

ProgressSink = Callable[[float | None, str | None], None]


class TaskContext:
    """Handed to every task: its payload, progress reporting and cancellation."""

    __slots__ = ("_cancel", "_progress", "attempt", "max_attempts", "payload", "run_id", "type")

    def __init__(
        self,
        *,
        run_id: int,
        type: str,
        payload: Any,
        attempt: int,
        max_attempts: int,
        progress: ProgressSink,
    ) -> None:
        self.run_id = run_id
        self.type = type
        self.payload = payload
        self.attempt = attempt
        self.max_attempts = max_attempts
        self._progress = progress
        self._cancel = threading.Event()

    def progress(self, percent: float | None, message: str | None = None) -> None:
        """Report progress (0-100) with an optional message; cheap to call often."""
        if percent is not None:
            if math.isnan(percent):
                raise ValueError("progress percent must be a number between 0 and 100")
            percent = min(100.0, max(0.0, float(percent)))
        self._progress(percent, clean_text(str(message)) if message is not None else None)

    @property
    def cancelled(self) -> bool:
        """True once the run was canceled, timed out, or handed to another worker."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("run was canceled")

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake and raise ``Cancelled`` as soon as the run is canceled."""
        if self._cancel.wait(seconds):
            raise Cancelled("run was canceled")

    def _request_cancel(self) -> None:
        self._cancel.set()
