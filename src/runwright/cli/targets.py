"""`runwright target ...` and `runwright credential ...`: the inventory over the REST API.

Secrets never travel on the command line: a password or passphrase comes from stdin
(or a prompt without echo on a terminal), a private key from a file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from runwright.cli.common import console, err_console, print_json, reported
from runwright.cli.runs import _client

target_app = typer.Typer(
    help="Targets: the hosts jobs run on, selected by tag.", no_args_is_help=True
)
credential_app = typer.Typer(
    help="Credentials that log in to targets; their secrets are never shown.",
    no_args_is_help=True,
)


def _path(kind: str, name: str) -> str:
    return f"/api/{kind}/{quote(name, safe='')}"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]Error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _tags(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text) if part]


def _shown_tags(tags: list[str]) -> str:
    return ", ".join(tags) if tags else "-"


def parse_vars(items: list[str] | None) -> dict[str, Any]:
    """``--var k=v``: values that parse as JSON keep their type (``rack=4`` is a number)."""
    found: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise _fail(f"--var {item!r} must look like name=value.")
        try:
            found[key.strip()] = json.loads(raw)
        except ValueError:
            found[key.strip()] = raw
    return found


# -- targets -------------------------------------------------------------------------------
def _host_key_state(target: dict[str, Any]) -> str:
    if target["host_key"]:
        return "pinned"
    if target["known_host_key"]:
        return "recorded"
    return "-"


@target_app.command("add")
def target_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="How jobs and people refer to it.")],
    address: Annotated[str, typer.Option(help="Host name or IP address.")],
    port: Annotated[int, typer.Option(help="SSH port.")] = 22,
    tags: Annotated[str, typer.Option(help="Comma-separated: web,prod.")] = "",
    driver: Annotated[str, typer.Option(help="ssh (a remote host) or local (the worker).")] = "ssh",
    var: Annotated[
        list[str] | None, typer.Option("--var", help="name=value for jobs; repeat.")
    ] = None,
    host_key: Annotated[
        str | None, typer.Option(help="Pin its public host key: 'ssh-ed25519 AAAA...'.")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it disabled.")] = False,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a target."""
    body = {
        "name": name,
        "address": address,
        "port": port,
        "driver": driver,
        "tags": _tags(tags),
        "vars": parse_vars(var),
        "enabled": not disabled,
        "host_key": host_key,
        "description": description,
    }
    with reported(), _client(ctx) as client:
        target = client.request("POST", "/api/targets", json=body)
    state = "" if target["enabled"] else " (disabled)"
    console.print(
        f"Added target [bold]{escape(target['name'])}[/]{state}: {target['address']}:"
        f"{target['port']} ({target['driver']}), tags {_shown_tags(target['tags'])}.",
        highlight=False,
    )
    if not target["tags"]:
        console.print(
            f"It has no tags, so no job selects it yet: `runwright target update {name} "
            "--tags TAG,...`.",
            highlight=False,
        )


@target_app.command("list")
def target_list(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="Only targets with this tag.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (importable).")] = False,
) -> None:
    """Targets with their address, tags and host key state."""
    with reported(), _client(ctx) as client:
        items = client.request("GET", "/api/targets", params={"tag": tag} if tag else {})
    if as_json:
        print_json(items)
        return
    if not items:
        if tag:
            console.print(f"No target has tag {tag}.", highlight=False)
        else:
            console.print(
                "No targets yet. Add one with `runwright target add NAME --address HOST --tags "
                "TAG`, or many with `runwright target import FILE`."
            )
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "ADDRESS", "PORT", "DRIVER", "TAGS", "ENABLED", "HOST KEY"):
        table.add_column(column, no_wrap=True)
    table.add_column("DESCRIPTION", overflow="fold")
    for item in items:
        table.add_row(
            escape(item["name"]),
            item["address"],
            str(item["port"]),
            item["driver"],
            ",".join(item["tags"]) or "-",
            "yes" if item["enabled"] else "[dim]no[/]",
            _host_key_state(item),
            escape(item["description"]),
        )
    console.print(table)


