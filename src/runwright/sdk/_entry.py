"""Starts a job's entry point inside its subprocess (standard library only).

Usage: python _runwright_entry.py ENTRYPOINT [ARGS...]
ENTRYPOINT is ``path/to/file.py`` (run as __main__) or ``module:function`` (called;
its return value, when not None, becomes the run's result).

Resource limits arrive in RUNWRIGHT_LIMITS and are applied here, before any job code
runs, so that the worker can start the process without a Python-level fork hook
(which would force a full fork of the multi-threaded worker). Imports are kept to a
minimum: they are paid by every run.
"""

import os
import sys


def _apply_limits() -> None:
    spec = os.environ.pop("RUNWRIGHT_LIMITS", "")
    if not spec:
        return
    import resource

    names = {
        "as": resource.RLIMIT_AS,
        "cpu": resource.RLIMIT_CPU,
        "fsize": resource.RLIMIT_FSIZE,
        "nproc": resource.RLIMIT_NPROC,
    }
    for item in spec.split(","):
        name, _, value = item.partition("=")
        soft, _, hard = value.partition(":")
        resource.setrlimit(names[name], (int(soft), int(hard or soft)))


def _call(entrypoint: str) -> None:
    import importlib
    import inspect

    from runwright import sdk

    module_name, function_name = entrypoint.split(":", 1)
    function = getattr(importlib.import_module(module_name), function_name)
    accepts = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    result = function(sdk.params) if accepts else function()
    if inspect.iscoroutine(result):
        import asyncio

        result = asyncio.run(result)
    if result is not None:
        sdk.set_result(result)


def main() -> None:
    _apply_limits()
    try:
        _start(sys.argv[1], sys.argv[2:])
    except Exception as exc:
        # Told to the worker, which then tries the target's next credential. Matched by
        # name so that runs which never import the SDK do not pay for it.
        if type(exc).__name__ == "AuthenticationFailed" and "runwright.sdk" in sys.modules:
            sdk = sys.modules["runwright.sdk"]
            if isinstance(exc, sdk.AuthenticationFailed):
                sdk._send({"type": "auth_failed", "message": str(exc)})
        raise


def _start(entrypoint: str, arguments: list[str]) -> None:
    sys.path.insert(0, os.getcwd())
    if entrypoint.endswith(".py"):
        # Like `python path/file.py`: the script's folder comes first on the path.
        sys.path.insert(0, os.path.dirname(os.path.abspath(entrypoint)))
        sys.argv = [entrypoint, *arguments]
        with open(entrypoint, "rb") as handle:
            code = compile(handle.read(), entrypoint, "exec")
        # The script becomes __main__ (this file's module stays alive under its own
        # name, so its globals keep working while the script runs).
        main_module = type(sys)("__main__")
        main_module.__file__ = entrypoint
        sys.modules["_runwright_entry"] = sys.modules["__main__"]
        sys.modules["__main__"] = main_module
        exec(code, main_module.__dict__)  # noqa: S102 - running the job's script is the point
        return
    sys.argv = [entrypoint.split(":", 1)[0], *arguments]
    _call(entrypoint)


if __name__ == "__main__":
    main()
