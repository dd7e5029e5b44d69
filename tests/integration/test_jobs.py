"""Jobs, package versions and script uploads over a real database (SQLite and PostgreSQL),
through JobService and the REST API (FastAPI's TestClient). No run is executed here."""

from __future__ import annotations

import io
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.artifacts.keys import package_key
from runwright.artifacts.package import build_from_files, build_package
from runwright.config import Settings
from runwright.errors import Conflict, InvalidRequest, NotFound
from runwright.services.jobs import JobSettings, RunOptions
from runwright.services.runtime import Runtime
from tests.helpers import admin_headers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MANIFEST = 'entrypoint = "main.py"\n'
SCRIPT_LIMIT = 300
NAME_PATTERN = r"^[a-z][a-z0-9_]*\.py$"


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(
        settings.with_overrides(script_max_bytes=SCRIPT_LIMIT, script_name_pattern=NAME_PATTERN),
        create_schema=True,
    )
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(
        create_app(runtime),
        raise_server_exceptions=False,
        headers=admin_headers(runtime),
    ) as test_client:
        yield test_client


def write_job(folder: Path, main: str = "print('hello')\n", **extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runwright.toml").write_text(MANIFEST)
    (folder / "main.py").write_text(main)
    for name, content in extra.items():
        (folder / name.replace("__", ".")).write_text(content)
    return folder


def stored_keys(runtime: Runtime) -> list[str]:
    return [info.key for info in runtime.store.list("")]


def all_jobs(runtime: Runtime) -> list[str]:
    return [j.name for j in runtime.jobs.list()] + [
        j.name for j in runtime.jobs.list(archived=True)
    ]


def zip_of(entries: list[tuple[str, str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in entries:
            zf.writestr(name, content)
    return buffer.getvalue()


# -- versions ----------------------------------------------------------------------------------
def test_deploying_the_same_folder_twice_keeps_one_version(
    runtime: Runtime, tmp_path: Path
) -> None:
    folder = write_job(tmp_path / "job")
    first = runtime.jobs.deploy("nightly", build_package(folder).data, created_by="alice")
    assert (first.created, first.uploaded) == (True, True)
    assert first.package.version == 1
    assert first.package.created_by == "alice"
    assert first.job.kind == "package"
    assert first.job.current_package_id == first.package.id
    assert stored_keys(runtime) == [package_key(first.job.id, first.package.sha256)]

    (folder / "main.py").touch()  # a new mtime: the same content
    again = runtime.jobs.deploy("nightly", build_package(folder).data)
    assert (again.created, again.uploaded) == (False, False)
    assert again.package.id == first.package.id
    assert [p.version for p in runtime.jobs.packages("nightly")] == [1]
    assert len(stored_keys(runtime)) == 1


def test_a_changed_file_makes_v2_and_v1_can_be_activated_again(
    runtime: Runtime, tmp_path: Path
) -> None:
    folder = write_job(tmp_path / "job")
    v1 = runtime.jobs.deploy("etl", build_package(folder).data).package
    (folder / "main.py").write_text("print('v2')\n")
    deployed = runtime.jobs.deploy("etl", build_package(folder).data)
    v2 = deployed.package
    assert (deployed.created, deployed.uploaded, v2.version) == (True, True, 2)
    assert v2.sha256 != v1.sha256
    assert [p.version for p in runtime.jobs.packages("etl")] == [2, 1]
    assert runtime.jobs.get("etl").current_package_id == v2.id
    assert len(stored_keys(runtime)) == 2

    job = runtime.jobs.activate("etl", 1)
    assert job.current_package_id == v1.id
    run = runtime.jobs.run("etl", RunOptions())
    assert run.package_id == v1.id
    assert run.payload["version"] == 1
    assert run.payload["sha256"] == v1.sha256

    with pytest.raises(NotFound, match=r"no version v9; versions: v2, v1"):
        runtime.jobs.activate("etl", 9)

    # deploying v1's content again makes it current without a third version
    (folder / "main.py").write_text("print('hello')\n")
    runtime.jobs.activate("etl", 2)
    back = runtime.jobs.deploy("etl", build_package(folder).data)
    assert (back.created, back.uploaded, back.package.version) == (False, False, 1)
    assert back.job.current_package_id == v1.id


def test_run_records_the_package_and_counts_against_the_job(
    runtime: Runtime, tmp_path: Path
) -> None:
    deployed = runtime.jobs.deploy("counted", build_package(write_job(tmp_path / "j")).data)
    assert deployed.job.total_runs == 0
    assert deployed.job.last_run_at is None

    first = runtime.jobs.run("counted", RunOptions(params={"n": 1}, args=["a"]))
    assert first.package_id == deployed.package.id
    assert first.job == "counted"
    assert first.type == "package"
    assert first.payload["params"] == {"n": 1}
    assert first.payload["args"] == ["a"]
    assert first.payload["storage_key"] == deployed.package.storage_key
    job = runtime.jobs.get("counted")
    assert (job.total_runs, job.last_run_id) == (1, first.id)
    assert job.last_run_at is not None
    assert abs(job.last_run_at - time.time()) < 60

    time.sleep(0.01)
    second = runtime.jobs.run("counted", RunOptions())
    later = runtime.jobs.get("counted")
    assert (later.total_runs, later.last_run_id) == (2, second.id)
    assert later.last_run_at is not None
    assert later.last_run_at >= job.last_run_at

    # an idempotent repeat is not another run
    keyed = runtime.jobs.run("counted", RunOptions(idempotency_key="k"))
    again = runtime.jobs.run("counted", RunOptions(idempotency_key="k"))
    assert again.id == keyed.id
    assert runtime.jobs.get("counted").total_runs == 3


def test_runs_are_refused_without_code_or_when_disabled_or_archived(
    runtime: Runtime, tmp_path: Path
) -> None:
    runtime.jobs.create("empty", JobSettings(kind="package"))
    with pytest.raises(Conflict, match=r"has no code yet; deploy it with `runwright deploy"):
        runtime.jobs.run("empty", RunOptions())
    runtime.jobs.deploy("off", build_package(write_job(tmp_path / "j")).data)
    runtime.jobs.update("off", JobSettings(enabled=False))
    with pytest.raises(Conflict, match="disabled; enable it"):
        runtime.jobs.run("off", RunOptions())
    runtime.jobs.archive("off")
    with pytest.raises(Conflict, match="archived"):
        runtime.jobs.run("off", RunOptions())
    with pytest.raises(NotFound, match="runwright job list"):
        runtime.jobs.run("nope", RunOptions())
    with pytest.raises(InvalidRequest, match="Job name"):
        runtime.jobs.deploy("bad name", build_package(write_job(tmp_path / "k")).data)


# -- script uploads --------------------------------------------------------------------------
def upload(client: TestClient, filename: str, data: bytes, **form: str) -> Any:
    return client.post("/api/scripts", files={"file": (filename, data, "text/x-python")}, data=form)


@pytest.mark.parametrize(
    ("filename", "data", "status", "fragments"),
    [
        pytest.param(
            "report.txt", b"print(1)\n", 422, ["not a Python script", "only .py"], id="extension"
        ),
        pytest.param(
            "report.py",
            b"print('x')\n" * 40,
            413,
            [f"limit of {SCRIPT_LIMIT:,} bytes", "make it smaller"],
            id="too-large",
        ),
        pytest.param(
            "Report-2.py",
            b"print(1)\n",
            422,
            ["does not match the required name pattern", "rename the file"],
            id="name-pattern",
        ),
        pytest.param(
            "report.py",
            b"print('ok')\ndef broken(:\n    pass\n",
            422,
            ["syntax error on line 2", "Fix it and upload again"],
            id="syntax-error",
        ),
        pytest.param("report.py", b"", 422, ["'report.py' is empty"], id="empty"),
        pytest.param("report.py", b"  \n\n\t\n", 422, ["'report.py' is empty"], id="blank"),
        pytest.param("report.py", b"print('\xff\xfe')\n", 422, ["not UTF-8"], id="not-utf8"),
    ],
)
def test_refused_script_uploads_say_what_to_fix_and_store_nothing(
    client: TestClient,
    runtime: Runtime,
    filename: str,
    data: bytes,
    status: int,
    fragments: list[str],
) -> None:
    response = upload(client, filename, data)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message
    assert all_jobs(runtime) == []
    assert stored_keys(runtime) == []
    assert client.get("/api/scripts").json() == []


def test_upload_sanitises_the_file_name(tmp_path: Path, database_url: str) -> None:
    """docs/packages.md: Names are sanitised (`my report!.py` -> `my_report.py`)."""
    settings = Settings(home=tmp_path / "home2", database_url=database_url)
    rt = Runtime.open(settings, create_schema=True)  # no name pattern here
    try:
        with TestClient(
            create_app(rt),
            raise_server_exceptions=False,
            headers=admin_headers(rt),
        ) as client:
            response = upload(client, "../../my report!.py", b"print('hi')\n")
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["job"]["kind"] == "script"
            key = package_key(body["job"]["id"], body["package"]["sha256"])
            with zipfile.ZipFile(io.BytesIO(rt.store.get(key))) as zf:
                names = sorted(zf.namelist())
                script = zf.read(body["package"]["entrypoint"])
            assert script == b"print('hi')\n"
            assert (body["package"]["entrypoint"], body["job"]["name"]) == (
                "my_report.py",
                "my-report",
            )
            assert names == ["my_report.py", "runwright.toml"]
    finally:
        rt.close()


def test_script_versions_list_and_archive(client: TestClient, runtime: Runtime) -> None:
    first = upload(client, "daily_report.py", b"print(1)\n", description="Daily numbers")
    assert first.status_code == 201, first.text
    assert first.json()["job"]["name"] == "daily-report"
    assert (first.json()["created"], first.json()["package"]["version"]) == (True, 1)
    same = upload(client, "daily_report.py", b"print(1)\n", description="Daily numbers")
    assert (same.json()["created"], same.json()["uploaded"]) == (False, False)
    second = upload(client, "daily_report.py", b"print(2)\n", description="Daily numbers")
    assert second.json()["package"]["version"] == 2

    listed = client.get("/api/scripts").json()
    assert [(s["name"], s["version"], s["total_runs"], s["last_status"]) for s in listed] == [
        ("daily-report", 2, 0, None)
    ]
    assert listed[0]["description"] == "Daily numbers"

    runs = [client.post("/api/jobs/daily-report/runs", json={}).json() for _ in range(2)]
    assert {r["status"] for r in runs} == {"queued"}
    assert client.post(f"/api/runs/{runs[1]['id']}/cancel").status_code == 200
    listed = client.get("/api/scripts").json()
    assert len(listed) == 1
    assert (listed[0]["total_runs"], listed[0]["last_run_id"]) == (2, runs[1]["id"])
    assert (listed[0]["last_status"], listed[0]["last_outcome"]) == ("canceled", "canceled")
    assert listed[0]["last_run_at"] is not None

    archived = client.delete("/api/scripts/daily-report")
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived"] is True
    assert client.get("/api/scripts").json() == []
    assert client.get("/api/jobs").json() == []
    hidden = client.get("/api/jobs", params={"archived": True}).json()
    assert [(j["name"], j["total_runs"]) for j in hidden] == [("daily-report", 2)]
    # history kept: runs, versions and stored packages
    assert client.get(f"/api/runs/{runs[0]['id']}").json()["job"] == "daily-report"
    versions = client.get("/api/jobs/daily-report/packages").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert len(stored_keys(runtime)) == 2
    refused = client.post("/api/jobs/daily-report/runs", json={})
    assert refused.status_code == 409
    assert "archived" in refused.json()["error"]
    assert client.delete("/api/scripts/nope").status_code == 404


def test_uploading_the_same_script_again_is_the_same_version(client: TestClient) -> None:
    """`runwright script upload report.py` without --description after a first upload
    with one: the code is unchanged, so no new version and the description stays."""
    first = upload(client, "report.py", b"print(1)\n", description="Monthly report")
    assert first.status_code == 201, first.text
    again = upload(client, "report.py", b"print(1)\n")
    assert again.status_code == 201, again.text
    assert again.json()["package"]["version"] == 1
    assert again.json()["created"] is False
    assert again.json()["job"]["description"] == "Monthly report"


def test_a_script_cannot_take_the_name_of_a_package_job(
    client: TestClient, runtime: Runtime
) -> None:
    deployed = runtime.jobs.deploy(
        "report",
        build_from_files(
            [("runwright.toml", MANIFEST.encode(), False), ("main.py", b"print(1)\n", False)]
        ).data,
    )
    response = upload(client, "report.py", b"print(2)\n")
    assert response.status_code == 409
    assert "upload the script under another file name" in response.json()["error"]
    assert [p.version for p in runtime.jobs.packages("report")] == [deployed.package.version]


# -- package uploads -------------------------------------------------------------------------
def test_upload_package_zip(client: TestClient, runtime: Runtime, tmp_path: Path) -> None:
    data = build_package(write_job(tmp_path / "job", config__json='{"a": 1}')).data
    response = client.post(
        "/api/jobs/exporter/packages", files={"file": ("exporter.zip", data, "application/zip")}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["created"], body["uploaded"]) == (True, True)
    assert body["job"]["name"] == "exporter"
    assert body["job"]["current_version"] == 1
    assert body["package"]["entrypoint"] == "main.py"
    assert body["package"]["current"] is True
    again = client.post(
        "/api/jobs/exporter/packages", files={"file": ("x.zip", data, "application/zip")}
    )
    assert again.status_code == 201
    assert (again.json()["created"], again.json()["uploaded"]) == (False, False)
    assert stored_keys(runtime) == [package_key(body["job"]["id"], body["package"]["sha256"])]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(b"this is not a zip", "not a valid zip file", id="not-a-zip"),
        pytest.param(zip_of([("main.py", "print(1)")]), "no runwright.toml", id="no-manifest"),
        pytest.param(
            zip_of([("runwright.toml", MANIFEST), ("main.py", ""), ("../evil.py", "")]),
            "leaving its folder",
            id="traversal",
        ),
        pytest.param(
            zip_of([("runwright.toml", 'entrypoint = "run.py"\n'), ("main.py", "")]),
            "entrypoint run.py is not in the package",
            id="entrypoint-missing",
        ),
        pytest.param(
            zip_of([("runwright.toml", MANIFEST), ("main.py", ""), ("config.json", "{")]),
            "config.json is not valid JSON",
            id="config",
        ),
    ],
)
def test_invalid_package_uploads_are_422_and_store_nothing(
    client: TestClient, runtime: Runtime, data: bytes, fragment: str
) -> None:
    response = client.post(
        "/api/jobs/broken/packages", files={"file": ("broken.zip", data, "application/zip")}
    )
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]
    assert all_jobs(runtime) == []
    assert stored_keys(runtime) == []


def test_a_corrupt_package_upload_is_422_not_500(client: TestClient, runtime: Runtime) -> None:
    """A zip whose runwright.toml fails its CRC check (a truncated or tampered upload)."""
    data = bytearray(zip_of([("runwright.toml", MANIFEST), ("main.py", "print(1)\n")]))
    # the CRC-32 of the first entry: local header offset 14, central header offset 16
    data[14:18] = b"\xef\xbe\xad\xde"
    central = data.find(b"PK\x01\x02")
    data[central + 16 : central + 20] = b"\xef\xbe\xad\xde"
    response = client.post(
        "/api/jobs/corrupt/packages", files={"file": ("c.zip", bytes(data), "application/zip")}
    )
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    assert all_jobs(runtime) == []
    assert stored_keys(runtime) == []


# -- runs through the API --------------------------------------------------------------------
def test_run_a_job_with_params_args_and_an_environment(
    client: TestClient, runtime: Runtime, tmp_path: Path
) -> None:
    folder = write_job(
        tmp_path / "job",
        config__json='{"db": {"host": "localhost"}}',
        config__prod__json='{"db": {"host": "prod-db"}}',
        config__staging__json='{"db": {"host": "staging-db"}}',
    )
    runtime.jobs.deploy("envjob", build_package(folder).data)
    response = client.post(
        "/api/jobs/envjob/runs",
        json={"params": {"n": 3, "tags": ["a"]}, "args": ["--fast", "x"], "environment": "prod"},
    )
    assert response.status_code == 202, response.text
    run = response.json()
    assert (run["job"], run["environment"], run["status"]) == ("envjob", "prod", "queued")
    assert run["payload"]["params"] == {"n": 3, "tags": ["a"]}
    assert run["payload"]["args"] == ["--fast", "x"]
    assert run["payload"]["environment"] == "prod"
    assert run["package_id"] == runtime.jobs.get("envjob").current_package_id
    assert client.get("/api/jobs/envjob").json()["total_runs"] == 1

    missing = client.post("/api/jobs/envjob/runs", json={"environment": "dev"})
    assert missing.status_code == 422
    error = missing.json()["error"]
    for fragment in ("'dev'", "it has: prod, staging", "config.<env>.json"):
        assert fragment in error
    bad = client.post("/api/jobs/envjob/runs", json={"environment": "no way"})
    assert bad.status_code == 422
    assert "letters, digits" in bad.json()["error"]
    unknown = client.post("/api/jobs/nope/runs", json={})
    assert unknown.status_code == 404
    extra = client.post("/api/jobs/envjob/runs", json={"parameters": {}})
    assert extra.status_code == 422  # a misspelt field is refused, not ignored
    assert client.get("/api/jobs/envjob").json()["total_runs"] == 1


def test_an_environment_is_free_when_the_package_declares_none(
    client: TestClient, runtime: Runtime, tmp_path: Path
) -> None:
    runtime.jobs.deploy("plain", build_package(write_job(tmp_path / "job")).data)
    response = client.post("/api/jobs/plain/runs", json={"environment": "anything"})
    assert response.status_code == 202, response.text
    assert response.json()["environment"] == "anything"
