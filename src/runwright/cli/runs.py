"""`runwright submit` and `runwright runs ...`: talk to the server's REST API."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from runwright.cli.common import (
    console,
    err_console,
    parse_json,
    print_json,
    reported,
    settings_from,
    when,
)
from runwright.client import Client
from runwright.model.runs import Run
from runwright.model.states import RunStatus

runs_app = typer.Typer(help="List, inspect, cancel and retry runs.", no_args_is_help=True)

STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "canceled": "magenta",
}


def _client(ctx: typer.Context) -> Client:
    return Client(settings=settings_from(ctx))


def run_dict(run: Run) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    data["status"] = run.status.value
    data["outcome"] = run.outcome.value if run.outcome else None
    data["duration"] = run.duration
    return data


def _status(run: Run) -> str:
    style = STATUS_STYLE.get(run.status.value, "white")
    text = f"[{style}]{run.status.value}[/]"
    if run.outcome:
        text += f" ({run.outcome.value})"
    return text


STEP_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "running": "yellow",
    "canceled": "magenta",
    "skipped": "dim",
    "pending": "cyan",
}


def show_steps(steps: list[dict[str, Any]]) -> None:
    table = Table(box=None, header_style="bold", padding=(0, 1))
    for column in ("#", "STEP", "USES", "STATUS", "TRIES", "DURATION"):
        table.add_column(column, no_wrap=True)
    table.add_column("OUTPUT / ERROR", no_wrap=True, overflow="ellipsis", max_width=70)
    for step in steps:
        style = STEP_STYLE.get(step["status"], "white")
        duration = step.get("duration")
        detail = step.get("error") or step.get("output_summary") or ""
        table.add_row(
            str(step["position"] + 1),
            step["step_id"],
            step["uses"],
            f"[{style}]{step['status']}[/]",
            str(step.get("tries") or 0),
            f"{duration:.2f}s" if duration is not None else "-",
            " ".join(detail.split()),
        )
    console.print(table)


def show_targets(rows: list[dict[str, Any]]) -> None:
    table = Table(box=None, header_style="bold", padding=(0, 1))
    for column in ("STEP", "TARGET", "ADDRESS", "STATUS", "CREDENTIAL", "EXIT", "DURATION"):
        table.add_column(column, no_wrap=True)
    table.add_column("OUTPUT / ERROR", no_wrap=True, overflow="ellipsis", max_width=60)
    for row in rows:
        style = STEP_STYLE.get(row["status"], "red" if row["status"] != "succeeded" else "green")
        duration = row.get("duration")
        detail = (
            f"{row['error_type']}: {row['error']}" if row.get("error") else row.get("output") or ""
        )
        exit_status = row.get("exit_status")
        table.add_row(
            row.get("step_id") or "-",
            row["target"],
            row["address"],
            f"[{style}]{row['status']}[/]",
            row.get("credential") or "-",
            "-" if exit_status is None else str(exit_status),
            f"{duration:.2f}s" if duration is not None else "-",
            " ".join(detail.split()),
        )
    console.print(table)


def show_run(run: Run) -> None:
    console.print(f"[bold]Run {run.id}[/] {run.type}  {_status(run)}")
    rows = [
        ("queue", f"{run.queue} (priority {run.priority})"),
        ("attempt", f"{run.attempt} of {run.max_attempts}"),
        ("created", when(run.created_at)),
        ("scheduled", when(run.scheduled_at)),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("duration", f"{run.duration:.3f}s" if run.duration is not None else "-"),
        ("worker", run.worker_id or "-"),
    ]
    if run.progress.percent is not None or run.progress.message:
        pct = f"{run.progress.percent:.0f}%" if run.progress.percent is not None else ""
        rows.append(("progress", f"{pct} {run.progress.message or ''}".strip()))
    if run.idempotency_key:
        rows.append(("idempotency key", run.idempotency_key))
    if run.retry_of:
        rows.append(("retry of", str(run.retry_of)))
    if run.cancel_requested and not run.status.is_final:
        rows.append(("cancel", "requested"))
    for name, value in rows:
        console.print(f"  {name:<16} {value}", highlight=False)
    if run.status is RunStatus.SUCCEEDED:
        console.print("  result", highlight=False)
        console.print_json(data=run.result)
    if run.error:
        console.print("  [red]error[/]")
        console.print(run.error, highlight=False, markup=False)


def submit(
    ctx: typer.Context,
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="Registered task type.")],
    payload: Annotated[str, typer.Option(help="JSON payload handed to the task.")] = "null",
    queue: Annotated[str, typer.Option(help="Queue to put the run on.")] = "default",
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts before dead letter.")] = 1,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="A second submit with this key returns the first run.")
    ] = None,
    delay: Annotated[float | None, typer.Option(help="Start no sooner than in N seconds.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to finish.")] = False,
    wait_timeout: Annotated[float | None, typer.Option(help="Give up waiting after N s.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Queue a run of TYPE; with --wait, print its result (exit 1 if it fails)."""
    data = parse_json(payload, "--payload")
    with reported(), _client(ctx) as client:
        run = client.submit(
            task_type,
            data,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            idempotency_key=idempotency_key,
            scheduled_at=time.time() + delay if delay else None,
        )
        if not wait:
            if as_json:
                print_json(run_dict(run))
            else:
                console.print(f"Queued run [bold]{run.id}[/] ({run.type}) on {run.queue}.")
                console.print(f"Follow it with: runwright runs show {run.id}", highlight=False)
            return
        with console.status(f"Waiting for run {run.id}...", spinner="dots"):
            run = client.wait(run.id, timeout=wait_timeout)
        if as_json:
            print_json(run_dict(run))
        else:
            show_run(run)
        if run.status is not RunStatus.SUCCEEDED:
            raise typer.Exit(1)


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[list[RunStatus] | None, typer.Option(help="Repeat for several.")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    job: Annotated[str | None, typer.Option(help="Only runs of this job.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    before: Annotated[int | None, typer.Option(help="Only runs older than this id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Runs, newest first."""
    with reported(), _client(ctx) as client:
        runs = client.list(
            [s.value for s in status or []],
            type=task_type,
            job=job,
            queue=queue,
            limit=limit,
            cursor=before,
        )
    if as_json:
        print_json([run_dict(run) for run in runs])
        return
    if not runs:
        console.print("No runs match. Submit one with `runwright submit TYPE`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "TYPE", "STATUS", "QUEUE", "ATTEMPT", "CREATED", "DURATION"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run.id),
            run.type,
            _status(run),
            run.queue,
            f"{run.attempt}/{run.max_attempts}",
            when(run.created_at),
            f"{run.duration:.2f}s" if run.duration is not None else "-",
        )
    console.print(table)
    if len(runs) == limit:
        console.print(f"More with: runwright runs list --before {runs[-1].id}", highlight=False)


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Everything about one run."""
    with reported(), _client(ctx) as client:
        run = client.get(run_id)
        steps = client.steps(run_id) if run.type == "steps" else []
        targets = client.targets(run_id) if run.type == "steps" else []
    if as_json:
        extra = {"steps": steps, "targets": targets} if run.type == "steps" else {}
        print_json({**run_dict(run), **extra})
        return
    show_run(run)
    if steps:
        console.print("  [bold]steps[/]")
        show_steps(steps)
    if targets:
        done = sum(1 for t in targets if t["status"] == "succeeded")
        console.print(f"  [bold]targets[/] ({done} of {len(targets)} succeeded)")
        show_targets(targets)
    if steps and run.status in (RunStatus.FAILED, RunStatus.CANCELED):
        console.print(
            f"Continue from the failed step with: runwright runs resume {run.id}",
            highlight=False,
        )


@runs_app.command("result")
def result(ctx: typer.Context, run_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Print a succeeded run's result as JSON (exit 1 with the reason otherwise)."""
    with reported(), _client(ctx) as client:
        print_json(client.result(run_id))


@runs_app.command("cancel")
def cancel(ctx: typer.Context, run_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Cancel a queued run now, or ask a running one to stop."""
    with reported(), _client(ctx) as client:
        run = client.cancel(run_id)
    if run.status is RunStatus.CANCELED:
        console.print(f"Run {run.id} canceled.")
    else:
        console.print(
            f"Run {run.id} is running; its worker stops it within one heartbeat interval."
        )


@runs_app.command("retry")
def retry(ctx: typer.Context, run_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Run a failed or canceled run again, as a new run."""
    with reported(), _client(ctx) as client:
        run = client.retry(run_id)
    console.print(f"Queued run [bold]{run.id}[/] as a retry of run {run_id}.")


@runs_app.command("resume")
def resume(ctx: typer.Context, run_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Run a failed multi-step run again from the step that failed (earlier steps'
    saved outputs are reused, not run again)."""
    with reported(), _client(ctx) as client:
        run = client.resume(run_id)
    console.print(
        f"Run [bold]{run.id}[/] queued again as attempt {run.attempt + 1}; it continues from "
        "its first step that did not succeed."
    )
    console.print(f"Follow it with: runwright logs {run.id} -f", highlight=False)


@runs_app.command("context")
def context(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID")],
    step: Annotated[str | None, typer.Option(help="Only this step's output.")] = None,
) -> None:
    """Print the saved job context of a multi-step run as JSON (secrets masked)."""
    with reported(), _client(ctx) as client:
        data = client.context(run_id)
    if step is None:
        print_json(data)
        return
    steps = data.get("steps") or {}
    if step not in steps:
        show_error(f"Run {run_id} has no step {step!r}; its steps: {', '.join(steps) or 'none'}.")
        raise typer.Exit(1)
    print_json(steps[step].get("output"))


def show_error(message: str) -> None:
    err_console.print(f"[red]Error:[/] {message}")
