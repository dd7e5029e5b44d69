"""`runwright schedule ...`, `runwright webhook ...` and `runwright notify ...`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from runwright.cli.common import console, err_console, print_json, reported
from runwright.cli.jobs import parse_params
from runwright.cli.runs import _client

schedule_app = typer.Typer(help="Cron schedules of jobs.", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhook URLs that start jobs.", no_args_is_help=True)
notify_app = typer.Typer(
    help="Notifications when runs fail, succeed or recover.", no_args_is_help=True
)


def _iso(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")


# -- schedules -----------------------------------------------------------------------
@schedule_app.command("add")
def schedule_add(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The job to run.")],
    cron: Annotated[str, typer.Argument(help="'30 6 * * 1-5'; 6 fields: seconds first.")],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone.")] = "UTC",
    param: Annotated[list[str] | None, typer.Option("-p", "--param", help="name=value")] = None,
    env: Annotated[str | None, typer.Option(help="Environment of the runs.")] = None,
    start: Annotated[str | None, typer.Option(help="Not before (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option(help="Not after (ISO 8601).")] = None,
    misfire: Annotated[str, typer.Option(help="skip or catch_up (after downtime).")] = "skip",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a schedule: JOB runs at every CRON time in the time zone."""
    body = {
        "cron": cron,
        "timezone": tz,
        "params": parse_params(param),
        "environment": env,
        "start_at": start,
        "end_at": end,
        "misfire": misfire,
        "enabled": not disabled,
        "description": description,
    }
    with reported(), _client(ctx) as client:
        schedule = client.request("POST", f"/api/jobs/{job}/schedules", json=body)
        upcoming = client.request("GET", f"/api/schedules/{schedule['id']}/next")
    console.print(
        f"Added schedule [bold]{schedule['id']}[/] to job {job}: {schedule['cron']} ({tz}).",
        highlight=False,
    )
    for fire in upcoming["fires"][:3]:
        console.print(f"  next: {fire}", highlight=False)