@target_app.command("show")
def target_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One target."""
    with reported(), _client(ctx) as client:
        t = client.request("GET", _path("targets", name))
    if as_json:
        print_json(t)
        return
    if t["host_key"]:
        key = f"pinned: {t['host_key']}"
    elif t["known_host_key"]:
        key = f"recorded on first use: {t['known_host_key']}"
    else:
        key = "none yet: the first successful connection records it"
    rows = [
        ("address", f"{t['address']}:{t['port']} ({t['driver']})"),
        ("tags", _shown_tags(t["tags"])),
        ("vars", json.dumps(t["vars"]) if t["vars"] else "-"),
        ("host key", key),
        ("description", t["description"] or "-"),
        ("created", str(t["created_at"])),
        ("updated", str(t["updated_at"])),
    ]
    state = "enabled" if t["enabled"] else "disabled"
    console.print(f"[bold]Target {escape(t['name'])}[/] ({state})", highlight=False)
    for label, value in rows:
        console.print(f"  {label:<12} {escape(value)}", highlight=False, soft_wrap=True)


@target_app.command("update")
def target_update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    address: Annotated[str | None, typer.Option(help="Host name or IP address.")] = None,
    port: Annotated[int | None, typer.Option()] = None,
    tags: Annotated[str | None, typer.Option(help="Replace the tags: web,prod.")] = None,
    driver: Annotated[str | None, typer.Option(help="ssh or local.")] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="Set name=value; repeat.")] = None,
    unset_var: Annotated[
        list[str] | None, typer.Option("--unset-var", help="Remove a var; repeat.")
    ] = None,
    host_key: Annotated[str | None, typer.Option(help="Pin this public host key.")] = None,
    no_host_key: Annotated[
        bool, typer.Option("--no-host-key", help="Remove the pinned host key.")
    ] = False,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a target: only the options given."""
    if host_key is not None and no_host_key:
        raise _fail("give --host-key or --no-host-key, not both.")
    body: dict[str, Any] = {
        key: value
        for key, value in {
            "address": address,
            "port": port,
            "driver": driver,
            "tags": None if tags is None else _tags(tags),
            "host_key": host_key,
            "enabled": enabled,
            "description": description,
        }.items()
        if value is not None
    }
    if no_host_key:
        body["host_key"] = None
    changes = parse_vars(var)
    if not body and not changes and not unset_var:
        raise _fail("nothing to change: give an option, see `runwright target update --help`.")
    with reported(), _client(ctx) as client:
        if changes or unset_var:
            current = client.request("GET", _path("targets", name))["vars"]
            missing = [key for key in unset_var or [] if key not in current]
            if missing:
                raise _fail(f"target {name} has no var {missing[0]!r}.", 1)
            merged = {k: v for k, v in current.items() if k not in (unset_var or [])}
            body["vars"] = {**merged, **changes}
        target = client.request("PATCH", _path("targets", name), json=body)
    console.print(
        f"Updated target [bold]{escape(target['name'])}[/]: {target['address']}:"
        f"{target['port']} ({target['driver']}), tags {_shown_tags(target['tags'])}"
        f"{'' if target['enabled'] else ', disabled'}.",
        highlight=False,
    )


