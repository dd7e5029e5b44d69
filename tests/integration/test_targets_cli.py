"""`runwright target`, `credential` and `secrets rotate-key`: the Typer app invoked in
this process (click's runner: stdin, stdout and stderr are captured) against a real HTTP
server (uvicorn in a thread) on SQLite and PostgreSQL. And the canary: a password that
must appear in no API answer, no CLI output, no log record and no database table."""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest
import sqlalchemy as sa
import typer.main
import typer.testing
import uvicorn
from click.testing import Result
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from runwright.api.app import create_app
from runwright.cli import common
from runwright.cli import targets as targets_cli
from runwright.cli.main import app
from runwright.config import Settings
from runwright.db.tables import credentials, metadata
from runwright.model.targets import SecretPart
from runwright.services.runtime import Runtime
from runwright.services.secrets import KEY_FILE, SecretBox
from tests.helpers import admin_headers, make_registry, wait_until
from tests.s3server import free_port

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
PUBLIC = HOST_KEY.export_public_key().decode().strip()
USER_KEY = asyncssh.generate_private_key("ssh-ed25519")
PLAIN_KEY = USER_KEY.export_private_key().decode()
LOCKED_KEY = USER_KEY.export_private_key("pkcs8-pem", passphrase="open sesame").decode()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, registry=make_registry())
    yield rt
    rt.close()


@pytest.fixture
def url(runtime: Runtime) -> Iterator[str]:
    """The REST API of ``runtime`` on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(runtime),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-api", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="the API server")
        assert server.started, "the API server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@functools.cache
def _command(_app: Any) -> Any:
    return typer.main.get_command(app)


@pytest.fixture(autouse=True)
def cli_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tables as wide as a real terminal would show them (the consoles are built once),
    and the click command built once: typer's runner would build it again (0.5 s) for
    every invocation."""
    monkeypatch.setattr(typer.testing, "_get_command", _command)
    saved = (common.console.width, common.err_console.width)
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


