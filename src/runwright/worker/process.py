"""Run a job's process: own process group, resource limits, line-by-line output,
a private pipe for the SDK, and termination on cancel (SIGTERM, grace, SIGKILL)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runwright.model.logs import Stream

_groups_lock = threading.Lock()
# run id -> process groups of its job in this process (one per target on targets)
_running_groups: dict[int, set[int]] = {}


def kill_groups(run_ids: Iterable[int]) -> int:
    """SIGKILL the job process groups of these runs, if still running (a stopping
    worker's last act before it requeues them); returns how many there were."""
    with _groups_lock:
        groups = [g for r in run_ids for g in _running_groups.get(r, ())]
    for pgid in groups:
        _kill_group(pgid, signal.SIGKILL)
    return len(groups)


LineSink = Callable[[Stream, str], None]
MessageSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceLimits:
    memory_mb: int = 0
    cpu_seconds: int = 0
    file_mb: int = 0
    processes: int = 0

    def encode(self) -> str:
        """For RUNWRIGHT_LIMITS, applied by the job's entry script before its code runs."""
        limits = []
        if self.memory_mb:
            limits.append(f"as={self.memory_mb * 1024 * 1024}")
        if self.cpu_seconds:
            limits.append(f"cpu={self.cpu_seconds}:{self.cpu_seconds + 5}")
        if self.file_mb:
            limits.append(f"fsize={self.file_mb * 1024 * 1024}")
        if self.processes:
            limits.append(f"nproc={self.processes}")
        return ",".join(limits)


@dataclass(slots=True)
class ProcessOutcome:
    exit_code: int | None  # None when ended by a signal
    signal: int | None
    stopped: bool  # we ended it (cancel or timeout)
    runtime: float
    messages: list[dict[str, Any]] = field(default_factory=list)


def run_process(
    command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    limits: ResourceLimits,
    on_line: LineSink,
    on_message: MessageSink,
    should_stop: Callable[[], bool],
    kill_grace: float,
    run_id: int,
    stdin: int | None = None,
) -> ProcessOutcome:
    """Run to the end. ``stdin``, when given, is a readable descriptor handed to the
    child as its standard input and closed here once the child has it."""
    read_fd, write_fd = os.pipe()
    env = dict(env, RUNWRIGHT_SDK_FD=str(write_fd), RUNWRIGHT_LIMITS=limits.encode())
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,  # its own process group: we can stop all of it
            close_fds=True,
        )
    finally:
        os.close(write_fd)
        if stdin is not None:
            os.close(stdin)
    with _groups_lock:
        _running_groups.setdefault(run_id, set()).add(process.pid)
    assert process.stdout is not None
    assert process.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, Stream.STDOUT, on_line), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, Stream.STDERR, on_line), daemon=True),
        threading.Thread(target=_messages, args=(read_fd, on_message), daemon=True),
    ]
    for reader in readers:
        reader.start()
    stopped = False
    # A pidfd becomes readable the moment the process exits: no polling delay.
    exited = os.pidfd_open(process.pid)
    try:
        while process.poll() is None:
            select.select([exited], [], [], 0.05)
            if not stopped and process.poll() is None and should_stop():
                stopped = True
                _stop_group(process, kill_grace)
    finally:
        os.close(exited)
    # The group may have children still holding the pipes open: stop them too.
    _kill_group(process.pid, signal.SIGKILL)
    with _groups_lock:
        running = _running_groups.get(run_id, set())
        running.discard(process.pid)
        if not running:
            _running_groups.pop(run_id, None)
    for reader in readers:
        reader.join(timeout=10)
    code = process.returncode
    return ProcessOutcome(
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        stopped=stopped,
        runtime=time.monotonic() - started,
    )


MAX_LINE_BYTES = 64 * 1024  # a longer line is stored as several lines


def _pump(pipe: IO[bytes], stream: Stream, on_line: LineSink) -> None:
    with pipe:
        while raw := pipe.readline(MAX_LINE_BYTES):
            on_line(stream, raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def _messages(fd: int, on_message: MessageSink) -> None:
    with os.fdopen(fd, "rb") as pipe:
        for raw in pipe:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                on_message(message)


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    _kill_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid, signal.SIGKILL)
        process.wait()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
