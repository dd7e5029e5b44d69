"""Printing a run's lines as they arrive, with a live progress bar."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from runwright.cli.common import console
from runwright.model.logs import LEVEL_ORDER, Level

STYLES = {"error": "red", "warning": "yellow", "debug": "dim"}


def print_line(line: dict[str, Any]) -> None:
    style = "dim" if line.get("stream") == "system" else STYLES.get(line.get("level", ""), "")
    text = Text(line.get("message", ""), style=style)
    if line.get("target"):
        text = Text.assemble((f"[{line['target']}] ", "magenta"), text)
    if line.get("step"):
        text = Text.assemble((f"[{line['step']}] ", "cyan"), text)
    console.print(text, soft_wrap=True, highlight=False)


def wanted(line: dict[str, Any], level: Level | None) -> bool:
    if level is None:
        return True
    try:
        return LEVEL_ORDER[Level(line.get("level", "info"))] >= LEVEL_ORDER[level]
    except ValueError:
        return True


class RunFollower:
    """Consumes ``(event, data)`` pairs; prints lines and keeps a progress bar."""

    def __init__(self, level: Level | None = None, show_progress: bool = True) -> None:
        self._level = level
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._show_progress = show_progress
        self.final: dict[str, Any] | None = None
        self.final_event: str | None = None

    def __enter__(self) -> RunFollower:
        if self._show_progress:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def handle(self, name: str, data: Any) -> None:
        if name == "log":
            if wanted(data, self._level):
                print_line(data)
        elif name == "progress" and self._show_progress:
            percent = data.get("percent") or 0.0
            message = data.get("message") or ""
            if self._task is None:
                self._task = self._progress.add_task(message, total=100)
            self._progress.update(self._task, completed=percent, description=message)
        elif name in ("completed", "failed", "canceled"):
            self.final, self.final_event = data, name


def summary(data: dict[str, Any]) -> str:
    status = data.get("status", "?")
    style = {"succeeded": "green", "failed": "red", "canceled": "magenta"}.get(status, "white")
    text = f"Run {data.get('id')} [{style}]{status}[/]"
    if data.get("outcome"):
        text += f" ({data['outcome']})"
    if data.get("duration") is not None:
        text += f" in {data['duration']:.2f}s"
    if data.get("exit_code") is not None:
        text += f", exit code {data['exit_code']}"
    return text
