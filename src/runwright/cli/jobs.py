"""`runwright job`, `package`, `deploy`, `script`, `run` and `logs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from runwright.artifacts.package import build_package
from runwright.cli.common import console, err_console, print_json, reported, settings_from
from runwright.cli.follow import RunFollower, print_line, summary, wanted
from runwright.client import Client
from runwright.model.logs import Level

job_app = typer.Typer(help="Create, inspect and change jobs.", no_args_is_help=True)
package_app = typer.Typer(help="Build job packages.", no_args_is_help=True)
script_app = typer.Typer(help="Upload and manage one-file scripts.", no_args_is_help=True)


def _client(ctx: typer.Context) -> Client:
    return Client(settings=settings_from(ctx))


def parse_params(values: list[str] | None) -> dict[str, Any]:
    """``--param k=v``: values that parse as JSON keep their type (``n=3`` is a number)."""
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            err_console.print(f"[red]Error:[/] --param {item!r} must look like name=value.")
            raise typer.Exit(2)
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _level(value: str | None) -> Level | None:
    if value is None:
        return None
    try:
        return Level(value)
    except ValueError:
        err_console.print(f"[red]Error:[/] --level must be one of {', '.join(Level)}.")
        raise typer.Exit(2) from None


PARAM_HELP = (
    "Declare a parameter: name:type[:required][=default]; types string, integer, number, "
    "boolean, date, datetime, enum(a|b). Repeat for several."
)
CONCURRENCY_HELP = "allow (runs overlap), skip (skip a trigger while a run is active) or queue."


def _param_specs(items: list[str] | None) -> list[dict[str, Any]]:
    from runwright.errors import InvalidRequest
    from runwright.model.params import parse_param_option

    try:
        return [parse_param_option(item) for item in items or []]
    except InvalidRequest as exc:
        err_console.print(f"[red]Error:[/] {exc.message}")
        raise typer.Exit(2) from exc


# -- job ---------------------------------------------------------------------------
@job_app.command("create")
def job_create(
    ctx: typer.Context,
    name: str,
    kind: Annotated[str, typer.Option(help="task, script or package")] = "package",
    description: Annotated[str, typer.Option()] = "",
    task_type: Annotated[str | None, typer.Option(help="For task jobs: the @task type.")] = None,
    queue: Annotated[str, typer.Option()] = "default",
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    max_attempts: Annotated[int, typer.Option(min=1)] = 1,
    param: Annotated[list[str] | None, typer.Option("--param", help=PARAM_HELP)] = None,
    concurrency: Annotated[str, typer.Option(help=CONCURRENCY_HELP)] = "allow",
) -> None:
    """Create a job (package jobs are also created by their first deploy)."""
    body = {
        "parameters": _param_specs(param),
        "concurrency": concurrency,
        "name": name,
        "kind": kind,
        "description": description,
        "task_type": task_type,
        "queue": queue,
        "timeout": timeout,
        "max_attempts": max_attempts,
    }
    with reported(), _client(ctx) as client:
        job = client.request("POST", "/api/jobs", json=body)
    console.print(f"Created {job['kind']} job [bold]{job['name']}[/].")


@job_app.command("list")
def job_list(
    ctx: typer.Context,
    archived: Annotated[bool, typer.Option(help="List archived jobs instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Jobs with their current version and last run."""
    with reported(), _client(ctx) as client:
        jobs = client.request("GET", "/api/jobs", params={"archived": archived})
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        console.print("No jobs yet. Deploy one with `runwright deploy DIR --job NAME`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("JOB", "KIND", "VERSION", "RUNS", "LAST STATUS", "LAST RUN", "DESCRIPTION"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job["name"],
            job["kind"],
            f"v{job['current_version']}" if job["current_version"] else "-",
            str(job["total_runs"]),
            job["last_status"] or "-",
            (job["last_run_at"] or "-")[:19],
            job["description"],
        )
    console.print(table)


@job_app.command("show")
def job_show(ctx: typer.Context, name: str) -> None:
    """Everything about a job, as JSON."""
    with reported(), _client(ctx) as client:
        print_json(client.request("GET", f"/api/jobs/{name}"))