@target_app.command("rm")
def target_rm(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a target (results of past runs on it stay)."""
    with reported(), _client(ctx) as client:
        client.request("DELETE", _path("targets", name))
    console.print(f"Removed target {escape(name)}.", highlight=False)


@target_app.command("forget-host-key")
def target_forget_host_key(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Forget the host key recorded on first use (after the host was rebuilt): the next
    successful connection records its new key."""
    with reported(), _client(ctx) as client:
        target = client.request("POST", _path("targets", name) + "/forget-host-key")
    console.print(
        f"Forgot the recorded host key of {escape(name)}; the next successful connection "
        "records the host's key again.",
        highlight=False,
    )
    if target["host_key"]:
        console.print(
            f"Its pinned host key still applies: change it with `runwright target update "
            f"{name} --host-key '...'` or remove it with --no-host-key.",
            highlight=False,
        )


IMPORT_STYLE = {"created": "green", "updated": "cyan", "refused": "red"}


@target_app.command("import")
def target_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .csv (with a header line) or .json file.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; store nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Create or update targets from a CSV or JSON file; report each row. Exit 1 when a
    row was refused (the others are stored)."""
    kinds = {".csv": "text/csv", ".json": "application/json"}
    content_type = kinds.get(file.suffix.lower())
    if content_type is None:
        raise _fail(f"{file} must end in .csv or .json, so its format is known.")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}.") from exc
    with reported(), _client(ctx) as client:
        report = client.request(
            "POST",
            "/api/targets/import",
            content=data,
            headers={"content-type": content_type},
            params={"dry_run": "true"} if dry_run else {},
        )
    if as_json:
        print_json(report)
    else:
        _print_report(report)
    if report["refused"]:
        raise typer.Exit(1)


def _print_report(report: dict[str, Any]) -> None:
    rows = report["rows"]
    if rows:
        table = Table(box=None, header_style="bold")
        for column in ("ROW", "NAME", "RESULT"):
            table.add_column(column, no_wrap=True)
        table.add_column("REASON", overflow="fold")
        for row in rows:
            style = IMPORT_STYLE.get(row["status"], "white")
            status = row["status"]
            if report["dry_run"] and status != "refused":
                status = {"created": "would create", "updated": "would update"}[status]
            table.add_row(
                str(row["row"]),
                escape(row["name"] or "-"),
                f"[{style}]{status}[/]",
                escape(row["error"] or ""),
            )
        console.print(table)
    counts = (
        f"{report['created']} created, {report['updated']} updated, {report['refused']} refused"
    )
    if report["dry_run"]:
        console.print(f"Dry run, nothing stored: {counts}.", highlight=False)
    else:
        console.print(f"Imported: {counts}.", highlight=False)
    if report["refused"]:
        err_console.print(
            f"[red]{report['refused']} row(s) refused[/]: fix them and import the file again "
            "(targets already stored are updated, not duplicated).",
            highlight=False,
        )


# -- credentials ---------------------------------------------------------------------------
def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _read_secret(what: str, *, confirm: bool) -> str:
    """A secret from stdin, or from a prompt without echo on a terminal."""
    if _stdin_is_tty():
        value: str = typer.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm)
    else:
        value = sys.stdin.read().rstrip("\r\n")
    if not value:
        raise _fail(f"the {what} is empty.")
    return value


def _secret_body(
    password_stdin: bool, key_file: Path | None, passphrase_stdin: bool, *, required: bool
) -> dict[str, str]:
    if password_stdin and key_file is not None:
        raise _fail("give --password-stdin or --key-file, not both.")
    if passphrase_stdin and key_file is None:
        raise _fail("--passphrase-stdin goes with --key-file (the key it decrypts).")
    if key_file is not None:
        try:
            body = {"private_key": key_file.read_text()}
        except (OSError, UnicodeError) as exc:
            raise _fail(f"cannot read the key file {key_file}: {exc}.") from exc
        if passphrase_stdin:
            body["passphrase"] = _read_secret("passphrase", confirm=False)
        return body
    if password_stdin:
        return {"password": _read_secret("password", confirm=True)}
    if required:
        if _stdin_is_tty():
            return {"password": _read_secret("password", confirm=True)}
        raise _fail(
            "give the secret: --password-stdin (the password on stdin, e.g. from a password "
            "manager) or --key-file FILE (a private key)."
        )
    return {}


def _rate(item: dict[str, Any]) -> str:
    rate = item["success_rate"]
    return "-" if rate is None else f"{100 * rate:.0f}%"


PASSWORD_STDIN = typer.Option(
    "--password-stdin", help="Read the password from stdin (a prompt on a terminal)."
)
KEY_FILE = typer.Option("--key-file", help="A private key file (OpenSSH, PKCS#1 or PKCS#8).")
PASSPHRASE_STDIN = typer.Option(
    "--passphrase-stdin", help="Read the key's passphrase from stdin (a prompt on a terminal)."
)


@credential_app.command("add")
def credential_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    username: Annotated[str, typer.Option(help="The account to log in as.")],
    password_stdin: Annotated[bool, PASSWORD_STDIN] = False,
    key_file: Annotated[Path | None, KEY_FILE] = None,
    passphrase_stdin: Annotated[bool, PASSPHRASE_STDIN] = False,
    priority: Annotated[int, typer.Option(help="Lower is tried first.")] = 100,
    tags: Annotated[str, typer.Option(help="Used on targets sharing a tag: web,prod.")] = "",
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a credential. Without --password-stdin or --key-file, a terminal prompts for
    the password (no echo)."""
    body: dict[str, Any] = {
        "name": name,
        "username": username,
        "priority": priority,
        "tags": _tags(tags),
        "description": description,
        **_secret_body(password_stdin, key_file, passphrase_stdin, required=True),
    }
    with reported(), _client(ctx) as client:
        c = client.request("POST", "/api/credentials", json=body)
    console.print(
        f"Added credential [bold]{escape(c['name'])}[/]: user {escape(c['username'])}, "
        f"{c['kind']}, priority {c['priority']}, tags {_shown_tags(c['tags'])}. Its secret is "
        "encrypted at rest and never shown.",
        highlight=False,
    )
    if not c["tags"]:
        console.print(
            f"It has no tags, so no target uses it yet: `runwright credential update {name} "
            "--tags TAG,...`.",
            highlight=False,
        )


@credential_app.command("list")
def credential_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Credentials in the order they are tried (priority, then name), with their use."""
    with reported(), _client(ctx) as client:
        items = client.request("GET", "/api/credentials")
    items.sort(key=lambda c: (c["priority"], c["name"]))
    if as_json:
        print_json(items)
        return
    if not items:
        console.print(
            "No credentials yet. Add one with `runwright credential add NAME --username USER "
            "--password-stdin --tags TAG`."
        )
        return
    table = Table(box=None, header_style="bold")
    columns = ("NAME", "USERNAME", "KIND", "PRIORITY", "TAGS", "LAST USED", "OK", "FAILED")
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("RATE", no_wrap=True, justify="right")
    table.add_column("DESCRIPTION", overflow="fold")
    for item in items:
        table.add_row(
            escape(item["name"]),
            escape(item["username"]),
            item["kind"],
            str(item["priority"]),
            ",".join(item["tags"]) or "-",
            _iso(item["last_used_at"]),
            str(item["successes"]),
            str(item["failures"]),
            _rate(item),
            escape(item["description"]),
        )
    console.print(table)


def _iso(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")


@credential_app.command("show")
def credential_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One credential and its use (never its secret)."""
    with reported(), _client(ctx) as client:
        c = client.request("GET", _path("credentials", name))
    if as_json:
        print_json(c)
        return
    kind = "password" if c["kind"] == "password" else "private key"
    rows = [
        ("username", c["username"]),
        ("secret", f"{kind} (encrypted; never shown)"),
        ("priority", f"{c['priority']} (lower is tried first)"),
        ("tags", _shown_tags(c["tags"])),
        ("description", c["description"] or "-"),
        ("last used", _iso(c["last_used_at"])),
        ("logins", f"{c['successes']} worked, {c['failures']} refused ({_rate(c)} success)"),
        ("created", _iso(c["created_at"])),
        ("updated", _iso(c["updated_at"])),
    ]
    console.print(f"[bold]Credential {escape(c['name'])}[/]", highlight=False)
    for label, value in rows:
        console.print(f"  {label:<12} {escape(value)}", highlight=False, soft_wrap=True)


@credential_app.command("update")
def credential_update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    username: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[bool, PASSWORD_STDIN] = False,
    key_file: Annotated[Path | None, KEY_FILE] = None,
    passphrase_stdin: Annotated[bool, PASSPHRASE_STDIN] = False,
    priority: Annotated[int | None, typer.Option(help="Lower is tried first.")] = None,
    tags: Annotated[str | None, typer.Option(help="Replace the tags: web,prod.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a credential: only the options given. --password-stdin or --key-file
    replaces its secret."""
    body: dict[str, Any] = {
        key: value
        for key, value in {
            "username": username,
            "priority": priority,
            "tags": None if tags is None else _tags(tags),
            "description": description,
        }.items()
        if value is not None
    }
    body.update(_secret_body(password_stdin, key_file, passphrase_stdin, required=False))
    if not body:
        raise _fail("nothing to change: give an option, see `runwright credential update --help`.")
    with reported(), _client(ctx) as client:
        c = client.request("PATCH", _path("credentials", name), json=body)
    replaced = " Its secret was replaced." if {"password", "private_key"} & set(body) else ""
    console.print(
        f"Updated credential [bold]{escape(c['name'])}[/]: user {escape(c['username'])}, "
        f"{c['kind']}, priority {c['priority']}, tags {_shown_tags(c['tags'])}.{replaced}",
        highlight=False,
    )


@credential_app.command("rm")
def credential_rm(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a credential."""
    with reported(), _client(ctx) as client:
        client.request("DELETE", _path("credentials", name))
    console.print(f"Removed credential {escape(name)}.", highlight=False)
