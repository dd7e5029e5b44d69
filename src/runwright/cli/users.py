"""`runwright user ...` and `runwright token ...`: who may use runwright (admins).

Both go through the API with the caller's token (the local CLI's is the admin token the
server wrote to RUNWRIGHT_HOME/token on its first start).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from runwright.cli.common import console, err_console, print_json, reported
from runwright.cli.runs import _client
from runwright.cli.targets import _path

user_app = typer.Typer(
    help="People who sign in to the web UI, and their roles.", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens: `Authorization: Bearer TOKEN`.", no_args_is_help=True)

ROLE_HELP = "viewer (read only), operator (deploy, run, cancel; triggers) or admin (everything)."


def _when(value: str | None) -> str:
    return value.replace("T", " ")[:19] if value else "never"


def _password(stdin: bool) -> str | None:
    """From stdin, a prompt on a terminal, or None: the server generates one."""
    if stdin:
        value = sys.stdin.read().rstrip("\r\n")
        if not value:
            err_console.print("[red]Error:[/] --password-stdin read nothing from stdin.")
            raise typer.Exit(2)
        return value
    if sys.stdin.isatty():
        entered: str = typer.prompt(
            "Password (empty: generate one)",
            hide_input=True,
            default="",
            show_default=False,
        )
        if entered:
            again: str = typer.prompt("Repeat it", hide_input=True)
            if again != entered:
                err_console.print("[red]Error:[/] the two passwords differ; nothing was changed.")
                raise typer.Exit(2)
            return entered
    return None


# -- users ---------------------------------------------------------------------------------
@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The name to sign in with.")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Add a user. The password is prompted for, read with --password-stdin, or, when
    left empty, generated and printed once."""
    password = _password(password_stdin)
    body: dict[str, Any] = {"name": name, "role": role}
    if password is not None:
        body["password"] = password
    with reported(), _client(ctx) as client:
        user = client.request("POST", "/api/users", json=body)
    console.print(f"Added user [bold]{escape(user['name'])}[/] ({user['role']}).", highlight=False)
    if user.get("generated_password"):
        console.print(
            f"Password (shown this once; they can change it later): {user['generated_password']}",
            highlight=False,
            soft_wrap=True,
        )


@user_app.command("list")
def user_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Users with their role and last sign-in."""
    with reported(), _client(ctx) as client:
        users = client.request("GET", "/api/users")
    if as_json:
        print_json(users)
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "ROLE", "STATE", "PASSWORD", "LAST SIGN-IN"):
        table.add_column(column, no_wrap=True)
    for user in users:
        table.add_row(
            escape(user["name"]),
            user["role"],
            "disabled" if user["disabled"] else "enabled",
            "set" if user["has_password"] else "link only",
            _when(user["last_sign_in_at"]),
        )
    console.print(table)


@user_app.command("update")
def user_update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    role: Annotated[str | None, typer.Option(help=ROLE_HELP)] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="A new password, from stdin.")
    ] = False,
    disable: Annotated[bool, typer.Option("--disable", help="Refuse their sign-ins.")] = False,
    enable: Annotated[bool, typer.Option("--enable", help="Allow their sign-ins again.")] = False,
) -> None:
    """Change a user's role, password or state: only what is given."""
    body: dict[str, Any] = {}
    if role is not None:
        body["role"] = role
    if password_stdin:
        body["password"] = _password(True)
    if disable or enable:
        body["disabled"] = disable
    if not body:
        err_console.print("[red]Error:[/] give --role, --password-stdin, --disable or --enable.")
        raise typer.Exit(2)
    with reported(), _client(ctx) as client:
        user = client.request("PATCH", _path("users", name), json=body)
    state = "disabled" if user["disabled"] else "enabled"
    console.print(f"User {escape(user['name'])}: {user['role']}, {state}.", highlight=False)


@user_app.command("rm")
def user_rm(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a user (their sessions end; the audit log keeps their actions)."""
    with reported(), _client(ctx) as client:
        client.request("DELETE", _path("users", name))
    console.print(f"Removed user {escape(name)}.", highlight=False)


@user_app.command("link")
def user_link(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Print a link that signs the user in once, within 15 minutes."""
    with reported(), _client(ctx) as client:
        answer = client.request("POST", _path("users", name) + "/sign-in-link")
    console.print(answer["url"], highlight=False, soft_wrap=True)


# -- tokens --------------------------------------------------------------------------------
@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the token is for, e.g. ci-deploy.")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "viewer",
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    with reported(), _client(ctx) as client:
        token = client.request("POST", "/api/tokens", json={"name": name, "role": role})
    err_console.print(
        f"Created token {escape(token['name'])} ({token['role']}). Copy it now: it is not "
        "shown again. Use it as `Authorization: Bearer TOKEN` or RUNWRIGHT_TOKEN.",
        highlight=False,
        soft_wrap=True,
    )
    print(token["token"])  # alone on stdout: `TOKEN=$(runwright token create ...)`


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tokens with their role and last use (never the secret)."""
    with reported(), _client(ctx) as client:
        tokens = client.request("GET", "/api/tokens")
    if as_json:
        print_json(tokens)
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "ROLE", "PREFIX", "STATE", "CREATED BY", "LAST USED"):
        table.add_column(column, no_wrap=True)
    for token in tokens:
        table.add_row(
            escape(token["name"]),
            token["role"],
            token["prefix"] + "…",
            "revoked" if token["revoked"] else "active",
            escape(token["created_by"] or ""),
            _when(token["last_used_at"]),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token: requests with it are refused from now on."""
    with reported(), _client(ctx) as client:
        client.request("DELETE", _path("tokens", name))
    console.print(f"Revoked token {escape(name)}.", highlight=False)
