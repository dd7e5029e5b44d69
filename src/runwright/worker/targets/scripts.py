"""A script or package that declares ``targets``: its entry point runs once per target,
in its own process, with the target and a credential in ``sdk.target`` /
``sdk.credential``, at most ``max_parallel`` at a time."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwright.model.logs import Stream
from runwright.model.targets import (
    Candidates,
    ErrorType,
    TargetSelector,
    TargetStatus,
    UnlockedCredential,
)
from runwright.worker import process
from runwright.worker.targets.dispatch import Dispatched, Dispatcher
from runwright.worker.targets.ssh import Attempted

KEPT_LINES = 200  # of each target's stdout and stderr, for its summary and error
ERROR_TAIL = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """How to start the entry point, whatever the target."""

    command: Sequence[str]
    cwd: Path
    env: dict[str, str]
    limits: process.ResourceLimits
    kill_grace: float
    run_id: int
    context: dict[str, Any]  # what ``sdk`` reads, without target and credential


LineOut = Callable[[Stream, str, str], None]  # stream, text, target
Progress = Callable[[float, str], None]


def run_on_targets(
    dispatcher: Dispatcher,
    selector: TargetSelector,
    spec: ProcessSpec,
    *,
    line: LineOut,
    progress: Progress,
    cancelled: Callable[[], bool],
) -> Dispatched:
    """Every target with a credential, each through its candidate credentials until
    one is accepted (the job raises ``sdk.AuthenticationFailed`` to refuse one)."""
    private = spec.cwd / ".runwright"
    counter = {"done": 0}
    lock = threading.Lock()
    total = {"targets": 0}

    def work(slot: int, candidates: Candidates, credential: UnlockedCredential) -> Attempted:
        target = candidates.target
        context_file = private / f"target-{slot}.json"
        _write_private(
            context_file,
            {**spec.context, "target": target.public(), "credential": credential.for_job()},
        )
        try:
            done = _run_one(spec, context_file, target.name, line, cancelled)
        finally:
            context_file.unlink(missing_ok=True)
        if done.error_type != ErrorType.AUTH:
            with lock:
                counter["done"] += 1
                finished = counter["done"]
            progress(
                100.0 * finished / max(1, total["targets"]),
                f"{finished} of {total['targets']} targets done",
            )
        return done

    def count(resolved: int) -> None:
        total["targets"] = resolved

    return dispatcher.each(
        "",
        selector,
        work,
        slots=selector.max_parallel,
        cancelled=cancelled,
        on_resolved=count,
    )


def _run_one(
    spec: ProcessSpec,
    context_file: Path,
    target: str,
    line: LineOut,
    cancelled: Callable[[], bool],
) -> Attempted:
    stdout: deque[str] = deque(maxlen=KEPT_LINES)
    stderr: deque[str] = deque(maxlen=KEPT_LINES)
    said: dict[str, Any] = {}

    def on_line(stream: Stream, text: str) -> None:
        line(stream, text, target)
        (stderr if stream is Stream.STDERR else stdout).append(text)

    def on_message(message: dict[str, Any]) -> None:
        if message.get("type") in ("result", "auth_failed"):
            said[message["type"]] = message.get("value", message.get("message"))

    ended = process.run_process(
        spec.command,
        cwd=spec.cwd,
        env=dict(spec.env, RUNWRIGHT_SDK_CONTEXT=str(context_file)),
        limits=spec.limits,
        on_line=on_line,
        on_message=on_message,
        should_stop=cancelled,
        run_id=spec.run_id,
        kill_grace=spec.kill_grace,
    )
    done = Attempted(status=TargetStatus.SUCCEEDED)
    done.stdout, done.stderr = "\n".join(stdout), "\n".join(stderr)
    done.exit_status = ended.exit_code
    took = f"after {ended.runtime:.2f}s"
    tail = "\n".join(list(stderr)[-ERROR_TAIL:])
    if ended.stopped:
        done.status = TargetStatus.CANCELED
        done.error, done.error_type = "the run was canceled", "canceled"
    elif "auth_failed" in said:
        done.fail(ErrorType.AUTH, str(said["auth_failed"] or "authentication failed"))
    elif ended.signal is not None:
        name = signal.Signals(ended.signal).name
        done.fail(ErrorType.COMMAND, f"killed by {name} {took}" + (f":\n{tail}" if tail else ""))
    elif ended.exit_code:
        done.fail(
            ErrorType.COMMAND,
            f"exited with code {ended.exit_code} {took}" + (f":\n{tail}" if tail else ""),
        )
    else:
        done.value = said.get("result")
    return done


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """The credential is in it: readable by the worker's user only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
