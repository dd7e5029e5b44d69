"""`runwright dev DIR`: package the folder, record it as the job's current version,
start a run (trigger ``dev``) and execute it here with its lines printed live.

It works on the installation's database and artifact store directly, like a worker.
When either cannot be reached it says so and still executes the code, on a
throw-away local database and store, so editing and running never depend on them.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runwright.artifacts.package import BuiltPackage, build_package
from runwright.cli.common import console, err_console, print_json, reported, settings_from
from runwright.cli.follow import print_line
from runwright.cli.jobs import parse_params
from runwright.config import Settings
from runwright.errors import DatabaseError, RunwrightError, StoreError

if TYPE_CHECKING:
    from runwright.services.runtime import Runtime


def dev(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="The job's folder (with runwright.toml).")
    ] = Path(),
    job: Annotated[str | None, typer.Option(help="Job name (default: the folder's name).")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Configuration environment.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
    arg: Annotated[list[str] | None, typer.Option("--arg", help="Argument (repeat).")] = None,
) -> None:
    """Package FOLDER, deploy it, and run it here with live output."""
    # Imported here: the other `runwright` commands start without the executors.
    from runwright.services.jobs import JOB_NAME, RunOptions

    settings = settings_from(ctx)
    name = job or folder.resolve().name.lower().replace("_", "-")
    if not JOB_NAME.match(name):
        err_console.print(
            f"[red]Error:[/] {name!r} (from the folder's name) is not a valid job name: use "
            "letters, digits, '.', '_' or '-'. Pass one with --job NAME.",
            highlight=False,
        )
        raise typer.Exit(1)
    with reported():
        built = build_package(folder)
    console.print(
        f"Packaged {folder} ({len(built.files)} files, {built.short_hash})", highlight=False
    )
    with reported():
        runtime, scratch = _open(settings, built, name)
    queue = f"dev-{socket.gethostname()}-{os.getpid()}"
    worker = runtime.worker(concurrency=1, queues=(queue,), in_process=True)
    code = 1
    try:
        with reported():
            run = runtime.jobs.run(
                name,
                RunOptions(
                    params=parse_params(param),
                    args=list(arg or []),
                    environment=env,
                    queue=queue,  # only this process serves it
                    trigger="dev",
                ),
            )
            worker.start()
            code = _tail(runtime, run.id)
    finally:
        worker.stop_and_wait(grace=0)
        runtime.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    raise typer.Exit(code)


def _open(settings: Settings, built: BuiltPackage, name: str) -> tuple[Runtime, Path | None]:
    """The installation's runtime with the package deployed, or a local stand-in (with
    its scratch folder, to remove afterwards)."""
    from runwright.services.runtime import Runtime

    try:
        runtime = Runtime.open(settings, create_schema=True)
    except (DatabaseError, StoreError) as exc:
        return _local(settings, built, name, f"the database is unreachable ({exc.message})")
    try:
        deployed = runtime.jobs.deploy(name, built.data, created_by="dev")
    except StoreError as exc:
        runtime.close()
        return _local(settings, built, name, f"the artifact store failed ({exc.message})")
    except RunwrightError:
        runtime.close()
        raise
    state = "new version" if deployed.created else "unchanged"
    console.print(f"Job {name} v{deployed.package.version} ({state})", highlight=False)
    return runtime, None


def _local(settings: Settings, built: BuiltPackage, name: str, why: str) -> tuple[Runtime, Path]:
    from runwright.services.runtime import Runtime

    err_console.print(
        f"[yellow]Warning:[/] {why}; running locally without recording the run there.",
        highlight=False,
    )
    scratch = Path(tempfile.mkdtemp(prefix="runwright-dev-"))
    local = settings.with_overrides(
        home=scratch, database_url="", storage_url=(scratch / "artifacts").as_uri()
    )
    runtime = Runtime.open(local, create_schema=True)
    runtime.jobs.deploy(name, built.data, created_by="dev")
    return runtime, scratch


def _tail(runtime: Runtime, run_id: int) -> int:
    """Print lines until the run ends; the exit code follows the run's status."""
    seq = 0
    shown_progress: tuple[float | None, str | None] = (None, None)
    while True:
        run = runtime.runs.get(run_id)
        for line in runtime.logs.page(run_id, after=seq, limit=5000):
            seq = line.seq
            print_line(
                {
                    "message": line.message,
                    "level": line.level,
                    "stream": line.stream,
                    "step": line.step,
                }
            )
        progress = (run.progress.percent, run.progress.message)
        if progress != shown_progress and progress != (None, None):
            shown_progress = progress
            console.print(f"[cyan]progress {progress[0] or 0:.0f}%[/] {progress[1] or ''}")
        if run.status.is_final and seq >= run.log_count:
            break
        time.sleep(0.1)
    status = run.status.value + (f" ({run.outcome.value})" if run.outcome else "")
    console.print(f"Run {run.id} {status} in {run.duration or 0:.2f}s", highlight=False)
    if run.status.value == "succeeded":
        if run.result is not None:
            print_json(run.result)
        return 0
    if run.error:
        err_console.print(run.error.strip().splitlines()[0], markup=False, highlight=False)
    return 1