@schedule_app.command("list")
def schedule_list(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option(help="Only this job's.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Schedules with their next fire time."""
    with reported(), _client(ctx) as client:
        items = client.request("GET", "/api/schedules", params={"job": job} if job else {})
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("No schedules. Add one with `runwright schedule add JOB 'CRON' --tz ZONE`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "JOB", "CRON", "ZONE", "ENABLED", "NEXT (UTC)", "LAST RUN", "MISFIRE"):
        table.add_column(column)
    for item in items:
        table.add_row(
            str(item["id"]),
            item["job"],
            item["cron"],
            item["timezone"],
            "yes" if item["enabled"] else "[dim]no[/]",
            _iso(item["next_fire_at"]),
            str(item["last_run_id"] or "-"),
            item["misfire"],
        )
    console.print(table)


@schedule_app.command("next")
def schedule_next(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A job name or a schedule id.")],
    count: Annotated[int, typer.Option(min=1, max=100)] = 5,
) -> None:
    """The next fire times, in each schedule's own time zone."""
    with reported(), _client(ctx) as client:
        if target.isdigit():
            ids = [int(target)]
        else:
            ids = [s["id"] for s in client.request("GET", "/api/schedules", params={"job": target})]
            if not ids:
                err_console.print(f"[red]Error:[/] job {target} has no schedules.")
                raise typer.Exit(1)
        for schedule_id in ids:
            schedule = client.request("GET", f"/api/schedules/{schedule_id}")
            upcoming = client.request(
                "GET", f"/api/schedules/{schedule_id}/next", params={"count": count}
            )
            state = "" if schedule["enabled"] else " (disabled)"
            console.print(
                f"[bold]Schedule {schedule_id}[/] {schedule['cron']} in {upcoming['timezone']}"
                f"{state}:",
                highlight=False,
            )
            for fire in upcoming["fires"]:
                console.print(f"  {fire}", highlight=False)


def _toggle(ctx: typer.Context, schedule_id: int, action: str) -> None:
    with reported(), _client(ctx) as client:
        client.request("POST", f"/api/schedules/{schedule_id}/{action}")
    console.print(f"Schedule {schedule_id} {action}d.")


@schedule_app.command("enable")
def schedule_enable(ctx: typer.Context, schedule_id: int) -> None:
    """Enable a schedule (it fires from its next fire time on; nothing is caught up)."""
    _toggle(ctx, schedule_id, "enable")


@schedule_app.command("disable")
def schedule_disable(ctx: typer.Context, schedule_id: int) -> None:
    """Stop a schedule from firing."""
    _toggle(ctx, schedule_id, "disable")


@schedule_app.command("rm")
def schedule_rm(ctx: typer.Context, schedule_id: int) -> None:
    """Delete a schedule (its runs stay)."""
    with reported(), _client(ctx) as client:
        client.request("DELETE", f"/api/schedules/{schedule_id}")
    console.print(f"Deleted schedule {schedule_id}.")


@schedule_app.command("history")
def schedule_history(
    ctx: typer.Context, schedule_id: int, limit: Annotated[int, typer.Option()] = 20
) -> None:
    """Recent fire times: started, skipped (concurrency) or failed, with the reason."""
    with reported(), _client(ctx) as client:
        fires = client.request(
            "GET", f"/api/schedules/{schedule_id}/fires", params={"limit": limit}
        )
    table = Table(box=None, header_style="bold")
    for column in ("FIRE TIME (UTC)", "STATUS", "RUN", "REASON"):
        table.add_column(column, overflow="fold")
    for fire in fires:
        table.add_row(
            _iso(fire["fire_time"]),
            fire["status"],
            str(fire["run_id"] or "-"),
            fire["reason"] or "",
        )
    console.print(table)


# -- webhooks ------------------------------------------------------------------------
def _show_issued(issued: dict[str, Any]) -> None:
    console.print(f"Webhook [bold]{issued['webhook']['id']}[/] of job {issued['webhook']['job']}.")
    console.print("URL (shown once; keep it secret):", highlight=False)
    typer.echo(f"  {issued['url']}")
    if issued.get("secret"):
        console.print("Signing secret (shown once):", highlight=False)
        typer.echo(f"  {issued['secret']}")
        console.print(
            "Sign each call: X-Runwright-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
            "'<t>.<body>'>",
            highlight=False,
        )


@webhook_app.command("create")
def webhook_create(
    ctx: typer.Context,
    job: str,
    sign: Annotated[bool, typer.Option("--sign", help="Require HMAC-SHA256 signatures.")] = False,
    rate_limit: Annotated[int, typer.Option(help="Calls per minute.")] = 60,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """A URL that starts JOB when called (GET or POST); printed once."""
    body = {"signed": sign, "rate_limit": rate_limit, "description": description}
    with reported(), _client(ctx) as client:
        issued = client.request("POST", f"/api/jobs/{job}/webhooks", json=body)
    _show_issued(issued)


@webhook_app.command("list")
def webhook_list(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Webhooks (tokens are never shown again: only their first characters)."""
    with reported(), _client(ctx) as client:
        items = client.request("GET", "/api/webhooks", params={"job": job} if job else {})
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("No webhooks. Create one with `runwright webhook create JOB`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "JOB", "TOKEN", "SIGNED", "ENABLED", "LIMIT/MIN", "LAST CALL"):
        table.add_column(column)
    for item in items:
        table.add_row(
            str(item["id"]),
            item["job"],
            item["token_hint"] + "…",
            "yes" if item["signed"] else "no",
            "yes" if item["enabled"] else "[dim]no[/]",
            str(item["rate_limit"]),
            _iso(item["last_called_at"]),
        )
    console.print(table)


@webhook_app.command("regenerate")
def webhook_regenerate(ctx: typer.Context, webhook_id: int) -> None:
    """A new URL (and secret); the old one stops working at once."""
    with reported(), _client(ctx) as client:
        issued = client.request("POST", f"/api/webhooks/{webhook_id}/regenerate")
    _show_issued(issued)


@webhook_app.command("enable")
def webhook_enable(ctx: typer.Context, webhook_id: int) -> None:
    with reported(), _client(ctx) as client:
        client.request("POST", f"/api/webhooks/{webhook_id}/enable")
    console.print(f"Webhook {webhook_id} enabled.")


@webhook_app.command("disable")
def webhook_disable(ctx: typer.Context, webhook_id: int) -> None:
    """Calls are answered 403 until it is enabled again."""
    with reported(), _client(ctx) as client:
        client.request("POST", f"/api/webhooks/{webhook_id}/disable")
    console.print(f"Webhook {webhook_id} disabled; calls are refused with 403.")


@webhook_app.command("rm")
def webhook_rm(ctx: typer.Context, webhook_id: int) -> None:
    with reported(), _client(ctx) as client:
        client.request("DELETE", f"/api/webhooks/{webhook_id}")
    console.print(f"Deleted webhook {webhook_id}.")


@webhook_app.command("history")
def webhook_history(
    ctx: typer.Context, webhook_id: int, limit: Annotated[int, typer.Option()] = 20
) -> None:
    """The last calls: time, source address, status and run."""
    with reported(), _client(ctx) as client:
        calls = client.request("GET", f"/api/webhooks/{webhook_id}/calls", params={"limit": limit})
    if not calls:
        console.print("No calls yet.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("TIME (UTC)", "FROM", "METHOD", "STATUS", "RUN", "ERROR"):
        table.add_column(column, overflow="fold")
    for call in calls:
        table.add_row(
            _iso(call["received_at"]),
            call["source"] or "-",
            call["method"],
            str(call["status_code"]),
            str(call["run_id"] or "-"),
            call["error"] or "",
        )
    console.print(table)


# -- notifications --------------------------------------------------------------------
@notify_app.command("add")
def notify_add(
    ctx: typer.Context,
    job: str,
    on: Annotated[str, typer.Option(help="failure, success, recovery or failures.")],
    url: Annotated[str | None, typer.Option(help="Webhook URL (JSON, Slack-compatible).")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address (RUNWRIGHT_SMTP_*).")] = None,
    after: Annotated[int, typer.Option(help="For --on failures: N in a row.")] = 1,
) -> None:
    """Notify when JOB's runs fail, succeed, recover, or fail N times in a row."""
    if (url is None) == (email is None):
        err_console.print("[red]Error:[/] give exactly one of --url or --email.")
        raise typer.Exit(2)
    body = {
        "event": on,
        "channel": "webhook" if url else "email",
        "target": url or email,
        "threshold": after,
    }
    with reported(), _client(ctx) as client:
        rule = client.request("POST", f"/api/jobs/{job}/notifications", json=body)
    console.print(f"Added notification rule {rule['id']}: {on} of {job} -> {rule['target']}.")


@notify_app.command("list")
def notify_list(ctx: typer.Context, job: Annotated[str | None, typer.Option()] = None) -> None:
    with reported(), _client(ctx) as client:
        rules = client.request("GET", "/api/notifications", params={"job": job} if job else {})
    if not rules:
        console.print(
            "No notification rules. Add one with `runwright notify add JOB --on failure --url URL`."
        )
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "JOB", "ON", "CHANNEL", "TARGET"):
        table.add_column(column, overflow="fold")
    for rule in rules:
        event = rule["event"] + (f" x{rule['threshold']}" if rule["event"] == "failures" else "")
        table.add_row(str(rule["id"]), rule["job"], event, rule["channel"], rule["target"])
    console.print(table)


@notify_app.command("rm")
def notify_rm(ctx: typer.Context, rule_id: int) -> None:
    with reported(), _client(ctx) as client:
        client.request("DELETE", f"/api/notifications/{rule_id}")
    console.print(f"Deleted notification rule {rule_id}.")


@notify_app.command("deliveries")
def notify_deliveries(ctx: typer.Context, rule_id: int) -> None:
    """What was sent for a rule, and what failed (with the error)."""
    with reported(), _client(ctx) as client:
        items = client.request("GET", f"/api/notifications/{rule_id}/deliveries")
    table = Table(box=None, header_style="bold")
    for column in ("RUN", "EVENT", "STATUS", "ATTEMPTS", "SENT (UTC)", "LAST ERROR"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            str(item["run_id"]),
            item["event"],
            item["status"],
            str(item["attempts"]),
            _iso(item["sent_at"]),
            item["last_error"] or "",
        )
    console.print(table)
