"""Task types: ``@task("export")`` registers the callable that executes that type."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from runwright.errors import ConfigError

TaskFunc = Callable[..., Any]
F = TypeVar("F", bound=TaskFunc)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    name: str
    func: TaskFunc
    queue: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    description: str = ""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


class TaskRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def register(self, spec: TaskSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise ConfigError(
                f"Task type {spec.name!r} is registered twice "
                f"({_where(existing.func)} and {_where(spec.func)}); rename one of them."
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[TaskSpec]:
        return [self._specs[name] for name in self.names()]

    def with_builtins(self, builtins: list[TaskSpec]) -> TaskRegistry:
        """A copy that also holds runwright's own executors (script and package jobs)."""
        combined = TaskRegistry()
        for spec in self.specs():
            if any(spec.name == b.name for b in builtins):
                raise ConfigError(
                    f"Task type {spec.name!r} ({_where(spec.func)}) is reserved for runwright's "
                    "jobs; rename the task."
                )
            combined.register(spec)
        for spec in builtins:
            combined.register(spec)
        return combined


default_registry = TaskRegistry()


def task(
    name: str | None = None,
    *,
    queue: str | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    registry: TaskRegistry | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as the executor of task type ``name``.

    The function receives a ``TaskContext`` (``ctx.payload``, ``ctx.progress(...)``,
    ``ctx.cancelled``) and returns a JSON-serialisable result. ``async def`` works too.
    """

    def decorate(func: F) -> F:
        spec = TaskSpec(
            name=name or func.__name__,
            func=func,
            queue=queue,
            max_attempts=max_attempts,
            timeout=timeout,
            description=(inspect.getdoc(func) or "").split("\n", 1)[0],
        )
        (registry or default_registry).register(spec)
        return func

    return decorate


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the modules that register task types (``--tasks`` / ``RUNWRIGHT_TASKS``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"Cannot import task module {module!r}: {exc}. Check the name and that it "
                "is importable from this Python environment (PYTHONPATH)."
            ) from exc


def _where(func: TaskFunc) -> str:
    return f"{func.__module__}.{func.__qualname__}"