class Cli:
    def __init__(self, url: str, home: Path, **env: str) -> None:
        self.url = url
        self.env: dict[str, str | None] = {
            "RUNWRIGHT_HOME": str(home),
            "RUNWRIGHT_URL": url,
            "RUNWRIGHT_TOKEN": None,
            "RUNWRIGHT_SECRET_KEY": None,
            "RUNWRIGHT_DATABASE_URL": None,
            **env,
        }
        self.outputs: list[str] = []

    @functools.cached_property
    def http(self) -> httpx.Client:
        token = self.env.get("RUNWRIGHT_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # One client: one SSL context (90 ms each).
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Result:
        result = CliRunner().invoke(app, list(args), input=input, env=self.env)
        self.outputs.append(result.stdout + result.stderr)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


@pytest.fixture
def cli(url: str, runtime: Runtime, tmp_path: Path) -> Iterator[Cli]:
    token = admin_headers(runtime)["Authorization"].removeprefix("Bearer ")
    runner = Cli(url, tmp_path / "cli-home", RUNWRIGHT_TOKEN=token)
    yield runner
    if "http" in vars(runner):
        runner.http.close()


def one_line(text: str) -> str:
    return " ".join(text.split())


def row(table: str, first: str) -> list[str]:
    for line in table.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{table}")


# -- targets -------------------------------------------------------------------------------------
def test_target_add_list_show_update_forget_and_rm(cli: Cli) -> None:
    added = cli(
        "target", "add", "web-1", "--address", "10.0.0.5", "--port", "2222",
        "--tags", "web,prod", "--var", "rack=4", "--var", "note=hello world",
        "--host-key", PUBLIC, "--description", "front end",
    )  # fmt: skip
    assert "Added target web-1: 10.0.0.5:2222 (ssh), tags web, prod." in added.stdout
    bare = cli("target", "add", "db-1", "--address", "db.lan", "--driver", "local", "--disabled")
    assert "Added target db-1 (disabled): db.lan:22 (local), tags -." in bare.stdout
    assert "It has no tags, so no job selects it yet: `runwright target update db-1" in (
        one_line(bare.stdout)
    )
    taken = cli("target", "add", "web-1", "--address", "x", code=1)
    assert "Error: Target 'web-1' already exists; change it with `runwright target update" in (
        one_line(taken.stderr)
    )
    assert "port 70000 is not valid" in cli("target", "add", "x", "--address", "x", "--port",
                                            "70000", code=1).stderr  # fmt: skip
    assert (
        "--var 'rack' must look like name=value."
        in cli("target", "add", "x", "--address", "x", "--var", "rack", code=2).stderr
    )

    table = cli("target", "list").stdout
    assert table.split("\n")[0].split() == [
        "NAME", "ADDRESS", "PORT", "DRIVER", "TAGS", "ENABLED", "HOST", "KEY", "DESCRIPTION",
    ]  # fmt: skip
    assert row(table, "web-1") == [
        "web-1", "10.0.0.5", "2222", "ssh", "web,prod", "yes", "pinned", "front", "end",
    ]  # fmt: skip
    assert row(table, "db-1") == ["db-1", "db.lan", "22", "local", "-", "no", "-"]
    assert "db-1" not in cli("target", "list", "--tag", "web").stdout
    assert "No target has tag nothing." in cli("target", "list", "--tag", "nothing").stdout
    listed = json.loads(cli("target", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["db-1", "web-1"]
    assert listed[1]["vars"] == {"rack": 4, "note": "hello world"}

    shown = cli("target", "show", "web-1").stdout
    assert shown.splitlines()[0] == "Target web-1 (enabled)"
    assert "  address      10.0.0.5:2222 (ssh)" in shown
    assert "  tags         web, prod" in shown
    (vars_line,) = [line for line in shown.splitlines() if line.startswith("  vars ")]
    assert json.loads(vars_line.removeprefix("  vars ")) == {"rack": 4, "note": "hello world"}
    assert f"  host key     pinned: {PUBLIC}" in shown
    assert json.loads(cli("target", "show", "web-1", "--json").stdout)["port"] == 2222

    updated = cli(
        "target", "update", "web-1", "--var", "rack=5", "--var", "zone=b", "--unset-var", "note",
        "--tags", "web", "--disable", "--no-host-key",
    )  # fmt: skip
    assert "Updated target web-1: 10.0.0.5:2222 (ssh), tags web, disabled." in updated.stdout
    now = cli.api("GET", "/api/targets/web-1")
    assert (now["vars"], now["tags"], now["enabled"]) == ({"rack": 5, "zone": "b"}, ["web"], False)
    assert (now["host_key"], now["description"]) == (None, "front end")
    assert "nothing to change" in cli("target", "update", "web-1", code=2).stderr
    assert (
        "target web-1 has no var 'nope'."
        in cli("target", "update", "web-1", "--unset-var", "nope", code=1).stderr
    )
    assert (
        "give --host-key or --no-host-key, not both."
        in cli("target", "update", "web-1", "--host-key", PUBLIC, "--no-host-key", code=2).stderr
    )

    forgot = cli("target", "forget-host-key", "db-1").stdout
    assert "Forgot the recorded host key of db-1; the next successful connection records" in (
        one_line(forgot)
    )
    cli("target", "update", "db-1", "--host-key", PUBLIC)
    pinned = one_line(cli("target", "forget-host-key", "db-1").stdout)
    assert "Its pinned host key still applies" in pinned

    assert "Removed target web-1." in cli("target", "rm", "web-1").stdout
    gone = cli("target", "rm", "web-1", code=1)
    assert "Error: Target 'web-1' does not exist; list targets with `runwright target list`." in (
        one_line(gone.stderr)
    )
    assert "does not exist" in cli("target", "show", "web-1", code=1).stderr


def test_target_import_prints_the_report_and_exits_1_when_a_row_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    cli.api("POST", "/api/targets", json={"name": "web-2", "address": "old.lan"})
    csv_file = tmp_path / "targets.csv"
    csv_file.write_text(
        "name,address,port,tags,vars,enabled,description\n"
        'web-1,10.0.0.1,22,"web prod","{""rack"": 1}",true,first\n'
        "web-2,10.0.0.2,,web,,,\n"
        "web-3,10.0.0.3,99999,web,,,\n"
    )
    dry = cli("target", "import", str(csv_file), "--dry-run", code=1)
    assert row(dry.stdout, "2")[:3] == ["2", "web-1", "would"]
    assert "Dry run, nothing stored: 1 created, 1 updated, 1 refused." in dry.stdout
    assert [t["name"] for t in cli.api("GET", "/api/targets")] == ["web-2"]

    done = cli("target", "import", str(csv_file), code=1)
    assert done.stdout.splitlines()[0].split() == ["ROW", "NAME", "RESULT", "REASON"]
    assert row(done.stdout, "2") == ["2", "web-1", "created"]
    assert row(done.stdout, "3") == ["3", "web-2", "updated"]
    assert one_line(" ".join(row(done.stdout, "4"))) == (
        "4 web-3 refused port '99999' is not valid: use a number from 1 to 65535."
    )
    assert "Imported: 1 created, 1 updated, 1 refused." in done.stdout
    assert "1 row(s) refused: fix them and import the file again (targets already stored are " in (
        one_line(done.stderr)
    )
    assert [t["name"] for t in cli.api("GET", "/api/targets")] == ["web-1", "web-2"]

    json_file = tmp_path / "targets.json"
    json_file.write_text(cli("target", "list", "--json").stdout)
    again = cli("target", "import", str(json_file))
    assert "Imported: 0 created, 2 updated, 0 refused." in again.stdout
    report = json.loads(cli("target", "import", str(json_file), "--json").stdout)
    assert [r["status"] for r in report["rows"]] == ["updated", "updated"]

    other = tmp_path / "targets.txt"
    other.write_text("name,address\n")
    assert "must end in .csv or .json" in cli("target", "import", str(other), code=2).stderr
    missing = cli("target", "import", str(tmp_path / "nope.csv"), code=2)
    assert "cannot read" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("name,adress\nx,y\n")
    assert "CSV column 'adress' is not known" in cli("target", "import", str(bad), code=1).stderr


# -- credentials ---------------------------------------------------------------------------------
def test_credential_add_list_show_update_and_rm(
    cli: Cli, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "id_plain"
    plain.write_text(PLAIN_KEY)
    locked = tmp_path / "id_locked"
    locked.write_text(LOCKED_KEY)

    added = cli(
        "credential", "add", "ops-pw", "--username", "ops", "--password-stdin",
        "--priority", "50", "--tags", "web,db", "--description", "shared",
        input="pw from stdin\n",
    )  # fmt: skip
    assert one_line(added.stdout) == (
        "Added credential ops-pw: user ops, password, priority 50, tags web, db. Its secret is "
        "encrypted at rest and never shown."
    )
    cli("credential", "add", "ops-key", "--username", "root", "--key-file", str(plain),
        "--tags", "web")  # fmt: skip
    cli("credential", "add", "ops-locked", "--username", "root", "--key-file", str(locked),
        "--passphrase-stdin", "--priority", "10", "--tags", "db", input="open sesame")  # fmt: skip
    no_passphrase = cli("credential", "add", "x", "--username", "u", "--key-file", str(locked),
                        code=1)  # fmt: skip
    assert "private_key is encrypted: give its passphrase too (field passphrase; " in (
        one_line(no_passphrase.stderr)
    )
    nothing = cli("credential", "add", "x", "--username", "u", code=2)
    assert "give the secret: --password-stdin (the password on stdin" in one_line(nothing.stderr)
    both = cli("credential", "add", "x", "--username", "u", "--password-stdin", "--key-file",
               str(plain), code=2)  # fmt: skip
    assert "give --password-stdin or --key-file, not both." in both.stderr
    stray = cli("credential", "add", "x", "--username", "u", "--passphrase-stdin", code=2)
    assert "--passphrase-stdin goes with --key-file" in stray.stderr
    empty = cli("credential", "add", "x", "--username", "u", "--password-stdin", input="\n",
                code=2)  # fmt: skip
    assert "the password is empty." in empty.stderr
    unreadable = cli("credential", "add", "x", "--username", "u", "--key-file",
                     str(tmp_path / "none"), code=2)  # fmt: skip
    assert "cannot read the key file" in unreadable.stderr

    # On a terminal, no option: a prompt without echo, asked twice.
    monkeypatch.setattr(targets_cli, "_stdin_is_tty", lambda: True)
    typed = cli("credential", "add", "ops-typed", "--username", "ops", "--tags", "web",
                input="typed pw\ntyped pw\n")  # fmt: skip
    assert "typed pw" not in typed.stdout + typed.stderr
    assert "Password:" in typed.stdout
    assert "Repeat for confirmation:" in typed.stdout
    monkeypatch.undo()

    ids = {c.name: c.id for c in runtime.credentials.candidates()}
    unlocked = runtime.credentials.unlock(list(ids.values()))
    assert unlocked[ids["ops-pw"]].secret == SecretPart(password="pw from stdin")
    assert unlocked[ids["ops-key"]].secret == SecretPart(private_key=PLAIN_KEY)
    assert unlocked[ids["ops-locked"]].secret == SecretPart(
        private_key=LOCKED_KEY, passphrase="open sesame"
    )
    assert unlocked[ids["ops-typed"]].secret == SecretPart(password="typed pw")

    runtime.credentials.record_use([(ids["ops-pw"], True)] * 3 + [(ids["ops-pw"], False)])
    table = cli("credential", "list").stdout
    lines = [line.split()[0] for line in table.splitlines()[1:]]
    assert lines == ["ops-locked", "ops-pw", "ops-key", "ops-typed"]  # priority, then name
    assert table.splitlines()[0].split() == [
        "NAME", "USERNAME", "KIND", "PRIORITY", "TAGS", "LAST", "USED", "OK", "FAILED", "RATE",
        "DESCRIPTION",
    ]  # fmt: skip
    pw_row = row(table, "ops-pw")
    assert pw_row[:5] == ["ops-pw", "ops", "password", "50", "web,db"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", pw_row[5])
    assert pw_row[7:] == ["3", "1", "75%", "shared"]
    assert row(table, "ops-key")[5:9] == ["-", "0", "0", "-"]

    shown = cli("credential", "show", "ops-pw").stdout
    assert shown.splitlines()[0] == "Credential ops-pw"
    assert "  secret       password (encrypted; never shown)" in shown
    assert "  logins       3 worked, 1 refused (75% success)" in shown
    assert "  priority     50 (lower is tried first)" in shown
    assert json.loads(cli("credential", "show", "ops-pw", "--json").stdout)["successes"] == 3

    updated = cli("credential", "update", "ops-pw", "--priority", "1", "--tags", "edge")
    assert "Updated credential ops-pw: user ops, password, priority 1, tags edge." in (
        updated.stdout
    )
    replaced = cli("credential", "update", "ops-pw", "--key-file", str(plain))
    assert "key, priority 1, tags edge. Its secret was replaced." in one_line(replaced.stdout)
    assert runtime.credentials.unlock([ids["ops-pw"]])[ids["ops-pw"]].secret == SecretPart(
        private_key=PLAIN_KEY
    )
    cli("credential", "update", "ops-pw", "--password-stdin", input="second pw")
    assert runtime.credentials.unlock([ids["ops-pw"]])[ids["ops-pw"]].secret == SecretPart(
        password="second pw"
    )
    assert "nothing to change" in cli("credential", "update", "ops-pw", code=2).stderr

    assert "Removed credential ops-key." in cli("credential", "rm", "ops-key").stdout
    assert "Credential 'ops-key' does not exist" in cli("credential", "rm", "ops-key",
                                                        code=1).stderr  # fmt: skip
    assert "No credentials yet" not in cli("credential", "list").stdout


def test_empty_lists_say_what_to_do(cli: Cli) -> None:
    assert "No targets yet. Add one with `runwright target add NAME --address HOST" in one_line(
        cli("target", "list").stdout
    )
    assert "No credentials yet. Add one with `runwright credential add NAME" in one_line(
        cli("credential", "list").stdout
    )


# -- secrets rotate-key --------------------------------------------------------------------------
def test_rotate_key_with_the_key_file_and_with_the_variable(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    runtime.credentials.create("c", username="u", secret=SecretPart(password="before rotation"))
    local = Cli("http://unused.invalid", settings.home,
                RUNWRIGHT_DATABASE_URL=settings.effective_database_url)  # fmt: skip
    old = (settings.home / KEY_FILE).read_text().split()
    done = local("secrets", "rotate-key")
    assert one_line(done.stdout).startswith(
        "Re-encrypted 1 credential, 0 sensitive variables and 0 webhook signing secrets with a "
        f"new key, now the first line of {settings.home / KEY_FILE}."
    )
    new = (settings.home / KEY_FILE).read_text().split()
    assert new[1:] == old
    (cid,) = [c.id for c in runtime.credentials.candidates()]
    assert runtime.credentials.unlock([cid])[cid].secret.password == "before rotation"

    # RUNWRIGHT_SECRET_KEY: the new key alone on stdout, what to do on stderr.
    with_variable = Cli("http://unused.invalid", tmp_path / "other-home",
                        RUNWRIGHT_DATABASE_URL=settings.effective_database_url,
                        RUNWRIGHT_SECRET_KEY=f"{new[0]},{new[1]}")  # fmt: skip
    rotated = with_variable("secrets", "rotate-key")
    printed = rotated.stdout.strip()
    assert Fernet(printed.encode())  # a key, and only the key
    message = one_line(rotated.stderr)
    assert "Re-encrypted 1 credential, 0 sensitive variables" in message
    assert "set RUNWRIGHT_SECRET_KEY to the new key, a comma and the current value (NEW,OLD)" in (
        message
    )
    assert SecretBox([printed.encode()]).decrypt(_secret_of(runtime)).startswith('{"password"')

    given = Fernet.generate_key().decode()
    on_stdin = Cli("http://unused.invalid", tmp_path / "other-home",
                   RUNWRIGHT_DATABASE_URL=settings.effective_database_url,
                   RUNWRIGHT_SECRET_KEY=printed)  # fmt: skip
    quiet = on_stdin("secrets", "rotate-key", "--new-key-stdin", input=given + "\n")
    assert given not in quiet.stdout + quiet.stderr
    assert SecretBox([given.encode()]).decrypt(_secret_of(runtime)).startswith('{"password"')
    refused = on_stdin("secrets", "rotate-key", "--new-key-stdin", input="hunter2", code=1)
    assert "The new key is not a Fernet key" in refused.stderr
    assert (
        "read nothing from stdin"
        in on_stdin("secrets", "rotate-key", "--new-key-stdin", input="", code=2).stderr
    )


def _secret_of(runtime: Runtime) -> str:
    with runtime.engine.connect() as conn:
        token: str = conn.execute(sa.select(credentials.c.secret)).scalar_one()
    return token


# -- the canary ----------------------------------------------------------------------------------
def test_a_canary_password_appears_nowhere(
    cli: Cli, runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"canary-{secrets.token_hex(8)}"
    phrase = f"{canary}-phrase"
    locked = USER_KEY.export_private_key("pkcs8-pem", passphrase=phrase).decode()
    key_body = locked.splitlines()[1]  # a line of the encrypted key: secret material too
    key_file = tmp_path / "id_canary"
    key_file.write_text(locked)
    forbidden = (canary, key_body, PLAIN_KEY.splitlines()[1])

    answers: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = cli.http.request(method, path, **kwargs)
        assert response.status_code < 500, response.text
        answers.append(f"{method} {path} {response.status_code} {response.headers} {response.text}")
        return response

    # Through the CLI: stdin and a key file.
    cli("credential", "add", "canary-pw", "--username", "ops", "--password-stdin", "--tags",
        "web", input=canary)  # fmt: skip
    cli("credential", "add", "canary-key", "--username", "ops", "--key-file", str(key_file),
        "--passphrase-stdin", "--tags", "web", input=phrase)  # fmt: skip
    for args in (
        ("credential", "list"),
        ("credential", "list", "--json"),
        ("credential", "show", "canary-pw"),
        ("credential", "show", "canary-key", "--json"),
        ("credential", "update", "canary-pw", "--priority", "5"),
        ("target", "add", "web-1", "--address", "10.0.0.1", "--tags", "web"),
        ("target", "list"),
        ("target", "show", "web-1"),
    ):
        cli(*args)
    cli("credential", "add", "canary-pw", "--username", "ops", "--password-stdin",
        input=canary, code=1)  # fmt: skip

    # Every route of /api/targets and /api/credentials, refusals included.
    body = {"name": "api-pw", "username": "ops", "password": canary, "tags": ["web"]}
    call("POST", "/api/credentials", json=body)
    call("POST", "/api/credentials", json=body)  # 409
    call("POST", "/api/credentials", json={**body, "name": "bad name"})
    call("POST", "/api/credentials", json={**body, "name": "x", "private_key": locked})
    call("POST", "/api/credentials", json={"name": "x", "username": "u", "private_key": locked,
                                           "passphrase": canary})  # fmt: skip
    call("POST", "/api/credentials", json={"name": "x", "username": "u", "private_key": canary})
    call("POST", "/api/credentials", json={**body, "secret": canary, "name": "y"})
    call("POST", "/api/credentials", content=f'{{"password": "{canary}"',
         headers={"content-type": "application/json"})  # fmt: skip
    call("POST", "/api/credentials", json={**body, "password": [canary]})
    call("GET", "/api/credentials")
    call("GET", "/api/credentials/api-pw")
    call("GET", "/api/credentials/canary-key")
    call("PATCH", "/api/credentials/api-pw", json={"password": canary + "2"})
    call("PATCH", "/api/credentials/api-pw", json={"passphrase": canary})
    call("PATCH", "/api/credentials/api-pw", json={"private_key": canary})
    call("PATCH", "/api/credentials/nope", json={"password": canary})
    call("DELETE", "/api/credentials/api-pw")
    call("GET", "/api/targets")
    call("GET", "/api/targets?tag=web")
    call("POST", "/api/targets", json={"name": "web-2", "address": "10.0.0.2", "tags": ["web"]})
    call("POST", "/api/targets", json={"name": "web-3", "address": "not valid"})
    call("GET", "/api/targets/web-2")
    call("PATCH", "/api/targets/web-2", json={"port": 2222})
    call("POST", "/api/targets/web-2/forget-host-key")
    call("POST", "/api/targets/import", json=[{"name": "web-4", "address": "h4"}])
    call("POST", "/api/targets/import?dry_run=true", content="name,address\nweb-5,h5\n",
         headers={"content-type": "text/csv"})  # fmt: skip
    call("DELETE", "/api/targets/web-2")
    call("GET", "/openapi.json")

    # The worker's side works with it...
    ids = {c.name: c.id for c in runtime.credentials.candidates()}
    unlocked = runtime.credentials.unlock([ids["canary-pw"], ids["canary-key"]])
    assert unlocked[ids["canary-pw"]].secret.password == canary
    assert unlocked[ids["canary-key"]].secret.passphrase == phrase
    assert canary not in repr(unlocked) + str(unlocked)
    runtime.credentials.record_use([(ids["canary-pw"], True)])
    answers.append(json.dumps(call("GET", "/api/credentials").json()))

    # ...and it is nowhere else: API answers, CLI output, logs, any table.
    dump = _dump(runtime)
    for text, where in (
        ("\n".join(answers), "an API answer"),
        ("\n".join(cli.outputs), "the CLI output"),
        (caplog.text, "a log record"),
        (dump, "a database table"),
    ):
        for secret in forbidden:
            assert secret not in text, f"a secret appears in {where}"
    with runtime.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(credentials.c.name, credentials.c.secret)).all())
    assert set(stored) == {"canary-pw", "canary-key"}
    for token in stored.values():
        assert token.startswith("gAAAAA")  # a Fernet token, not the plaintext
        assert canary not in token


def _dump(runtime: Runtime) -> str:
    """SELECT * of every table there is, every value as text."""
    lines: list[str] = []
    with runtime.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        assert set(metadata.tables) <= set(names)
        for name in names:
            for values in conn.execute(sa.text(f'SELECT * FROM "{name}"')):
                lines.append(f"{name}: " + " | ".join(str(v) for v in values))
    assert any(line.startswith("credentials: ") for line in lines)
    return "\n".join(lines)
