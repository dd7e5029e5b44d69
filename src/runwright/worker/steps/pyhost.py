"""The process that runs a multi-step run's python steps: started at the first python
step and reused by the next ones (a Python start per step would cost more than most
steps), replaced after a step that timed out or crashed it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwright.errors import Cancelled
from runwright.model.logs import Stream
from runwright.worker import process
from runwright.worker.steps.common import StepFailed, StepTimedOut

MARKER = "\x1erunwright-step-end "
MARKER_WAIT = 2.0  # seconds to wait for a step's last lines after its result


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSpec:
    command: list[str]
    cwd: Path
    env: dict[str, str]
    limits: process.ResourceLimits
    kill_grace: float
    run_id: int


class PythonHost:
    def __init__(
        self,
        spec: HostSpec,
        *,
        on_line: Callable[[Stream, str], None],
        on_progress: Callable[[dict[str, Any]], None],
        cancelled: Callable[[], bool],
    ) -> None:
        self._spec = spec
        self._on_line = on_line
        self._on_progress = on_progress
        self._cancelled = cancelled
        self._results: queue.Queue[dict[str, Any]] = queue.Queue()
        self._markers: dict[Stream, int] = {}
        self._marker_seen = threading.Condition()
        self._thread: threading.Thread | None = None
        self._writer: Any = None
        self._stop = False
        self._outcome: process.ProcessOutcome | None = None
        self._calls = 0
        self.starts = 0

    # -- lifecycle -----------------------------------------------------------------
    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        self._writer = os.fdopen(write_fd, "w", encoding="utf-8", buffering=1)
        self._stop = False
        self._outcome = None
        self._results = queue.Queue()
        self._markers = {}
        self.starts += 1

        def run() -> None:
            self._outcome = process.run_process(
                self._spec.command,
                cwd=self._spec.cwd,
                env=self._spec.env,
                limits=self._spec.limits,
                on_line=self._line,
                on_message=self._message,
                should_stop=lambda: self._stop or self._cancelled(),
                kill_grace=self._spec.kill_grace,
                run_id=self._spec.run_id,
                stdin=read_fd,
            )

        self._thread = threading.Thread(target=run, name="python-steps", daemon=True)
        self._thread.start()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Kill the host (a step timed out or the run was canceled)."""
        if self._thread is None:
            return
        self._stop = True
        self._close_writer()
        self._thread.join()
        self._thread = None

    def close(self) -> None:
        """End the host politely: end of input, then it exits on its own."""
        if self._thread is None:
            return
        self._close_writer()
        self._thread.join(timeout=self._spec.kill_grace + 1)
        if self._thread.is_alive():
            self.stop()
        self._thread = None

    def _close_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None

    # -- output ----------------------------------------------------------------------
    def _line(self, stream: Stream, text: str) -> None:
        at = text.find(MARKER)
        if at < 0:
            self._on_line(stream, text)
            return
        if at > 0:
            # The step's last output had no newline: the marker was glued onto it.
            self._on_line(stream, text[:at])
        with self._marker_seen:
            with contextlib.suppress(ValueError):
                self._markers[stream] = int(text[at + len(MARKER) :])
            self._marker_seen.notify_all()

    def _message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "step_result":
            self._results.put(message)
        elif message.get("type") == "progress":
            self._on_progress(message)

    def _wait_markers(self, call: int) -> None:
        deadline = time.monotonic() + MARKER_WAIT
        with self._marker_seen:
            while any(self._markers.get(s, 0) < call for s in (Stream.STDOUT, Stream.STDERR)):
                left = deadline - time.monotonic()
                if left <= 0 or not self._alive():
                    return
                self._marker_seen.wait(left)

    # -- calls -----------------------------------------------------------------------
    def call(
        self,
        step_id: str,
        function: str,
        inputs: dict[str, Any],
        context: dict[str, Any],
        deadline: float | None,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``function``; ``extra`` adds fields to the request (the target and its
        credential, which travel over the host's private stdin, never its arguments)."""
        if not self._alive():
            self._start()
        self._calls += 1
        call = self._calls
        request = {
            "call": call,
            "step": step_id,
            "function": function,
            "inputs": inputs,
            "context": context,
            **(extra or {}),
        }
        try:
            assert self._writer is not None
            self._writer.write(json.dumps(request, separators=(",", ":"), default=str) + "\n")
            self._writer.flush()
        except (OSError, ValueError):
            pass  # the host died: reported below with its exit status
        while True:
            try:
                reply = self._results.get(timeout=0.05)
            except queue.Empty:
                if self._cancelled():
                    self.stop()
                    raise Cancelled("canceled") from None
                if deadline is not None and time.monotonic() >= deadline:
                    self.stop()
                    raise StepTimedOut(
                        f"python step {function} did not finish in time; its process was stopped"
                    ) from None
                if not self._alive():
                    raise self._died(function) from None
                continue
            if reply.get("call") != call:
                continue
            self._wait_markers(call)
            if reply.get("ok"):
                return reply.get("value")
            raise StepFailed(
                str(reply.get("error") or "the step failed"),
                str(reply.get("error_type") or "exception"),
            )

    def _died(self, function: str) -> StepFailed:
        self._thread = None
        outcome = self._outcome
        if outcome is not None and outcome.signal is not None:
            how = f"was killed by signal {outcome.signal}"
            if outcome.signal == 9:
                how += " (possibly out of memory)"
        elif outcome is not None:
            how = f"exited with code {outcome.exit_code}"
        else:
            how = "ended"
        return StepFailed(f"the process running python step {function} {how}", "crash")
