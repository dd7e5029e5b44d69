"""Who may call what: every route of the OpenAPI document, for every role (none, viewer,
operator, admin), through the real application on SQLite and PostgreSQL; then the
browser's session (cookie and CSRF token), tokens' life (use, revoke) and users.

The role each route needs is written out here from the product's rules, not read from
runwright's own table, so a route that forgets its guard, or a rule that drifts, fails:
- public: /healthz, /metrics and webhooks (/hooks/..., which check their own token);
- admin: people, tokens and the audit log (/api/users, /api/tokens, /api/audit), and
  changing credentials;
- operator: every other change, and reading credentials (never their secrets);
- viewer: every other read.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.config import Settings
from runwright.services.runtime import Runtime
from tests.helpers import admin_headers, make_registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ROLES = ("viewer", "operator", "admin")
RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}
SAFE = {"get", "head", "options"}


def expected_role(method: str, path: str) -> str | None:
    """The role the product's rules give a route; None: public."""
    if path in ("/healthz", "/metrics") or path.startswith("/hooks/"):
        return None
    if path.startswith(("/api/users", "/api/tokens", "/api/audit")):
        return "admin"
    if path.startswith("/api/credentials"):
        return "operator" if method in SAFE else "admin"
    return "viewer" if method in SAFE else "operator"


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, registry=make_registry())
    yield rt
    rt.close()


@pytest.fixture
def app_client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client


