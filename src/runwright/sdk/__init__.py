"""The job SDK: imported by job code inside its subprocess. Standard library only.

    from runwright import sdk

    sdk.params          # the run's parameters (dict)
    sdk.args            # the run's arguments (list of str)
    sdk.config          # merged configuration for the run's environment (dict)
    sdk.environment     # e.g. "production" (None for the base configuration)
    sdk.run_id, sdk.job
    sdk.webhook         # the webhook call that started the run: payload, query_params,
                        # headers (None for other triggers)
    sdk.context         # in a python step of a multi-step job: the job context
                        # (steps and their outputs, variables, params, webhook, files)
    sdk.step            # ... and the id of the step being run
    sdk.target          # in a script, package or python step on targets: the target
                        # being worked on (name, address, port, driver, tags, vars);
                        # None otherwise
    sdk.credential      # ... and the credential to use with it: .username, .password,
                        # .private_key, .passphrase (its repr shows no secret)
    raise sdk.AuthenticationFailed("...")  # the host refused this credential: the
                        # step (or script) runs again with the next candidate credential
    sdk.progress(40, "copied 4 of 10 files")
    sdk.set_result({"rows": 10})

Messages travel to the worker over a private pipe, never over stdout, so printing
never interferes with them. Outside a runwright run (plain ``python main.py``) the
values are empty and progress/result print to stderr instead.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "Credential",
    "args",
    "config",
    "context",
    "credential",
    "environment",
    "job",
    "params",
    "progress",
    "run_id",
    "set_result",
    "step",
    "target",
    "webhook",
]

_FD_VARIABLE = "RUNWRIGHT_SDK_FD"
_CONTEXT_VARIABLE = "RUNWRIGHT_SDK_CONTEXT"


def _load_context() -> dict[str, Any]:
    path = os.environ.get(_CONTEXT_VARIABLE)
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


_context = _load_context()
params: dict[str, Any] = dict(_context.get("params") or {})
args: list[str] = list(_context.get("args") or [])
config: dict[str, Any] = dict(_context.get("config") or {})
environment: str | None = _context.get("environment")
run_id: int | None = _context.get("run_id")
job: str | None = _context.get("job")
# The webhook call that started the run: {"payload", "query_params", "headers"} (or None)
webhook: dict[str, Any] | None = _context.get("webhook")
context: dict[str, Any] = {}
step: str | None = None


class AuthenticationFailed(Exception):
    """Raise it when the target refused ``sdk.credential``: the step is called again
    for this target with its next candidate credential."""


class Credential:
    """A credential for ``sdk.target``. Printing it (or logging it) shows no secret."""

    __slots__ = ("name", "passphrase", "password", "private_key", "username")

    def __init__(self, data: dict[str, Any]) -> None:
        self.name: str = data.get("name") or ""
        self.username: str = data.get("username") or ""
        self.password: str | None = data.get("password")
        self.private_key: str | None = data.get("private_key")
        self.passphrase: str | None = data.get("passphrase")

    def __repr__(self) -> str:
        return f"Credential(name={self.name!r}, username={self.username!r}, secret=********)"

    __str__ = __repr__


# A script or package on targets runs once per target: its context names the target.
target: dict[str, Any] | None = _context.get("target")
credential: Credential | None = (
    Credential(_context["credential"]) if _context.get("credential") else None
)


def _enter_step(
    step_id: str,
    job_context: dict[str, Any],
    on_target: dict[str, Any] | None = None,
    with_credential: dict[str, Any] | None = None,
) -> None:
    """Called by the step host before each python step (not part of the public API)."""
    global step, target, credential
    step = step_id
    target = on_target
    credential = Credential(with_credential) if with_credential is not None else None
    context.clear()
    context.update(job_context)
    params.clear()
    params.update(job_context.get("params") or {})


_pipe = None
_fd = os.environ.get(_FD_VARIABLE)
if _fd:
    try:
        _pipe = os.fdopen(int(_fd), "w", encoding="utf-8", buffering=1, closefd=True)
    except (OSError, ValueError):
        _pipe = None


def _send(message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":"))
    if _pipe is None:
        print(f"[runwright] {line}", file=sys.stderr)
        return
    _pipe.write(line + "\n")
    _pipe.flush()


def progress(percent: float | None, message: str | None = None) -> None:
    """Report progress: a percentage from 0 to 100 and an optional message."""
    if percent is not None:
        percent = float(percent)
        if math.isnan(percent):
            raise ValueError("progress percent must be a number between 0 and 100")
        percent = min(100.0, max(0.0, percent))
    _send({"type": "progress", "percent": percent, "message": message})


def set_result(value: Any) -> None:
    """Set the run's result: any JSON-serialisable value (the last call wins)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"sdk.set_result needs a JSON-serialisable value: {exc}") from exc
    _send({"type": "result", "value": value})
