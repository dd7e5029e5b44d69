"""Starts a job's entry point inside its subprocess (standard library only).

Usage: python _runwright_entry.py ENTRYPOINT [ARGS...]
ENTRYPOINT is ``path/to/file.py`` (run as __main__) or ``module:function`` (called;
its return value, when not None, becomes the run's result).
"""

from __future__ import annotations

import importlib
import inspect
import os
import runpy
import sys


def main() -> None:
    entrypoint, arguments = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, os.getcwd())
    if entrypoint.endswith(".py"):
        sys.argv = [entrypoint, *arguments]
        runpy.run_path(entrypoint, run_name="__main__")
        return
    from runwright import sdk

    module_name, function_name = entrypoint.split(":", 1)
    sys.argv = [module_name, *arguments]
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


if __name__ == "__main__":
    main()
