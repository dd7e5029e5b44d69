"""``uses: shell``: a command in the same sandbox as scripts (clean environment,
resource limits, own process group, killed on timeout or cancel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runwright.errors import Cancelled
from runwright.model.logs import Stream
from runwright.model.steps import ShellInputs
from runwright.worker import process
from runwright.worker.steps.common import StepEnv, StepFailed, StepTimedOut
from runwright.worker.steps.pyhost import HostSpec

MAX_STDOUT = 256 * 1024  # characters of stdout kept in the output
STDERR_TAIL = 20


def run_shell(
    inputs: ShellInputs,
    env: StepEnv,
    spec: HostSpec,
    on_line: Callable[[Stream, str], None],
    cancelled: Callable[[], bool],
) -> dict[str, Any]:
    stdout: list[str] = []
    size = 0
    stderr_tail: list[str] = []

    def line(stream: Stream, text: str) -> None:
        nonlocal size
        on_line(stream, text)
        if stream is Stream.STDOUT:
            if size < MAX_STDOUT:
                stdout.append(text)
                size += len(text) + 1
        else:
            stderr_tail.append(text)
            del stderr_tail[:-STDERR_TAIL]

    outcome = process.run_process(
        ["/bin/sh", "-c", inputs.command],
        cwd=spec.cwd,
        env={**spec.env, **inputs.env},
        limits=spec.limits,
        on_line=line,
        on_message=lambda message: None,
        should_stop=env.should_stop,
        kill_grace=spec.kill_grace,
        run_id=spec.run_id,
    )
    if outcome.stopped:
        if cancelled():
            raise Cancelled("canceled")
        raise StepTimedOut(f"the command did not finish in time ({outcome.runtime:.1f}s)")
    output: dict[str, Any] = {
        "stdout": "\n".join(stdout)[:MAX_STDOUT],
        "stderr_tail": "\n".join(stderr_tail),
        "exit_code": outcome.exit_code,
    }
    took = f"{outcome.runtime:.2f}s"
    if outcome.signal is not None:
        raise StepFailed(
            f"the command was killed by signal {outcome.signal} after {took}", "killed"
        )
    if outcome.exit_code:
        tail = "\n".join(stderr_tail[-5:])
        raise StepFailed(
            f"the command exited with code {outcome.exit_code} after {took}"
            + (f":\n{tail}" if tail else ""),
            "exit_code",
        )
    env.info(f"The command exited with code 0 after {took}")
    return output
