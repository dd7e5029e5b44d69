"""`runwright secrets rotate-key`: re-encrypt every stored secret with a new key. It runs
here, against RUNWRIGHT_DATABASE_URL, like `runwright db upgrade`: not through the API."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from runwright.cli.common import console, err_console, reported, settings_from

if TYPE_CHECKING:
    from runwright.db.secrets import Rewritten

secrets_app = typer.Typer(help="The key that encrypts secrets at rest.", no_args_is_help=True)


def _counted(done: Rewritten) -> str:
    def n(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    return (
        f"{n(done.credentials, 'credential', 'credentials')}, "
        f"{n(done.variables, 'sensitive variable', 'sensitive variables')} and "
        f"{n(done.webhooks, 'webhook signing secret', 'webhook signing secrets')}"
    )


@secrets_app.command("rotate-key")
def rotate(
    ctx: typer.Context,
    new_key_stdin: Annotated[
        bool,
        typer.Option(
            "--new-key-stdin", help="Read the new Fernet key from stdin instead of generating one."
        ),
    ] = False,
) -> None:
    """Re-encrypt every credential, sensitive variable and webhook signing secret with a
    new key in one transaction, then make it the key that encrypts."""
    from runwright.db.engine import create_engine
    from runwright.db.schema import ensure_schema
    from runwright.services.secrets import rotate_key

    settings = settings_from(ctx)
    given = sys.stdin.read().strip() if new_key_stdin else None
    if new_key_stdin and not given:
        err_console.print("[red]Error:[/] --new-key-stdin read nothing from stdin.")
        raise typer.Exit(2)
    with reported():
        engine = create_engine(settings.effective_database_url)
        try:
            ensure_schema(engine, create_if_empty=False)
            done = rotate_key(settings, engine, given)
        finally:
            engine.dispose()
    what = _counted(done.rewritten)
    if done.same_key:
        where = done.key_file or "RUNWRIGHT_SECRET_KEY"
        console.print(
            f"Re-encrypted {what} with the key that comes first in {where}. The keys after "
            "it are no longer needed"
            + (
                " and were removed from the file."
                if done.key_file
                else ": set RUNWRIGHT_SECRET_KEY to that key alone everywhere."
            ),
            highlight=False,
        )
        return
    if done.key_file is not None:
        console.print(
            f"Re-encrypted {what} with a new key, now the first line of {done.key_file}. "
            "The previous key stays on its second line, for decryption only, until the next "
            "rotation. Servers and workers using this file read the new key by themselves.",
            highlight=False,
        )
        return
    err_console.print(f"Re-encrypted {what} with a new key.", highlight=False)
    if done.new_key is not None:
        err_console.print("The new key, shown only now (stdout):", highlight=False)
        typer.echo(done.new_key)
    err_console.print(
        "Next: on every server, worker and scheduler set RUNWRIGHT_SECRET_KEY to the new key, "
        "a comma and the current value (NEW,OLD), and restart them: until a process restarts "
        "it cannot decrypt these secrets. To drop the old key later, run this command again "
        "with RUNWRIGHT_SECRET_KEY=NEW,OLD and the new key on stdin (--new-key-stdin), then "
        "set RUNWRIGHT_SECRET_KEY=NEW everywhere.",
        highlight=False,
        soft_wrap=True,
    )
