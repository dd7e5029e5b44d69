"""The web UI's pages and the code editor's endpoint, through FastAPI's TestClient with a
signed-in browser session, on SQLite: pages read through the services, which run on both
databases in their own tests; the dashboard's own SQL runs on both in test_web_stats.py.

Every response of every test is checked by a hook: none may be a 5xx.
"""

from __future__ import annotations

import io
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import sqlalchemy as sa
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.config import Settings
from runwright.db.run_targets import RunTarget
from runwright.db.steps import RunStep
from runwright.db.tables import runs as runs_table
from runwright.model.states import Outcome, RunStatus
from runwright.model.targets import SecretPart, TargetStatus
from runwright.services.runtime import Runtime
from runwright.web.badges import OUTCOME, RUN_STATUS, STEP_STATUS, TARGET_STATUS, badge
from tests.conftest import make_database
from tests.helpers import make_registry, no_server_errors

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PASSWORD = "correct-horse-battery-staple"
SECRET_PASSWORD = "Sup3r-Secret-Passw0rd-Do-Not-Show"
SECRET_VARIABLE = "sensitive-variable-value-9f8e7d"
SCRIPT = b'import time\nprint("hello from the script")\n'
PAGES = ("/", "/jobs", "/scripts", "/runs", "/targets", "/credentials", "/variables", "/workers")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite only: pages render what the services return, and the services have their
    PostgreSQL tests (the dashboard's own SQL: test_web_stats.py, on both)."""
    yield from make_database("sqlite", request, tmp_path)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, registry=make_registry())
    yield rt
    rt.close()


