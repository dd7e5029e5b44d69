"""The admin pages (users, tokens, audit) and the inventory forms (targets, credentials,
variables), over a real SQLite database, through FastAPI's TestClient with signed-in browser
sessions of each role. The forms themselves run in Chromium: tests/browser/test_admin_ui.py.

Every response of every test is checked by a hook: none may be a 5xx.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator

import asyncssh
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.services.runtime import Runtime
from runwright.web.prefill import vars_text
from tests.helpers import no_server_errors
from tests.integration import test_web_pages as pages
from tests.integration.test_web_pages import PAGES, sign_in, upload_script

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ADMIN_PAGES = ("/users", "/tokens", "/audit")
USER_PASSWORD = "canary-user-password-7c1d"
CREDENTIAL_PASSWORD = "canary-credential-password-0b3a"
KEY_PASSPHRASE = "canary-key-passphrase-55e2"
SENSITIVE_VALUE = "canary-sensitive-value-a4f0"
SENSITIVE_NESTED = "canary-nested-secret-91bd"


# The pages' fixtures: a runtime on SQLite (see test_web_pages.py for why).
database_url = pages.database_url
runtime = pages.runtime


Clients = Callable[[str], TestClient]


@pytest.fixture
def signed_in(runtime: Runtime) -> Iterator[Clients]:
    """A factory: a client signed in as a new user of the given role."""
    opened: list[TestClient] = []

    def make(role: str) -> TestClient:
        client = TestClient(create_app(runtime), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        client.event_hooks = {"request": [], "response": [no_server_errors]}
        sign_in(client, runtime, role)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def rows(html: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', html)


# -- the admin pages ---------------------------------------------------------------------------
def test_the_admin_pages_list_users_tokens_and_events(signed_in: Clients) -> None:
    admin = signed_in("admin")
    made = admin.post("/api/users", json={"name": "alice", "role": "operator"})
    assert made.status_code == 201, made.text
    assert admin.post("/api/users/alice/sign-in-link").status_code == 200
    assert admin.patch("/api/users/alice", json={"disabled": True}).status_code == 200
    token = admin.post("/api/tokens", json={"name": "ci-deploy", "role": "viewer"}).json()
    admin.post("/api/tokens", json={"name": "old-bot", "role": "admin"})
    assert admin.delete("/api/tokens/old-bot").status_code == 200

    users = admin.get("/users")
    assert users.status_code == 200
    assert "alice" in rows(users.text, "data-user")
    alice = users.text.split('data-user="alice"')[1].split("</tr>")[0]
    assert '<span class="role role--operator">operator</span>' in alice
    assert ">disabled</span>" in alice
    assert "password set" in alice  # a generated one counts as set
    assert "Enable</button>" in alice
    assert 'data-url="/api/users/alice/sign-in-link"' in alice
    assert 'data-reveal-key="generated_password"' in users.text

    tokens = admin.get("/tokens").text
    assert rows(tokens, "data-token") == ["ci-deploy", "old-bot"]  # active ones first
    ci = tokens.split('data-token="ci-deploy"')[1].split("</tr>")[0]
    assert token["prefix"] in ci
    assert ">active</span>" in ci
    assert "Revoke</button>" in ci
    old = tokens.split('data-token="old-bot"')[1].split("</tr>")[0]
    assert ">revoked</span>" in old
    assert "Revoke</button>" not in old

    audit = admin.get("/audit").text
    actions = re.findall(r'<span class="chip mono">([a-z_.]+)</span>', audit)
    assert actions[:3] == ["token.revoked", "token.created", "token.created"]  # newest first
    assert {"user.created", "user.updated", "sign_in_link.created"} <= set(actions)
    assert "Older events" not in audit


def test_the_audit_page_goes_back_in_pages_with_the_cursor(
    signed_in: Clients, runtime: Runtime
) -> None:
    admin = signed_in("admin")
    for number in range(70):
        runtime.auth.audit(
            "tests", "test.event", f"subject-{number:03d}", {"n": number}, "10.1.2.3"
        )
    first = admin.get("/audit").text
    subjects = re.findall(r"subject-(\d{3})", first)
    assert len(subjects) == 50
    assert subjects[0] == "069"
    assert subjects == sorted(subjects, reverse=True)
    assert "10.1.2.3" in first
    assert '<span class="chip">n: 69</span>' in first
    older = re.search(r'href="/audit\?cursor=(\d+)"', first)
    assert older, "no link to older events"
    second = admin.get(f"/audit?cursor={older.group(1)}").text
    rest = re.findall(r"subject-(\d{3})", second)
    assert rest[0] == "019"
    assert set(rest).isdisjoint(subjects)
    assert "← Newest" in second
    assert admin.get("/audit?cursor=1").status_code == 200
    assert admin.get("/audit?cursor=0").status_code == 422


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_get_the_admin_pages_and_their_links(signed_in: Clients, role: str) -> None:
    other = signed_in(role)
    for path in ADMIN_PAGES:
        page = other.get(path)
        assert page.status_code == 403, path
        assert "is for admins" in page.text
        assert f"({role})" in page.text
        assert "Ask an admin" in page.text
    home = other.get("/").text
    for path in ADMIN_PAGES:
        assert f'href="{path}"' not in home
    admin_home = signed_in("admin").get("/").text
    for path in ADMIN_PAGES:
        assert f'href="{path}"' in admin_home


# -- who sees which form -------------------------------------------------------------------------
def test_forms_and_buttons_are_rendered_only_to_the_roles_the_api_lets_through(
    signed_in: Clients, runtime: Runtime
) -> None:
    runtime.targets.create({"name": "web-01", "address": "10.0.0.1", "tags": ["web"]})
    admin = signed_in("admin")
    admin.post("/api/credentials", json={"name": "ops", "username": "ops", "password": "pw-123"})
    admin.put("/api/variables/base_url", json={"value": "https://example.test"})

    viewer = signed_in("viewer")
    for path in ("/targets", "/variables"):
        page = viewer.get(path).text
        assert "data-api-form" not in page, path
        assert "data-open-form" not in page, path
        assert "data-call" not in page, path
        assert "/static/forms.js" not in page, path
    assert "data-import-form" not in viewer.get("/targets").text

    operator = signed_in("operator")
    targets = operator.get("/targets").text
    assert "+ Add a target" in targets
    assert "data-import-form" in targets
    assert 'data-url="/api/targets/web-01"' in targets  # remove
    assert "/static/forms.js" in targets
    assert "+ Add a variable" in operator.get("/variables").text
    credentials = operator.get("/credentials")
    assert credentials.status_code == 200  # operators read them
    assert "ops" in rows(credentials.text, "data-credential")
    assert "Add a credential" not in credentials.text
    assert "data-open-form" not in credentials.text
    assert "Admins add and change credentials" in credentials.text

    as_admin = admin.get("/credentials").text
    assert "+ Add a credential" in as_admin
    assert 'data-url="/api/credentials/ops"' in as_admin


def test_edit_forms_start_with_the_stored_values(signed_in: Clients, runtime: Runtime) -> None:
    upload_script(signed_in("admin"))
    operator = signed_in("operator")
    runtime.targets.create(
        {
            "name": "sw-7",
            "address": "10.1.0.7",
            "port": 2222,
            "tags": ["switch", "rack-4"],
            "vars": {"rack": 4, "site": "fra", "code": "4"},
            "enabled": False,
            "description": "core switch",
        }
    )
    runtime.variables.set("limits", {"max": 3}, job="hello", description="per job")
    page = operator.get("/targets").text
    found = re.search(r"data-values='(\{[^']*\"name\": \"sw-7\"[^']*)'", page)
    assert found, "no edit button for sw-7"
    values = json.loads(found.group(1))
    assert values == {
        "name": "sw-7",
        "address": "10.1.0.7",
        "port": "2222",
        "driver": "ssh",
        "tags": "switch, rack-4",
        "vars": 'code="4"\nrack=4\nsite=fra',
        "host_key": "",
        "enabled": False,
        "description": "core switch",
    }
    variables = operator.get("/variables").text
    assert '<option value="hello">job hello</option>' in variables
    found = re.search(r"data-values='(\{[^']*\"name\": \"limits\"[^']*)'", variables)
    assert found
    assert json.loads(found.group(1))["value"] == '{\n  "max": 3\n}'
    assert json.loads(found.group(1))["as_json"] is True
    assert json.loads(found.group(1))["job"] == "hello"


def test_vars_text_reads_back_as_the_same_values() -> None:
    assert vars_text({"rack": 4, "site": "fra", "code": "4", "on": True, "x": [1]}) == (
        'code="4"\non=true\nrack=4\nsite=fra\nx=[1]'
    )
    assert vars_text({}) == ""


# -- secrets ------------------------------------------------------------------------------------
def test_no_password_token_key_or_sensitive_value_appears_in_any_page(
    signed_in: Clients, runtime: Runtime
) -> None:
    admin = signed_in("admin")
    upload_script(admin)
    chosen = admin.post(
        "/api/users", json={"name": "pat", "role": "viewer", "password": USER_PASSWORD}
    )
    assert chosen.status_code == 201, chosen.text
    generated = admin.post("/api/users", json={"name": "gen", "role": "operator"}).json()
    link = admin.post("/api/users/gen/sign-in-link").json()["url"]
    token = admin.post("/api/tokens", json={"name": "ci", "role": "operator"}).json()["token"]
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key(passphrase=KEY_PASSPHRASE)
    for body in (
        {"name": "web-pw", "username": "ops", "password": CREDENTIAL_PASSWORD, "tags": ["web"]},
        {
            "name": "web-key",
            "username": "ops",
            "private_key": key.decode(),
            "passphrase": KEY_PASSPHRASE,
            "tags": ["web"],
        },
    ):
        made = admin.post("/api/credentials", json=body)
        assert made.status_code == 201, made.text
    admin.patch("/api/credentials/web-pw", json={"password": CREDENTIAL_PASSWORD + "-new"})
    admin.put("/api/variables/api_token", json={"value": SENSITIVE_VALUE, "sensitive": True})
    admin.put(
        "/api/variables/creds",
        json={"value": {"user": "u", "password": SENSITIVE_NESTED}, "sensitive": True},
    )
    seen = ""
    for client in (admin, signed_in("operator"), signed_in("viewer")):
        for path in (*PAGES, *ADMIN_PAGES, "/jobs/hello"):
            response = client.get(path)
            assert response.status_code in (200, 403), path
            seen += response.text
    for name in ("pat", "gen", "ci", "web-pw", "web-key", "api_token", "creds"):
        assert name in seen
    secrets = [
        USER_PASSWORD,
        generated["generated_password"],
        link.split("code=")[1],
        token,
        token[12:],
        CREDENTIAL_PASSWORD,
        KEY_PASSPHRASE,
        *key.decode().splitlines()[1:-1],
        SENSITIVE_VALUE,
        SENSITIVE_NESTED,
    ]
    for secret in secrets:
        assert secret not in seen, secret
