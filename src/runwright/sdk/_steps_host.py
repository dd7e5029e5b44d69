"""Runs the python steps of one multi-step run, one after another (standard library only).

Usage: python _runwright_steps.py
Requests arrive on stdin, one JSON object per line:
    {"call": 3, "step": "transform", "function": "pkg.mod:fn", "inputs": {...},
     "context": {...}}
The function is called with ``inputs`` as keyword arguments; its return value (or
the error) goes back over the SDK pipe as {"type": "step_result", "call": 3, ...}.
After each call a marker line on stdout and stderr tells the worker that every
line the step printed has been read, so that lines are never given to the wrong step.
"""

import importlib
import json
import os
import sys

# asyncio, inspect and traceback are imported when needed: every run with python steps
# pays for what this process imports at start.

MARKER = "\x1erunwright-step-end "


def _resolve(function: str):  # type: ignore[no-untyped-def]
    module_name, name = function.split(":", 1)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, name)
    except AttributeError:
        raise LookupError(f"module {module_name} has no function {name}") from None


def _call(request: dict) -> dict:  # type: ignore[type-arg]
    from runwright import sdk

    sdk._enter_step(
        request["step"],
        request.get("context") or {},
        request.get("target"),
        request.get("credential"),
    )
    try:
        value = _resolve(request["function"])(**(request.get("inputs") or {}))
        if hasattr(value, "__await__") and hasattr(value, "send"):
            import asyncio

            value = asyncio.run(value)
        json.dumps(value, allow_nan=False)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        import traceback

        traceback.print_exc()
        text = f"{type(exc).__name__}: {exc}".strip()
        if isinstance(exc, TypeError | ValueError) and "JSON" in str(exc).upper():
            text = f"the step's return value is not JSON-serialisable: {exc}"
        kind = "auth" if isinstance(exc, sdk.AuthenticationFailed) else "exception"
        return {
            "type": "step_result",
            "call": request["call"],
            "ok": False,
            "error": text,
            "error_type": kind,
        }
    return {"type": "step_result", "call": request["call"], "ok": True, "value": value}


def main() -> None:
    from _runwright_entry import _apply_limits  # type: ignore[import-not-found]

    _apply_limits()
    sys.path.insert(0, os.getcwd())
    from runwright import sdk

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = _call(request)
        sys.stdout.flush()
        sys.stderr.flush()
        sdk._send(reply)
        marker = f"{MARKER}{request['call']}\n"
        sys.stdout.write(marker)
        sys.stdout.flush()
        sys.stderr.write(marker)
        sys.stderr.flush()


if __name__ == "__main__":
    main()
