"""`runwright server`, `worker` and `scheduler`: the long-running processes."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from runwright.cli.common import console, err_console, reported, settings_from
from runwright.config import Settings
from runwright.errors import RunwrightError

# The server's, worker's and scheduler's modules (FastAPI, the pages, SQLAlchemy, the
# executors) are imported by the command that needs them: every other `runwright`
# command starts without paying for them.


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("RUNWRIGHT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # asyncssh logs every connection at INFO, the command it runs included: a secret
    # rendered into a command would reach this log unmasked.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _tasks(settings: Settings, tasks: str | None) -> Settings:
    if tasks is None:
        return settings
    return settings.with_overrides(tasks=tuple(settings.tasks) + _split(tasks))


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int, typer.Option(min=0, help="Runs executed at once by the embedded worker (0: none).")
    ] = 4,
    queues: Annotated[str, typer.Option(help="Queues the embedded worker serves.")] = "default",
    tasks: Annotated[str | None, typer.Option(help="Modules registering task types.")] = None,
    demo: Annotated[bool, typer.Option(help="Create the demo jobs if they are missing.")] = False,
    scheduler: Annotated[
        bool, typer.Option(help="Fire schedules and send notifications in this process.")
    ] = True,
) -> None:
    """REST API, scheduler, recovery of lost runs and an embedded worker, in one process."""
    import uvicorn

    from runwright.api.app import create_app
    from runwright.scheduler.loop import SchedulerLoop
    from runwright.scheduler.maintenance import Maintenance
    from runwright.services.runtime import Runtime

    _configure_logging()
    settings = _tasks(settings_from(ctx), tasks)
    if not _port_free(host, port):
        err_console.print(
            f"[red]Error:[/] port {port} on {host} is already in use. Stop the other process "
            "or choose another port with --port."
        )
        raise typer.Exit(1)
    with reported():
        runtime = Runtime.open(settings, create_schema=True)
        link = runtime.auth.bootstrap(settings.home)
        if demo:
            from runwright.demo import install_demo_jobs

            for name in install_demo_jobs(runtime.scripts, runtime.jobs):
                console.print(f"Created demo job {name}: runwright run {name} --follow")
    maintenance = Maintenance(
        runtime.engine, lease_timeout=settings.lease_timeout, policy=runtime.retry_policy()
    )
    worker = runtime.worker(
        concurrency=workers,
        queues=_split(queues),
        in_process=True,
        exit_process=lambda: _exit_now(0),
    )
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    info_path = settings.home / "server.json"
    cron = SchedulerLoop(runtime)
    with reported():
        maintenance.start()
        if scheduler:
            cron.start()
        if workers:
            worker.start()
    info_path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    console.print(
        f"runwright server on {url}  (database: {runtime.engine.url.get_backend_name()}"
        f", {workers} embedded worker slots)",
        highlight=False,
    )
    if link:
        console.print(
            f"Sign in to the web UI (once, within 15 minutes): {url}/login/link?code={link}\n"
            f"The CLI on this machine uses the admin token in {settings.home / 'token'}.",
            highlight=False,
            soft_wrap=True,
        )
    # uvicorn restores the previous SIGTERM/SIGINT handlers when it stops and raises
    # the signal again: with these no-op handlers that does not kill the process
    # before the embedded worker has finished or requeued its runs below.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    code = 0
    # Everything made so far (modules, app, engine) lives as long as the process:
    # out of the collector's reach, it is not scanned again on every full collection.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.Server(
            uvicorn.Config(create_app(runtime), host=host, port=port, log_level="warning")
        ).run()
    except Exception:
        logging.getLogger(__name__).exception("the server stopped on an error")
        code = 1
    finally:
        console.print("Stopping: letting running runs finish...")
        cron.stop()
        if workers:
            worker.stop_and_wait()
        maintenance.stop()
        with contextlib.suppress(RunwrightError):
            runtime.auth.flush()
        _remove_if_ours(info_path)
        runtime.close()
        _exit_now(code)


def _exit_now(code: int) -> None:
    """Exit without waiting for task threads that ignored cancellation: their runs were
    requeued, and must not go on executing here while another worker runs them."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _remove_if_ours(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs executed at once.")] = 8,
    queues: Annotated[str, typer.Option(help="Comma-separated queues to serve.")] = "default",
    tasks: Annotated[str | None, typer.Option(help="Modules registering task types.")] = None,
) -> None:
    """Claim and execute runs until stopped (SIGTERM: finish, then requeue; twice: exit)."""
    from runwright.services.runtime import Runtime

    _configure_logging()
    settings = _tasks(settings_from(ctx), tasks)
    with reported():
        runtime = Runtime.open(settings, create_schema=False)
        instance = runtime.worker(
            concurrency=concurrency,
            queues=_split(queues),
            exit_process=lambda: _exit_now(0),
        )
        instance.start()
    signals = {"count": 0}

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            err_console.print("Second signal: exiting now; unfinished runs recover by lease.")
            os._exit(1)
        err_console.print(
            f"Stopping after running runs finish (up to {settings.shutdown_grace:g}s); "
            "send the signal again to exit at once."
        )
        instance.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not instance.wait(0.5):
        pass
    runtime.close()
    _exit_now(0)


def scheduler(ctx: typer.Context) -> None:
    """Fire schedules, release queued runs, send notifications and recover runs of dead
    workers until stopped. Run as many as you like: they share the work."""
    from runwright.scheduler.loop import SchedulerLoop
    from runwright.scheduler.maintenance import Maintenance
    from runwright.services.runtime import Runtime

    _configure_logging()
    settings = settings_from(ctx)
    with reported():
        runtime = Runtime.open(settings, create_schema=False)
    maintenance = Maintenance(
        runtime.engine, lease_timeout=settings.lease_timeout, policy=runtime.retry_policy()
    )
    maintenance.start()
    cron = SchedulerLoop(runtime)
    cron.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print("runwright scheduler running; Ctrl-C to stop.")
    stop.wait()
    cron.stop()
    maintenance.stop()
    runtime.close()
