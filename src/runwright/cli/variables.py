"""`runwright var ...`: variables that step references read as {{ variables.NAME }}."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from runwright.cli.common import console, err_console, parse_json, print_json, reported, when
from runwright.cli.runs import _client

var_app = typer.Typer(
    help="Variables for step references ({{ variables.NAME }}), global or per job.",
    no_args_is_help=True,
)


@var_app.command("set")
def set_variable(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Letters, digits and '_'.")],
    value: Annotated[
        str | None, typer.Argument(help="The value; omit it with --stdin (for secrets).")
    ] = None,
    job: Annotated[str | None, typer.Option(help="Only for this job (wins over global).")] = None,
    sensitive: Annotated[
        bool, typer.Option(help="Encrypt at rest, never show, mask in logs and contexts.")
    ] = False,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the value from stdin.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="The value is JSON (a number, list, object).")
    ] = False,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
) -> None:
    """Create or replace a variable."""
    if stdin:
        if value is not None:
            err_console.print(
                "[red]Error:[/] give the value as an argument or with --stdin, not both."
            )
            raise typer.Exit(2)
        value = sys.stdin.read().rstrip("\n")
    if value is None:
        err_console.print(
            "[red]Error:[/] missing VALUE. Give it as an argument, or with --stdin for a secret:"
            f" echo -n '...' | runwright var set {name} --stdin --sensitive"
        )
        raise typer.Exit(2)
    parsed = parse_json(value, "VALUE") if as_json else value
    body = {"value": parsed, "sensitive": sensitive, "description": description, "job": job}
    with reported(), _client(ctx) as client:
        client.request("PUT", f"/api/variables/{name}", json=body)
    scope = f"job {job}" if job else "global"
    kind = "sensitive " if sensitive else ""
    console.print(
        f"Set {kind}{scope} variable [bold]{name}[/]; steps read it as {{{{ variables.{name} }}}}.",
        highlight=False,
    )


@var_app.command("list")
def list_variables(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option(help="What this job sees.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Variables (sensitive values are never shown)."""
    params = {"job": job} if job else {}
    with reported(), _client(ctx) as client:
        items = client.request("GET", "/api/variables", params=params)
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("No variables yet. Set one with `runwright var set NAME VALUE`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "SCOPE", "VALUE", "UPDATED", "DESCRIPTION"):
        table.add_column(column, overflow="fold")
    for item in items:
        shown = "[dim]******** (sensitive)[/]" if item["sensitive"] else repr(item["value"])
        table.add_row(
            item["name"],
            f"job {item['job']}" if item["job"] else "global",
            shown,
            when(item["updated_at"]),
            item["description"],
        )
    console.print(table)


@var_app.command("rm")
def remove_variable(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    job: Annotated[str | None, typer.Option(help="The job it belongs to.")] = None,
) -> None:
    """Delete a variable."""
    params = {"job": job} if job else {}
    with reported(), _client(ctx) as client:
        client.request("DELETE", f"/api/variables/{name}", params=params)
    console.print(f"Deleted variable {name}" + (f" of job {job}." if job else "."))