@job_app.command("update")
def job_update(
    ctx: typer.Context,
    name: str,
    description: Annotated[str | None, typer.Option()] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    timeout: Annotated[float | None, typer.Option()] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1)] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help=PARAM_HELP + " Replaces all.")
    ] = None,
    no_params: Annotated[bool, typer.Option("--no-params", help="Declare none.")] = False,
    concurrency: Annotated[str | None, typer.Option(help=CONCURRENCY_HELP)] = None,
) -> None:
    """Change a job's settings."""
    body = {
        key: value
        for key, value in {
            "parameters": [] if no_params else (_param_specs(param) if param else None),
            "concurrency": concurrency,
            "description": description,
            "queue": queue,
            "timeout": timeout,
            "max_attempts": max_attempts,
            "enabled": enabled,
        }.items()
        if value is not None
    }
    if not body:
        err_console.print("Nothing to change: pass at least one option (see --help).")
        raise typer.Exit(2)
    with reported(), _client(ctx) as client:
        client.request("PATCH", f"/api/jobs/{name}", json=body)
    console.print(f"Updated job {name}.")


@job_app.command("archive")
def job_archive(ctx: typer.Context, name: str) -> None:
    """Hide a job from lists and triggers; its runs and versions are kept."""
    with reported(), _client(ctx) as client:
        client.request("POST", f"/api/jobs/{name}/archive")
    console.print(f"Archived job {name}.")


@job_app.command("versions")
def job_versions(
    ctx: typer.Context, name: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Package versions of a job, newest first (* marks the current one)."""
    with reported(), _client(ctx) as client:
        versions = client.request("GET", f"/api/jobs/{name}/packages")
    if as_json:
        print_json(versions)
        return
    table = Table(box=None, header_style="bold")
    for column in ("", "VERSION", "SHA256", "SIZE", "ENTRYPOINT", "CREATED"):
        table.add_column(column)
    for p in versions:
        table.add_row(
            "*" if p["current"] else "",
            f"v{p['version']}",
            p["sha256"][:12],
            f"{p['size']:,}",
            p["entrypoint"],
            (p["created_at"] or "")[:19],
        )
    console.print(table)


@job_app.command("activate")
def job_activate(ctx: typer.Context, name: str, version: int) -> None:
    """Make VERSION the one new runs use (roll back or forward)."""
    with reported(), _client(ctx) as client:
        client.request("POST", f"/api/jobs/{name}/packages/{version}/activate")
    console.print(f"Job {name} now runs v{version}.")


# -- packages ----------------------------------------------------------------------
@package_app.command("build")
def package_build(
    folder: Path,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Zip to write.")] = None,
) -> None:
    """Build a deterministic zip of FOLDER: same files, same bytes, same sha256."""
    with reported():
        built = build_package(folder)
    target = output or Path(f"{folder.resolve().name}-{built.short_hash}.zip")
    target.write_bytes(built.data)
    console.print(
        f"Built {target} ({len(built.files)} files, {built.size:,} bytes)\n"
        f"version {built.short_hash}  sha256 {built.sha256}",
        highlight=False,
    )


def deploy(
    ctx: typer.Context,
    folder: Path,
    job: Annotated[str, typer.Option(help="Job to deploy to (created if missing).")],
) -> None:
    """Build FOLDER and make it the job's current version (uploaded only if new)."""
    with reported():
        built = build_package(folder)
        with _client(ctx) as client:
            result = client.request(
                "POST",
                f"/api/jobs/{job}/packages",
                files={"file": (f"{job}.zip", built.data, "application/zip")},
            )
    package = result["package"]
    if result["created"]:
        console.print(f"Deployed {job} v{package['version']} ({package['sha256'][:12]}).")
    else:
        console.print(
            f"{job} v{package['version']} already has this code ({package['sha256'][:12]}); "
            "it is the current version."
        )


# -- scripts -----------------------------------------------------------------------
@script_app.command("upload")
def script_upload(
    ctx: typer.Context,
    file: Path,
    description: Annotated[str, typer.Option()] = "",
    job: Annotated[str | None, typer.Option(help="Job name (default: from the file name).")] = None,
) -> None:
    """Upload a .py script as a job (a new version if it exists)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        err_console.print(f"[red]Error:[/] cannot read {file}: {exc.strerror}.")
        raise typer.Exit(1) from exc
    form = {"description": description, **({"job": job} if job else {})}
    with reported(), _client(ctx) as client:
        result = client.request(
            "POST",
            "/api/scripts",
            files={"file": (file.name, data, "text/x-python")},
            data=form,
        )
    name = result["job"]["name"]
    console.print(
        f"Uploaded {file.name} as job [bold]{name}[/] v{result['package']['version']}. "
        f"Run it with: runwright run {name}",
        highlight=False,
    )


@script_app.command("list")
def script_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Active scripts with their last execution."""
    with reported(), _client(ctx) as client:
        scripts = client.request("GET", "/api/scripts")
    if as_json:
        print_json(scripts)
        return
    if not scripts:
        console.print("No scripts. Upload one with `runwright script upload FILE`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("SCRIPT", "VERSION", "RUNS", "LAST STATUS", "LAST RUN", "DESCRIPTION"):
        table.add_column(column)
    for s in scripts:
        table.add_row(
            s["name"],
            f"v{s['version']}" if s["version"] else "-",
            str(s["total_runs"]),
            s["last_status"] or "-",
            (s["last_run_at"] or "-")[:19],
            s["description"],
        )
    console.print(table)


@script_app.command("archive")
def script_archive(ctx: typer.Context, name: str) -> None:
    """Archive a script (soft delete: hidden, history kept)."""
    with reported(), _client(ctx) as client:
        client.request("DELETE", f"/api/scripts/{name}")
    console.print(f"Archived script {name}.")


# -- run and logs ------------------------------------------------------------------
def run(
    ctx: typer.Context,
    job: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
    arg: Annotated[list[str] | None, typer.Option("--arg", help="Argument (repeat).")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Configuration environment.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    priority: Annotated[int | None, typer.Option()] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1)] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Wait and print the result.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show lines live.")] = False,
    tags: Annotated[
        str | None,
        typer.Option(help="Run on the targets with these tags instead of the declared ones (a,b)."),
    ] = None,
    max_parallel: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="Targets at once (a job that runs on targets)."),
    ] = None,
) -> None:
    """Run a job's current version; --follow shows its output live."""
    targets: dict[str, Any] = {}
    if tags is not None:
        targets["tags"] = [t.strip() for t in tags.split(",") if t.strip()]
    if max_parallel is not None:
        targets["max_parallel"] = max_parallel
    options = {
        key: value
        for key, value in {
            "timeout": timeout,
            "priority": priority,
            "queue": queue,
            "max_attempts": max_attempts,
            "idempotency_key": idempotency_key,
            "targets": targets or None,
        }.items()
        if value is not None
    }
    with reported(), _client(ctx) as client:
        started = client.run_job(job, parse_params(param), args=arg, environment=env, **options)
        console.print(f"Started run [bold]{started.id}[/] of {job}.", highlight=False)
        if follow:
            final = _follow(client, started.id, None)
        elif wait:
            finished = client.wait(started.id)
            final = {
                "id": finished.id,
                "status": finished.status.value,
                "outcome": finished.outcome.value if finished.outcome else None,
                "duration": finished.duration,
                "exit_code": finished.exit_code,
                "error": finished.error,
            }
        else:
            console.print(f"Follow it with: runwright logs {started.id} -f", highlight=False)
            return
        _finish(client, final)


