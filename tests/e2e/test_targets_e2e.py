"""The `runwright` command as a subprocess against a server subprocess (SQLite home, key
file): a credential's password read from a real stdin, and `runwright secrets
rotate-key` while the server runs — the server keeps decrypting (a signed webhook call)
and encrypts new secrets with the new key, without a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken

from runwright.services.secrets import KEY_FILE
from tests.e2e.test_cli import Server, no_traceback, start_server
from tests.procs import RUNWRIGHT, Processes

CLI_TIMEOUT = 90.0


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("targets-server-home")
    procs = Processes(tmp_path_factory.mktemp("targets-server-logs"))
    try:
        yield start_server(procs, home)
    finally:
        procs.kill_all()


def run(server: Server, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [RUNWRIGHT, *args],
        input=stdin,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done)
    return done


def api(server: Server, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method, f"{server.url}{path}", headers=server.headers, timeout=10, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def signed_call(url: str, secret: str) -> int:
    body = json.dumps({"from": "test"}).encode()
    t = int(time.time())
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "X-Runwright-Signature": f"t={t},v1={v1}"}
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code


def stored(server: Server, query: str) -> list[str]:
    with sqlite3.connect(server.home / "runwright.db") as conn:
        return [row[0] for row in conn.execute(query)]


def opens(key: str, token: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def test_rotate_key_while_the_server_runs(server: Server) -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    added = run(server, "credential", "add", "ops", "--username", "ops", "--password-stdin",
                "--tags", "web", stdin=canary + "\n")  # fmt: skip
    assert "Added credential ops: user ops, password" in added.stdout
    api(server, "POST", "/api/jobs", json={"name": "hooked", "kind": "task",
                                           "task_type": "demo.echo"})  # fmt: skip
    hook = api(server, "POST", "/api/jobs/hooked/webhooks", json={"signed": True})
    assert signed_call(hook["url"], hook["secret"]) == 202
    (old,) = (server.home / KEY_FILE).read_text().split()

    rotated = run(server, "secrets", "rotate-key")
    assert "Re-encrypted 1 credential, 0 sensitive variables and 1 webhook signing secret" in (
        " ".join(rotated.stdout.split())
    )
    new, kept = (server.home / KEY_FILE).read_text().split()
    assert kept == old
    for token in stored(server, "SELECT secret FROM credentials") + stored(
        server, "SELECT secret FROM webhooks"
    ):
        assert opens(new, token)
        assert not opens(old, token)

    time.sleep(1.2)  # past the server's one-second cache of the webhook
    assert signed_call(hook["url"], hook["secret"]) == 202  # decrypted with the new key

    run(server, "var", "set", "api_token", "--stdin", "--sensitive", stdin="tok-after")
    run(server, "credential", "add", "later", "--username", "u", "--password-stdin",
        stdin="pw-after")  # fmt: skip
    (variable,) = stored(server, "SELECT value FROM variables WHERE name = 'api_token'")
    (later,) = stored(server, "SELECT secret FROM credentials WHERE name = 'later'")
    assert opens(new, variable)
    assert opens(new, later)

    listed = run(server, "credential", "list")
    shown = run(server, "credential", "show", "ops", "--json")
    assert json.loads(shown.stdout)["kind"] == "password"
    for done in (added, rotated, listed, shown):
        assert canary not in done.stdout + done.stderr
    assert canary not in server.proc.output()