def concrete(path: str) -> str:
    """A request path for a template: ids that exist nowhere, names nobody uses."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.endswith("id") or name in ("version", "seq"):
            return "987654321"
        return f"nobody-{name}"

    return re.sub(r"\{(\w+)(?::[^}]*)?\}", value, path)


def operations(client: TestClient) -> list[tuple[str, str]]:
    document = client.get("/openapi.json").json()
    found = [
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(found) > 60, found  # the whole API, not a stub
    return sorted(found)


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("post", "put", "patch"):
        kwargs["json"] = {}
    return client.request(method.upper(), concrete(path), **kwargs).status_code


def test_every_route_answers_each_role_as_the_matrix_says(
    app_client: TestClient, runtime: Runtime
) -> None:
    tokens = {role: admin_headers(runtime, role) for role in ROLES}
    wrong: list[str] = []
    checked = 0
    for method, path in operations(app_client):
        needed = expected_role(method, path)
        for role in (None, *ROLES):
            status = call(app_client, method, path, tokens[role] if role else {})
            checked += 1
            if status >= 500:
                wrong.append(f"{method.upper()} {path} as {role}: {status}")
            elif needed is None:
                if status in (401, 403):
                    wrong.append(f"{method.upper()} {path} is public but gave {role} {status}")
            elif role is None:
                if status != 401:
                    wrong.append(f"{method.upper()} {path} without a token: {status}, not 401")
            elif RANK[role] < RANK[needed]:
                if status != 403:
                    wrong.append(f"{method.upper()} {path} as {role}: {status}, not 403")
            elif status in (401, 403):
                wrong.append(f"{method.upper()} {path} as {role} (needs {needed}): {status}")
    assert not wrong, "\n".join(wrong)
    assert checked > 240


def test_answers_say_what_to_do(app_client: TestClient, runtime: Runtime) -> None:
    missing = app_client.get("/api/runs")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.json()["error"]
    bad_scheme = app_client.get("/api/runs", headers={"Authorization": "Basic abc"})
    assert bad_scheme.status_code == 401
    assert "Bearer TOKEN" in bad_scheme.json()["error"]
    unknown = app_client.get("/api/runs", headers={"Authorization": "Bearer rw_nope"})
    assert unknown.status_code == 401
    assert "not valid or was revoked" in unknown.json()["error"]
    viewer = admin_headers(runtime, "viewer")
    refused = app_client.post("/api/jobs", json={"name": "x", "kind": "task"}, headers=viewer)
    assert refused.status_code == 403
    assert "needs the operator role" in refused.json()["error"]
    assert "is viewer" in refused.json()["error"]


# -- tokens ----------------------------------------------------------------------------------
def test_a_token_is_shown_once_stored_hashed_used_and_revoked(
    app_client: TestClient, runtime: Runtime
) -> None:
    admin = admin_headers(runtime)
    created = app_client.post("/api/tokens", json={"name": "ci", "role": "operator"}, headers=admin)
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    assert secret.startswith("rw_")
    assert len(secret) > 40
    listed = app_client.get("/api/tokens", headers=admin).json()
    assert secret not in str(listed)
    ci = next(t for t in listed if t["name"] == "ci")
    assert (ci["role"], ci["revoked"], ci["last_used_at"]) == ("operator", False, None)
    with runtime.engine.connect() as conn:
        raw = str(conn.exec_driver_sql("SELECT * FROM api_tokens").fetchall())
    assert secret not in raw  # only its hash

    mine = {"Authorization": f"Bearer {secret}"}
    assert app_client.get("/api/me", headers=mine).json() == {
        "name": "token:ci",
        "role": "operator",
        "via": "token",
    }
    ci = next(t for t in app_client.get("/api/tokens", headers=admin).json() if t["name"] == "ci")
    assert ci["last_used_at"] is not None  # written when tokens are listed

    dup = app_client.post("/api/tokens", json={"name": "ci", "role": "viewer"}, headers=admin)
    assert dup.status_code == 409
    bad = app_client.post("/api/tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert bad.status_code == 422
    assert "viewer, operator, admin" in bad.json()["error"]

    assert app_client.delete("/api/tokens/ci", headers=admin).json()["revoked"] is True
    runtime.auth._forget()  # the moment of CACHE_SECONDS, skipped
    assert app_client.get("/api/me", headers=mine).status_code == 401
    events = app_client.get("/api/audit", headers=admin).json()["events"]
    actions = [(e["action"], e["subject"]) for e in events]
    assert ("token.created", "ci") in actions
    assert ("token.revoked", "ci") in actions


# -- users and the browser's session -----------------------------------------------------------
def sign_in(client: TestClient, name: str, password: str) -> Any:
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf": csrf.group(1), "next": "/api/me"},
        follow_redirects=False,
    )


def test_users_sign_in_and_a_session_needs_its_csrf_token_to_change_anything(
    app_client: TestClient, runtime: Runtime
) -> None:
    admin = admin_headers(runtime)
    made = app_client.post(
        "/api/users",
        json={"name": "vera", "role": "viewer", "password": "a-long-password-1"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["generated_password"] is None
    generated = app_client.post(
        "/api/users", json={"name": "otto", "role": "operator"}, headers=admin
    ).json()["generated_password"]
    assert len(generated) >= 10
    short = app_client.post(
        "/api/users", json={"name": "sam", "role": "viewer", "password": "short"}, headers=admin
    )
    assert short.status_code == 422
    assert "at least 10 characters" in short.json()["error"]
    with runtime.engine.connect() as conn:
        stored = str(conn.exec_driver_sql("SELECT password_hash FROM users").fetchall())
    assert "a-long-password-1" not in stored
    assert "$argon2id$" in stored

    wrong = sign_in(app_client, "vera", "not-her-password")
    assert wrong.status_code == 401
    assert "Unknown user or wrong password" in wrong.text
    signed = sign_in(app_client, "otto", generated)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/api/me"
    cookie = signed.cookies.get("rw_session")
    assert cookie
    assert "httponly" in signed.headers["set-cookie"].lower()
    app_client.cookies.set("rw_session", cookie)
    assert app_client.get("/api/me").json()["name"] == "otto"

    # A forged POST (no CSRF header, or a wrong one) is refused; the right one passes.
    body = {"name": f"job-{uuid.uuid4().hex[:6]}", "kind": "task", "task_type": "echo"}
    forged = app_client.post("/api/jobs", json=body)
    assert forged.status_code == 403
    assert "X-CSRF-Token" in forged.json()["error"]
    assert app_client.post("/api/jobs", json=body, headers={"X-CSRF-Token": "x"}).status_code == 403
    token = runtime.auth.session(cookie)
    assert token is not None
    done = app_client.post("/api/jobs", json=body, headers={"X-CSRF-Token": token.csrf})
    assert done.status_code != 403, done.text

    app_client.post("/logout")
    app_client.cookies.clear()
    runtime.auth._forget()
    app_client.cookies.set("rw_session", cookie)
    assert app_client.get("/api/me").status_code == 401  # the session ended
    app_client.cookies.clear()
    actions = [e["action"] for e in app_client.get("/api/audit", headers=admin).json()["events"]]
    for action in ("user.created", "sign_in.failed", "sign_in", "sign_out"):
        assert action in actions


def test_the_last_admin_stays_and_open_redirects_are_refused(
    app_client: TestClient, runtime: Runtime
) -> None:
    admin = admin_headers(runtime)
    app_client.post(
        "/api/users",
        json={"name": "root-1", "role": "admin", "password": "pw-pw-pw-pw-1"},
        headers=admin,
    )
    demoted = app_client.patch("/api/users/root-1", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 409
    assert "last enabled admin" in demoted.json()["error"]
    assert app_client.delete("/api/users/root-1", headers=admin).status_code == 409
    # A disabled admin is no admin to keep: with root-2 enabled, it may be demoted.
    app_client.post(
        "/api/users",
        json={"name": "root-2", "role": "admin", "password": "pw-pw-pw-pw-2"},
        headers=admin,
    )
    assert (
        app_client.patch("/api/users/root-1", json={"disabled": True}, headers=admin).status_code
        == 200
    )
    demoted = app_client.patch("/api/users/root-1", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 200, demoted.text
    assert (
        app_client.patch("/api/users/root-2", json={"disabled": True}, headers=admin).status_code
        == 409
    )
    form = app_client.get("/login", params={"next": "https://evil.example/"})
    assert 'value="/"' in form.text
    assert "evil.example" not in form.text


def test_the_first_start_writes_a_private_admin_token_and_a_one_time_link(
    runtime: Runtime, app_client: TestClient
) -> None:
    home = runtime.settings.home
    link = runtime.auth.bootstrap(home)
    token_file = home / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    secret = token_file.read_text().strip()
    assert (
        app_client.get("/api/me", headers={"Authorization": f"Bearer {secret}"}).json()["role"]
        == "admin"
    )
    assert runtime.auth.bootstrap(home) is not None  # a new link each start ...
    assert token_file.read_text().strip() == secret  # ... and the same token
    users = runtime.auth.users()
    assert [(u.name, u.role.value, u.password_hash) for u in users] == [("admin", "admin", None)]

    assert link is not None
    first = app_client.get("/login/link", params={"code": link}, follow_redirects=False)
    assert first.status_code == 303
    again = app_client.get("/login/link", params={"code": link}, follow_redirects=False)
    assert again.status_code == 401  # once only
    assert "used already or has expired" in again.text
    assert app_client.post("/login", data={"name": "admin", "password": ""}).status_code in (
        401,
        403,
        422,
    )  # no default password


def test_repeated_wrong_passwords_are_slowed_down(app_client: TestClient, runtime: Runtime) -> None:
    runtime.auth.create_user("gus", "viewer", "right-password-9", actor="tests")
    answers = [sign_in(app_client, "gus", f"guess-{i}").status_code for i in range(11)]
    assert answers == [401] * 10 + [429]
    blocked = sign_in(app_client, "gus", "right-password-9")
    assert blocked.status_code == 429  # even the right one, for a while
    assert "Too many failed sign-ins" in blocked.text
    assert "runwright user link" in blocked.text