def _follow(client: Client, run_id: int, level: Level | None) -> dict[str, Any]:
    with RunFollower(level) as follower:
        for name, data in client.events(run_id):
            follower.handle(name, data)
    assert follower.final is not None
    return follower.final


def _finish(client: Client, final: dict[str, Any]) -> None:
    console.print(summary(final), highlight=False)
    if final.get("status") == "succeeded":
        result = client.get(final["id"]).result
        if result is not None:
            print_json(result)
        return
    if final.get("error"):
        err_console.print(final["error"].strip().splitlines()[0], highlight=False, markup=False)
    raise typer.Exit(1)


def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following.")] = False,
    level: Annotated[
        str | None, typer.Option(help="Minimum level: debug/info/warning/error.")
    ] = None,
) -> None:
    """Print a run's output; -f follows it live until the run ends."""
    minimum = _level(level)
    with reported(), _client(ctx) as client:
        if follow:
            final = _follow(client, run_id, minimum)
            console.print(summary(final), highlight=False)
            return
        after = 0
        while True:
            page = client.logs(
                run_id, after=after, limit=5000, level=minimum.value if minimum else None
            )
            for line in page["lines"]:
                if wanted(line, minimum):
                    print_line(line)
            after = page["next_after"]
            if len(page["lines"]) < 5000:
                break
