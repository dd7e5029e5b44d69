"""Entry point of the `runwright` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from runwright import __version__
from runwright.cli.common import (
    build_settings,
    console,
    print_json,
    reported,
    settings_from,
    when,
)
from runwright.cli.dev import dev
from runwright.cli.jobs import deploy, job_app, logs, package_app, run, script_app
from runwright.cli.processes import scheduler, server, worker
from runwright.cli.runs import runs_app, submit
from runwright.cli.secrets import secrets_app
from runwright.cli.targets import credential_app, target_app
from runwright.cli.triggers import notify_app, schedule_app, webhook_app
from runwright.cli.users import token_app, user_app
from runwright.cli.variables import var_app
from runwright.client import Client

app = typer.Typer(
    name="runwright",
    help="Self-hosted job orchestration: runs, queues and workers on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")
app.command()(server)
app.command()(worker)
app.command()(scheduler)
app.command()(submit)
app.add_typer(job_app, name="job")
app.add_typer(package_app, name="package")
app.add_typer(script_app, name="script")
app.add_typer(var_app, name="var")
app.add_typer(schedule_app, name="schedule")
app.add_typer(webhook_app, name="webhook")
app.add_typer(notify_app, name="notify")
app.add_typer(target_app, name="target")
app.add_typer(credential_app, name="credential")
app.add_typer(secrets_app, name="secrets")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.command()(deploy)
app.command()(run)
app.command()(logs)
app.command()(dev)


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(help="Data folder [RUNWRIGHT_HOME].")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL [RUNWRIGHT_DATABASE_URL].")
    ] = None,
    storage_url: Annotated[
        str | None, typer.Option(help="Artifact store URL [RUNWRIGHT_STORAGE_URL].")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Server address [RUNWRIGHT_URL].")] = None,
    heartbeat_interval: Annotated[
        float | None, typer.Option(help="Seconds [RUNWRIGHT_HEARTBEAT_INTERVAL].")
    ] = None,
    lease_timeout: Annotated[
        float | None, typer.Option(help="Seconds [RUNWRIGHT_LEASE_TIMEOUT].")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option(help="Seconds [RUNWRIGHT_POLL_INTERVAL].")
    ] = None,
    shutdown_grace: Annotated[
        float | None, typer.Option(help="Seconds [RUNWRIGHT_SHUTDOWN_GRACE].")
    ] = None,
) -> None:
    ctx.obj = build_settings(
        home=home,
        database_url=database_url,
        storage_url=storage_url,
        url=url,
        heartbeat_interval=heartbeat_interval,
        lease_timeout=lease_timeout,
        poll_interval=poll_interval,
        shutdown_grace=shutdown_grace,
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def config(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the effective settings (secrets masked)."""
    values = settings_from(ctx).describe()
    if as_json:
        print_json(values)
        return
    for name, value in values.items():
        console.print(f"{'RUNWRIGHT_' + name.upper():<32} {value}", highlight=False)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations to the database."""
    from runwright.db.engine import create_engine
    from runwright.db.schema import inspect_schema, upgrade

    settings = settings_from(ctx)
    with reported():
        engine = create_engine(settings.effective_database_url)
        before = inspect_schema(engine)
        after = upgrade(engine)
        engine.dispose()
    if before.current == after.current:
        console.print(f"The database is already at the latest revision ({after.current}).")
    else:
        console.print(f"Upgraded the database from {before.current or 'empty'} to {after.current}.")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Show the schema revision of the database and the one this runwright needs."""
    from runwright.db.engine import create_engine
    from runwright.db.schema import inspect_schema

    settings = settings_from(ctx)
    with reported():
        engine = create_engine(settings.effective_database_url)
        state = inspect_schema(engine)
        engine.dispose()
    console.print(
        f"database revision: {state.current or '(none)'}\nrequired revision: {state.head}"
    )
    if not state.up_to_date:
        console.print("Run `runwright db upgrade` to bring it up to date.")
        raise typer.Exit(1)


@app.command("workers")
def list_workers(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Live workers: host, pid, queues, running runs, last heartbeat."""
    with reported(), Client(settings=settings_from(ctx)) as client:
        workers = client.workers()
    if as_json:
        print_json(workers)
        return
    if not workers:
        console.print("No live workers. Start one with `runwright worker` (or `runwright server`).")
        return
    table = Table(box=None, header_style="bold")
    for column in ("WORKER", "HOST", "PID", "QUEUES", "RUNNING", "LAST HEARTBEAT"):
        table.add_column(column)
    for w in workers:
        table.add_row(
            w["id"],
            w["hostname"],
            str(w["pid"]),
            ",".join(w["queues"]),
            f"{w['running']}/{w['concurrency']}",
            str(w["heartbeat_at"]),
        )
    console.print(table)


@app.command("task-types")
def list_task_types(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Task types that can be submitted."""
    with reported(), Client(settings=settings_from(ctx)) as client:
        types = client.task_types()
    if as_json:
        print_json(types)
        return
    for t in types:
        console.print(
            f"{t['name']:<24} {t['workers']} workers  {t['description']}", highlight=False
        )


def main() -> None:
    app()


_ = when
