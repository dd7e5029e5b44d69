"""Shared CLI plumbing: settings from global options, output, and error reporting."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from runwright.config import Settings
from runwright.errors import RunwrightError

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def settings_from(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    raise RuntimeError("settings were not initialised")


def build_settings(**overrides: Any) -> Settings:
    try:
        return Settings().with_overrides(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        err_console.print(f"[red]Invalid setting:[/] {problems}")
        raise typer.Exit(2) from exc


@contextmanager
def reported() -> Iterator[None]:
    """Print runwright errors as one readable line and exit non-zero, never a traceback."""
    try:
        yield
    except RunwrightError as exc:
        err_console.print(f"[red]Error:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc


def run_reported(func: Callable[[], T]) -> T:
    with reported():
        return func()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        err_console.print(
            f"[red]Error:[/] {option} is not valid JSON ({exc}). Example: {option} '{{\"key\": 1}}'"
        )
        raise typer.Exit(2) from exc