def sign_in(client: TestClient, runtime: Runtime, role: str = "admin") -> None:
    """A browser session of a new user with ``role``: the cookie, and the CSRF token the
    pages' JavaScript would send."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    runtime.auth.create_user(name, role, PASSWORD, actor="tests")
    signed = runtime.auth.sign_in(name, PASSWORD)
    assert signed is not None
    client.cookies.set("rw_session", signed.secret)
    client.headers["X-CSRF-Token"] = signed.csrf


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        test_client.event_hooks = {"request": [], "response": [no_server_errors]}
        sign_in(test_client, runtime)
        yield test_client


def upload_script(client: TestClient, name: str = "hello.py", data: bytes = SCRIPT) -> Any:
    response = client.post("/api/scripts", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()


def package_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def deploy_package(client: TestClient, job: str, files: dict[str, str]) -> Any:
    response = client.post(
        f"/api/jobs/{job}/packages",
        files={"file": ("p.zip", package_zip(files), "application/zip")},
    )
    assert response.status_code == 201, response.text
    return response.json()


def stored_objects(runtime: Runtime) -> list[str]:
    root = getattr(runtime.store, "root", None)
    assert root is not None, "these tests use the local artifact store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def finish(runtime: Runtime, run_id: int, status: RunStatus, outcome: Outcome | None) -> None:
    """Put a run in a final state directly: the pages only read it."""
    now = time.time()
    with runtime.engine.begin() as conn:
        conn.execute(
            sa.update(runs_table)
            .where(runs_table.c.id == run_id)
            .values(
                status=status.value,
                outcome=outcome.value if outcome else None,
                started_at=now - 5,
                finished_at=now,
                attempt=1,
                error="boom: the last line of the error" if status is RunStatus.FAILED else None,
            )
        )


# -- badges ---------------------------------------------------------------------------------
def test_every_status_and_outcome_has_its_own_badge() -> None:
    for table, values in (
        (RUN_STATUS, list(RunStatus)),
        (OUTCOME, list(Outcome)),
        (TARGET_STATUS, list(TargetStatus)),
    ):
        assert set(table) == {v.value for v in values}
    targets_outcomes = [
        "completed_success",
        "completed_partial_failure",
        "completed_failure",
        "completed_no_targets",
        "completed_no_credentials",
        "failed_credential_resolution",
        "failed_unexpected",
    ]
    labels = {OUTCOME[o].label for o in targets_outcomes}
    assert len(labels) == len(targets_outcomes)
    assert STEP_STATUS["skipped"].label == "Skipped"
    unknown = badge("brand_new_value")
    assert unknown is not None
    assert unknown.label == "Brand new value"


# -- pages ---------------------------------------------------------------------------------
def test_every_page_renders_with_the_data_a_user_looks_for(
    client: TestClient, runtime: Runtime
) -> None:
    upload_script(client)
    run = client.post("/api/jobs/hello/runs", json={}).json()
    runtime.targets.create({"name": "web-01", "address": "10.0.0.1", "tags": ["web"]})
    runtime.variables.set("base_url", "https://example.test")
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert '<meta name="csrf-token"' in response.text
    assert "hello" in client.get("/jobs").text
    assert "hello" in client.get("/scripts").text
    assert "web-01" in client.get("/targets").text
    assert "base_url" in client.get("/variables").text
    page = client.get(f"/runs/{run['id']}").text
    assert f"Run #{run['id']}" in page
    assert 'data-status="queued"' in page
    assert ">Queued</span>" in page
    assert f'data-events="/api/runs/{run["id"]}/events"' in page
    assert "Cancel</button>" in page
    listing = client.get("/runs?status=queued").text
    assert f"/runs/{run['id']}" in listing
    assert f"/runs/{run['id']}" not in client.get("/runs?status=failed").text


def test_the_run_page_shows_steps_targets_timeline_and_outcome(
    client: TestClient, runtime: Runtime
) -> None:
    upload_script(client)
    run = client.post("/api/jobs/hello/runs", json={}).json()
    now = time.time()
    runtime.steps.record(
        RunStep(
            run_id=run["id"],
            step_id="fetch-users",
            position=0,
            uses="http",
            status="succeeded",
            attempt=1,
            tries=1,
            started_at=now - 4,
            finished_at=now - 3,
            output_summary='{"status": 200}',
        )
    )
    runtime.run_targets.record(
        [
            RunTarget(
                run_id=run["id"],
                step_id="",
                target="db-primary",
                address="10.1.1.1",
                status="failed",
                started_at=now - 3,
                finished_at=now - 1,
                exit_status=2,
                error="command exited with status 2",
                error_type="command",
            ),
            RunTarget(
                run_id=run["id"],
                step_id="",
                target="db-replica",
                address="10.1.1.2",
                status="no_credentials",
            ),
        ]
    )
    finish(runtime, run["id"], RunStatus.FAILED, Outcome.COMPLETED_PARTIAL_FAILURE)
    page = client.get(f"/runs/{run['id']}").text
    assert "fetch-users" in page
    assert "db-primary" in page
    assert "db-replica" in page
    assert "Some targets failed" in page
    assert ">No credentials</span>" in page
    assert "timeline__bar" in page
    assert "boom: the last line of the error" in page
    assert "Retry as a new run" in page
    assert "Cancel</button>" not in page
    live = client.get(f"/runs/{run['id']}/live")
    assert live.status_code == 200
    assert "hx-trigger" not in live.text  # final: the page stops polling
    assert "<html" not in live.text


def test_a_running_runs_fragment_keeps_polling(client: TestClient) -> None:
    upload_script(client)
    run = client.post("/api/jobs/hello/runs", json={}).json()
    live = client.get(f"/runs/{run['id']}/live").text
    assert 'hx-trigger="every 1500ms"' in live


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/runs/987654", "Run 987654 does not exist"),
        ("/runs/not-a-number", "runs are numbered from 1"),
        ("/runs/99999999999999999999999", "runs are numbered from 1"),
        ("/jobs/no-such-job", "There is no job named &#39;no-such-job&#39;"),
        ("/runs/987654/live", "Run 987654 does not exist"),
    ],
)
def test_unknown_runs_and_jobs_get_a_helpful_404_page(
    client: TestClient, path: str, words: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text
    assert 'href="/' in response.text  # somewhere to go next


def test_the_job_page_has_every_tab_and_a_run_form_from_the_parameters(
    client: TestClient, runtime: Runtime
) -> None:
    deploy_package(
        client,
        "export",
        {
            "runwright.toml": 'entrypoint = "main.py"\n',
            "main.py": "print('exporting')\n",
            "config.json": "{}",
            "config.production.json": "{}",
        },
    )
    parameters = [
        {"name": "day", "type": "date", "required": True},
        {"name": "level", "type": "enum", "choices": ["low", "high"], "default": "low"},
        {"name": "full", "type": "boolean"},
    ]
    assert client.patch("/api/jobs/export", json={"parameters": parameters}).status_code == 200
    overview = client.get("/jobs/export").text
    assert 'data-param="day"' in overview
    assert 'type="date"' in overview
    assert '<option value="high">high</option>' in overview
    assert '<option value="production">production</option>' in overview
    assert 'data-url="/api/jobs/export/runs"' in overview
    for tab in ("code", "versions", "runs", "schedules", "webhooks", "parameters", "environments"):
        response = client.get(f"/jobs/export?tab={tab}")
        assert response.status_code == 200, tab
    code = client.get("/jobs/export?tab=code").text
    assert "print(&#39;exporting&#39;)" in code
    assert 'data-mode="python"' in code
    declared = client.get("/jobs/export?tab=parameters").text
    for name in ("day", "level", "full"):
        assert f'<td class="mono">{name}</td>' in declared


def test_the_environments_tab_shows_each_merged_configuration_with_secrets_masked(
    client: TestClient,
) -> None:
    deploy_package(
        client,
        "configured",
        {
            "runwright.toml": 'entrypoint = "main.py"\n',
            "main.py": "print('hi')\n",
            "config.json": '{"db": {"host": "localhost", "port": 5432}, "retries": 1}',
            "config.production.json": '{"db": {"host": "db1.internal", "password": "pr0d-s3cret"}}',
            "config.staging.json": '{"retries": 3}',
        },
    )
    page = client.get("/jobs/configured?tab=environments")
    assert page.status_code == 200
    text = page.text
    assert "default (no environment)" in text
    assert "From config.json + config.production.json" in text
    assert "db1.internal" in text  # production's host over the base one
    assert "5432" in text  # kept from the base
    assert "pr0d-s3cret" not in text
    assert "From config.json + config.staging.json" in text
    assert text.count("run with <code>runwright run configured --env") == 2


def test_pages_render_with_a_notice_when_the_vendor_files_are_missing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runwright.web import templating

    gone = {name: f"vendor/missing-{name}.js" for name in templating.VENDOR_FILES}
    monkeypatch.setattr(templating, "VENDOR_FILES", gone)
    upload_script(client)
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert "scripts/fetch_assets.sh" in dashboard.text
    assert "chart.umd.min.js" not in dashboard.text
    code = client.get("/jobs/hello?tab=code")
    assert code.status_code == 200
    assert "the editor has no highlighting" in code.text
    assert "<textarea" in code.text
    assert "codemirror.js" not in code.text


# -- the code editor's endpoint --------------------------------------------------------------
def test_saving_files_creates_a_new_version_of_a_package(
    client: TestClient, runtime: Runtime
) -> None:
    deploy_package(
        client, "export", {"runwright.toml": 'entrypoint = "main.py"\n', "main.py": "x = 1\n"}
    )
    response = client.put(
        "/api/jobs/export/files",
        json={"files": {"main.py": "x = 2\n", "lib/util.py": "y = 3\n"}, "message": "bump x"},
    )
    assert response.status_code == 201, response.text
    saved = response.json()
    assert saved["created"] is True
    assert saved["package"]["version"] == 2
    assert saved["package"]["current"] is True
    assert saved["message"] == "bump x"
    files = client.get("/api/jobs/export/files").json()
    assert files["version"] == 2
    texts = {f["path"]: f["text"] for f in files["files"]}
    assert texts == {
        "runwright.toml": 'entrypoint = "main.py"\n',
        "main.py": "x = 2\n",
        "lib/util.py": "y = 3\n",
    }
    old = client.get("/api/jobs/export/files?version=1").json()
    assert {f["path"] for f in old["files"]} == {"runwright.toml", "main.py"}
    again = client.put("/api/jobs/export/files", json={"files": {"main.py": "x = 2\n"}})
    assert again.status_code == 201
    assert again.json()["created"] is False
    assert again.json()["package"]["version"] == 2


def test_saving_a_script_rebuilds_its_manifest_from_the_script(
    client: TestClient, runtime: Runtime
) -> None:
    upload_script(client)
    new = '# /// script\n# dependencies = ["httpx==0.28.1"]\n# ///\nprint("v2")\n'
    response = client.put("/api/jobs/hello/files", json={"files": {"hello.py": new}})
    assert response.status_code == 201, response.text
    assert response.json()["package"]["requirements"] == ["httpx==0.28.1"]
    assert response.json()["job"]["kind"] == "script"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"files": {"hello.py": "print('x'\n"}}, 422, "syntax error on line 1"),
        ({"files": {"../escape.py": "x = 1\n"}}, 422, "contains an empty, '.' or '..' part"),
        ({"files": {"/etc/passwd": "x"}}, 422, "is absolute"),
        ({"files": {}}, 422, "Nothing to save"),
        ({"files": {"extra.py": "x = 1\n"}}, 422, "exactly one .py file"),
        ({"files": {"runwright.toml": 'entrypoint = "x.py"\n'}}, 422, "Edit that block instead"),
        ({"files": {"hello.py": "x"}, "unknown": 1}, 422, "unknown"),
        ({"delete": ["nope.txt"]}, 422, "no such file"),
    ],
)
def test_refused_saves_name_the_problem_and_store_nothing(
    client: TestClient, runtime: Runtime, body: dict[str, Any], status: int, words: str
) -> None:
    upload_script(client)
    before = client.get("/api/jobs/hello/packages").json()
    response = client.put("/api/jobs/hello/files", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert client.get("/api/jobs/hello/packages").json() == before


def test_an_invalid_package_file_is_refused_and_nothing_is_stored(
    client: TestClient, runtime: Runtime
) -> None:
    deploy_package(
        client, "export", {"runwright.toml": 'entrypoint = "main.py"\n', "main.py": "x = 1\n"}
    )
    keys_before = stored_objects(runtime)
    for files in (
        {"runwright.toml": "entrypoint = [not toml"},
        {"config.json": "[1, 2]"},
        {"runwright.toml": 'entrypoint = "missing.py"\n'},
    ):
        response = client.put("/api/jobs/export/files", json={"files": files})
        assert response.status_code == 422, (files, response.text)
        assert response.json()["error"]
    assert len(client.get("/api/jobs/export/packages").json()) == 1
    assert stored_objects(runtime) == keys_before


def test_saving_files_of_unknown_or_task_jobs_is_refused(client: TestClient) -> None:
    missing = client.put("/api/jobs/ghost/files", json={"files": {"a.py": "x = 1\n"}})
    assert missing.status_code == 404
    assert "ghost" in missing.json()["error"]
    created = client.post("/api/jobs", json={"name": "t", "kind": "task", "task_type": "echo"})
    assert created.status_code == 201
    task = client.put("/api/jobs/t/files", json={"files": {"a.py": "x = 1\n"}})
    assert task.status_code == 409
    assert "no code to edit" in task.json()["error"]


def test_a_viewer_can_read_code_but_not_save_it(runtime: Runtime) -> None:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as admin:
        sign_in(admin, runtime, "admin")
        upload_script(admin)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as viewer:
        viewer.event_hooks = {"request": [], "response": [no_server_errors]}
        sign_in(viewer, runtime, "viewer")
        assert viewer.get("/api/jobs/hello/files").status_code == 200
        refused = viewer.put("/api/jobs/hello/files", json={"files": {"hello.py": "x = 1\n"}})
        assert refused.status_code == 403
        page = viewer.get("/jobs/hello?tab=code").text
        assert "Save as new version" not in page
        assert "readonly" in page
        assert "Run…" not in viewer.get("/jobs/hello").text
        assert viewer.get("/credentials").status_code == 403
        assert 'href="/credentials"' not in viewer.get("/").text


# -- versions and diff ----------------------------------------------------------------------
def test_the_versions_tab_shows_a_diff_between_two_versions(client: TestClient) -> None:
    upload_script(client, data=b'print("first line")\nprint("kept")\n')
    client.put(
        "/api/jobs/hello/files",
        json={"files": {"hello.py": 'print("second line")\nprint("kept")\n'}},
    )
    page = client.get("/jobs/hello?tab=versions&a=1&b=2").text
    assert "v2" in page
    assert '<span class="diff__del">-print(&#34;first line&#34;)</span>' in page
    assert '<span class="diff__add">+print(&#34;second line&#34;)</span>' in page
    assert 'data-action="restore"' in page
    same = client.get("/jobs/hello?tab=versions&a=2&b=2").text
    assert "diff__add" not in same
    missing = client.get("/jobs/hello?tab=versions&a=1&b=9").text
    assert "has no version v9" in missing


# -- secrets ---------------------------------------------------------------------------------
def test_no_credential_secret_appears_in_any_page(client: TestClient, runtime: Runtime) -> None:
    runtime.credentials.create(
        "ops-password", username="ops", secret=SecretPart(password=SECRET_PASSWORD), tags=["web"]
    )
    passphrase = SECRET_PASSWORD + "-phrase"
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key(passphrase=passphrase)
    key_body = key.decode().splitlines()[1]
    runtime.credentials.create(
        "ops-key",
        username="ops",
        secret=SecretPart(private_key=key.decode(), passphrase=passphrase),
        tags=["db"],
    )
    runtime.variables.set("api_token", SECRET_VARIABLE, sensitive=True)
    upload_script(client)
    run = client.post("/api/jobs/hello/runs", json={}).json()
    pages = [*PAGES, f"/runs/{run['id']}", "/jobs/hello", "/jobs/hello?tab=code"]
    seen = ""
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        seen += response.text
    assert "ops-password" in seen
    assert "ops-key" in seen
    assert "api_token" in seen
    for secret in (SECRET_PASSWORD, key_body, SECRET_VARIABLE, "BEGIN OPENSSH"):
        assert secret not in seen
