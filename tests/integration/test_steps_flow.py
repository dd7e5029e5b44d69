"""Multi-step jobs end to end, with real components only: an HTTP API served by the
test, a PostgreSQL database for the ``sql`` step, the moto S3 server as the artifact
store, and a real OpenSSH server (tests/sshserver.py) for the ``sftp`` step. The
runwright database is SQLite and PostgreSQL in turn; an in-process worker runs the
steps.

The flow of the issue: ``http`` GET a customer -> ``sql`` its orders (the id as a
bound parameter, the connection a sensitive variable) -> ``file`` write them as XLSX
to the store -> ``sftp`` upload it (password, host key pinned).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pwd
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from openpyxl import load_workbook
from sqlalchemy.engine import make_url

from runwright.artifacts.keys import context_key, log_key, output_key
from runwright.config import Settings
from runwright.model.context import MASK, JobContext
from runwright.model.states import RunStatus
from runwright.services.runtime import Runtime
from tests.conftest import PG_SERVER, need_service, pg_url
from tests.helpers import wait_for_run, wait_until
from tests.integration.test_execution import Rig
from tests.s3server import S3Server, S3ServerFailed, moto_server
from tests.sshserver import SshServer

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
S3_ACCESS_KEY = "rw-flow-access"
S3_SECRET_KEY = "rw-flow-SECRET-71be0c"
CUSTOMER = {"id": 42, "name": "ACME Corp", "tier": "gold"}
ORDERS = [  # (id, customer_id, item, amount)
    (1, 42, "anvil", "125.50"),
    (2, 7, "rocket skates", "99.00"),
    (3, 42, "bird seed", "3.25"),
    (4, 42, "giant magnet", "410.00"),
]
EXPECTED_ROWS = [
    {"id": 1, "item": "anvil", "amount": 125.5},
    {"id": 3, "item": "bird seed", "amount": 3.25},
    {"id": 4, "item": "giant magnet", "amount": 410},
]
STEP_IDS = ["fetch", "query", "write", "upload"]


# -- services ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(moto_server())
        except S3ServerFailed as exc:
            need_service(f"an S3 API server (moto) could not be started: {exc}")
        yield server


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> str:
    name = f"rw-flow-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    ).create_bucket(Bucket=name)
    return name


class Api:
    """A small JSON API on loopback that counts its hits."""

    def __init__(self) -> None:
        self.hits = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with api._lock:
                    api.hits += 1
                    api.paths.append(self.path)
                if self.path.split("?")[0] == "/customers/current":
                    status, body = 200, json.dumps(CUSTOMER).encode()
                else:
                    status, body = 404, b'{"error": "not found"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    try:
        yield server
    finally:
        server.close()


@dataclass
class OrdersDb:
    """A PostgreSQL database with an ``orders`` table, read by the sql step through a
    role of its own with a password (the sensitive part of the connection URL)."""

    url: str
    password: str
    database: str

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(pg_url(self.database), autocommit=True, connect_timeout=5)

    def sql_hits(self) -> int:
        """How many times the sql step's query ran (it inserts into sql_hits)."""
        with self.admin() as conn:
            row = conn.execute("SELECT count(*) FROM sql_hits").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def orders_db(database_url: str) -> Iterator[OrdersDb]:
    """On PostgreSQL the test's own database; with SQLite as runwright's database, a
    PostgreSQL database created for the test (and dropped after it)."""
    suffix = uuid.uuid4().hex[:10]
    own = not database_url.startswith("postgresql")
    database = f"rw_orders_{suffix}" if own else make_url(database_url).database
    assert database
    role, password = f"rw_orders_{suffix}", f"Orders-Pw-{suffix}"
    try:
        admin = psycopg.connect(pg_url("postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        need_service(f"PostgreSQL at {PG_SERVER} is not reachable: {exc}")
    with admin:
        if own:
            admin.execute(f'CREATE DATABASE "{database}"')
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    db = OrdersDb(
        url=make_url(PG_SERVER)
        .set(username=role, password=password, database=database)
        .render_as_string(hide_password=False),
        password=password,
        database=database,
    )
    try:
        with db.admin() as conn:
            conn.execute(
                "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, "
                "item text NOT NULL, amount numeric(10, 2) NOT NULL)"
            )
            conn.execute("CREATE TABLE sql_hits (at timestamptz NOT NULL DEFAULT now())")
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s)", ORDERS)
            conn.execute(f'GRANT SELECT ON orders TO "{role}"')
            conn.execute(f'GRANT SELECT, INSERT ON sql_hits TO "{role}"')
        yield db
    finally:
        if own:
            with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        else:
            with db.admin() as conn:
                conn.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def remote_dir(ssh_server: SshServer) -> Iterator[Path]:
    """A folder of this test in rwtest's home (the home is shared by xdist workers)."""
    folder = ssh_server.make_dir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def rig(settings: Settings, s3_server: S3Server, s3_bucket: str) -> Iterator[Rig]:
    """A runtime whose artifact store is the S3 server, with one in-process worker."""
    runtime = Runtime.open(
        settings.with_overrides(
            job_kill_grace=0.5,
            storage_url=f"s3://{s3_bucket}/flow-{uuid.uuid4().hex[:10]}",
            s3_endpoint_url=s3_server.endpoint_url,
            s3_access_key_id=S3_ACCESS_KEY,
            s3_secret_access_key=S3_SECRET_KEY,
        ),
        create_schema=True,
    )
    flow = Rig(runtime=runtime)
    worker = runtime.worker(concurrency=2, in_process=True)
    worker.start()
    flow.workers.append(worker)
    try:
        yield flow
    finally:
        worker.stop_and_wait(grace=1)
        runtime.close()


# -- the flow ----------------------------------------------------------------------------
def sftp_step(
    ssh: SshServer, remote: Path, *, host_key: str | None = None, **inputs: Any
) -> dict[str, Any]:
    return {
        "host": ssh.host,
        "port": ssh.port,
        "username": ssh.username,
        "host_key": host_key or ssh.host_key,
        "remote_dir": str(remote),
        **inputs,
    }


def flow_definition(
    api: Api,
    ssh: SshServer,
    remote: Path,
    *,
    table: str = "orders",
    filename: str = "orders-{{ steps.fetch.output.json.id }}.xlsx",
) -> dict[str, Any]:
    # The insert in the WITH runs once per execution of the query: sql_hits counts them.
    query = (
        "WITH hit AS (INSERT INTO sql_hits DEFAULT VALUES RETURNING 1) "
        f"SELECT id, item, amount FROM {table} WHERE customer_id = :customer_id ORDER BY id"
    )
    return {
        "description": "Orders of the current customer, as XLSX, to the SFTP drop",
        "steps": [
            {
                "id": "fetch",
                "uses": "http",
                "with": {"url": f"{api.url}/customers/current", "expect_status": [200]},
            },
            {
                "id": "query",
                "uses": "sql",
                "with": {
                    "connection": "orders_db",
                    "query": query,
                    "params": {"customer_id": "{{ steps.fetch.output.json.id }}"},
                },
            },
            {
                "id": "write",
                "uses": "file",
                "with": {
                    "action": "write",
                    "filename": filename,
                    "rows": "{{ steps.query.output.rows }}",
                    "sheet": "Orders",
                },
            },
            {
                "id": "upload",
                "uses": "sftp",
                "with": sftp_step(
                    ssh,
                    remote,
                    action="upload",
                    password="{{ variables.sftp_password }}",
                    files="{{ steps.write.output.filename }}",
                ),
            },
        ],
    }


def set_flow_variables(rig: Rig, db: OrdersDb, ssh: SshServer, **extra: Any) -> None:
    variables = rig.runtime.variables
    variables.set("orders_db", db.url, sensitive=True, description="orders database")
    variables.set("sftp_password", extra.pop("sftp_password", ssh.password), sensitive=True)
    for name, value in extra.items():
        variables.set(name, value)


def saved_context(rig: Rig, job_id: int, run_id: int) -> tuple[JobContext, bytes]:
    """The context as runwright loads it, and the raw object in the store."""
    raw = rig.runtime.store.get(context_key(job_id, run_id))
    return rig.runtime.contexts.load(job_id, run_id), raw


def all_log_text(rig: Rig, job_id: int, run_id: int) -> str:
    """Every line of the run, from the database and the log file in the store."""
    stored = rig.runtime.store.get(log_key(job_id, run_id)).decode()
    return "\n".join(rig.messages(run_id)) + "\n" + stored


def assert_secrets_absent(text: str | bytes, *secrets: str) -> None:
    data = text.decode() if isinstance(text, bytes) else text
    for secret in secrets:
        assert secret not in data, f"{secret!r} leaked"


def read_xlsx(data: bytes) -> dict[str, list[tuple[Any, ...]]]:
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    try:
        return {
            sheet.title: [tuple(row) for row in sheet.iter_rows(values_only=True)]
            for sheet in workbook.worksheets
        }
    finally:
        workbook.close()


def step_rows(rig: Rig, run_id: int) -> list[tuple[str, str, int]]:
    return [(s.step_id, s.status, s.attempt) for s in rig.runtime.steps.list(run_id)]


def wait_resumed(rig: Rig, run_id: int, previous_log_count: int) -> Any:
    """The run once a resumed attempt ended and its log is complete (the log_count of
    the earlier attempt is already set, so Rig.wait could return too early)."""
    wait_for_run(
        rig.runtime,
        run_id,
        timeout=30,
        check=lambda run: (run.log_count or 0) > previous_log_count,
    )
    return wait_until(
        lambda: rig._complete(run_id),
        timeout=10,
        what=f"the log of run {run_id} to be complete",
    )


# -- a. the four steps -------------------------------------------------------------------
def test_http_sql_file_sftp_flow(
    rig: Rig, api: Api, orders_db: OrdersDb, ssh_server: SshServer, remote_dir: Path
) -> None:
    deployed = rig.runtime.jobs.deploy_steps(
        "orders-export", flow_definition(api, ssh_server, remote_dir)
    )
    job_id = deployed.job.id
    set_flow_variables(rig, orders_db, ssh_server)
    run = rig.run("orders-export")
    done = rig.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED, f"{done.error}\n" + "\n".join(rig.messages(run.id))
    assert api.hits == 1
    assert api.paths == ["/customers/current"]
    assert orders_db.sql_hits() == 1

    # The file in the store, and the same bytes on the SFTP server, as rwtest.
    key = output_key(job_id, run.id, "orders-42.xlsx")
    stored = rig.runtime.store.get(key)
    uploaded = remote_dir / "orders-42.xlsx"
    assert uploaded.read_bytes() == stored
    assert uploaded.stat().st_uid == pwd.getpwnam(ssh_server.username).pw_uid
    assert read_xlsx(uploaded.read_bytes()) == {
        "Orders": [
            ("id", "item", "amount"),
            (1, "anvil", 125.5),
            (3, "bird seed", 3.25),
            (4, "giant magnet", 410),
        ]
    }

    # The saved context: every step's output and the file's metadata.
    context, raw = saved_context(rig, job_id, run.id)
    assert list(context.steps) == STEP_IDS
    for state in context.steps.values():
        assert (state.status, state.error, state.attempt) == ("succeeded", None, 1), state
        assert state.started_at is not None
        assert state.completed_at is not None
        assert state.completed_at >= state.started_at
    fetch = context.steps["fetch"].output
    assert fetch["status"] == 200
    assert fetch["json"] == CUSTOMER
    assert fetch["headers"]["content-type"] == "application/json"
    assert context.steps["query"].output == {
        "rows": EXPECTED_ROWS,
        "row_count": 3,
        "columns": ["id", "item", "amount"],
    }
    assert context.steps["write"].output == {
        "path": key,
        "filename": "orders-42.xlsx",
        "size": len(stored),
        "row_count": 3,
    }
    assert context.steps["upload"].output == {
        "files": [
            {
                "filename": "orders-42.xlsx",
                "remote_path": f"{remote_dir}/orders-42.xlsx",
                "size": len(stored),
            }
        ],
        "count": 1,
    }
    assert [f.to_json() | {"created_at": None} for f in context.files] == [
        {
            "path": key,
            "filename": "orders-42.xlsx",
            "size": len(stored),
            "mime_type": XLSX,
            "row_count": 3,
            "created_at": None,
            "step_id": "write",
        }
    ]
    assert context.variables == {"orders_db": MASK, "sftp_password": MASK}
    assert (context.execution_id, context.job_id, context.job) == (run.id, job_id, "orders-export")
    assert done.result == context.steps["upload"].output

    # The steps' rows.
    steps = rig.runtime.steps.list(run.id)
    assert [(s.step_id, s.position, s.uses, s.status, s.attempt, s.tries) for s in steps] == [
        ("fetch", 0, "http", "succeeded", 1, 1),
        ("query", 1, "sql", "succeeded", 1, 1),
        ("write", 2, "file", "succeeded", 1, 1),
        ("upload", 3, "sftp", "succeeded", 1, 1),
    ]
    assert all(s.error is None and s.error_type is None and s.duration is not None for s in steps)
    assert '"row_count":3' in (steps[1].output_summary or "")

    # No secret in the saved context's bytes or in any log line.
    log = all_log_text(rig, job_id, run.id)
    for text in (raw, log):
        assert_secrets_absent(text, orders_db.password, orders_db.url, ssh_server.password)
    assert json.loads(raw)["variables"] == {"orders_db": MASK, "sftp_password": MASK}
    for line in (
        "Step fetch (http) started",
        "Step query (sql) started",
        "Step write (file) started",
        "Step upload (sftp) started",
        "All 4 steps ended (4 succeeded)",
        f"Uploaded orders-42.xlsx ({len(stored):,} bytes) to {remote_dir}/orders-42.xlsx",
    ):
        assert line in log, line
    assert "is not verified" not in log  # the host key was pinned


# -- b. the context is saved after each step ---------------------------------------------
FAILURES = {
    # failing step: (definition changes, variable changes, error_type, words of the error)
    "query": ({"table": "missing_orders"}, {}, "sql", ['"missing_orders" does not exist']),
    "write": (
        {"filename": "{{ variables.report_name }}.xlsx"},
        {},
        "reference",
        ["report_name", "there is no key"],
    ),
    "upload": ({}, {"sftp_password": "not-the-Password-9"}, "auth", ["refused the login"]),
}


@pytest.mark.parametrize("failing", list(FAILURES))
def test_the_context_is_saved_after_each_step(
    rig: Rig,
    api: Api,
    orders_db: OrdersDb,
    ssh_server: SshServer,
    remote_dir: Path,
    failing: str,
) -> None:
    changes, variables, error_type, words = FAILURES[failing]
    deployed = rig.runtime.jobs.deploy_steps(
        "orders-export", flow_definition(api, ssh_server, remote_dir, **changes)
    )
    job_id = deployed.job.id
    set_flow_variables(rig, orders_db, ssh_server, **variables)
    run = rig.run("orders-export")
    done = rig.wait(run.id)
    assert done.status is RunStatus.FAILED, done.status
    uses = dict(zip(STEP_IDS, ["http", "sql", "file", "sftp"], strict=True))
    assert (done.error or "").startswith(f"Step {failing} ({uses[failing]}) failed: ")
    assert f"runwright runs resume {run.id}" in (done.error or "")

    position = STEP_IDS.index(failing)
    earlier, later = STEP_IDS[:position], STEP_IDS[position + 1 :]
    context, raw = saved_context(rig, job_id, run.id)
    for step_id in earlier:
        state = context.steps[step_id]
        assert state.status == "succeeded", (step_id, state.error)
        assert state.output, step_id
        assert state.error is None
    state = context.steps[failing]
    assert (state.status, state.error_type, state.output) == ("failed", error_type, None)
    for word in words:
        assert word in (state.error or ""), state.error
    assert state.completed_at is not None
    for step_id in later:
        assert step_id not in context.steps or context.steps[step_id].status == "pending"
    assert list(context.steps)[: position + 1] == STEP_IDS[: position + 1]

    # The outputs of the earlier steps are what the flow produced up to there.
    if "query" in earlier:
        assert context.steps["query"].output["rows"] == EXPECTED_ROWS
    if "write" in earlier:
        assert [f.filename for f in context.files] == ["orders-42.xlsx"]
        assert not (remote_dir / "orders-42.xlsx").exists()
    else:
        assert context.files == []

    rows = rig.runtime.steps.list(run.id)
    assert [(s.step_id, s.status) for s in rows] == [
        *[(s, "succeeded") for s in earlier],
        (failing, "failed"),
    ]
    assert rows[-1].error_type == error_type
    assert rows[-1].error == state.error
    assert api.hits == 1
    assert orders_db.sql_hits() == (1 if "query" in earlier else 0)

    wrong = variables.get("sftp_password", "")
    secrets = [orders_db.password, ssh_server.password] + ([wrong] if wrong else [])
    assert_secrets_absent(raw, *secrets)
    assert_secrets_absent(all_log_text(rig, job_id, run.id), *secrets)
    assert_secrets_absent(done.error or "", *secrets)


# -- c. resume ---------------------------------------------------------------------------
def test_resume_runs_only_the_failed_step_and_the_rest(
    rig: Rig, api: Api, orders_db: OrdersDb, ssh_server: SshServer, remote_dir: Path
) -> None:
    deployed = rig.runtime.jobs.deploy_steps(
        "orders-export",
        flow_definition(
            api, ssh_server, remote_dir, filename="{{ variables.report_name }}-{{ run_id }}.xlsx"
        ),
    )
    job_id = deployed.job.id
    set_flow_variables(rig, orders_db, ssh_server)
    run = rig.run("orders-export")
    first = rig.wait(run.id)
    assert first.status is RunStatus.FAILED
    assert "report_name" in (first.error or "")
    assert step_rows(rig, run.id) == [
        ("fetch", "succeeded", 1),
        ("query", "succeeded", 1),
        ("write", "failed", 1),
    ]
    failed = rig.runtime.steps.list(run.id)[-1]
    assert failed.error_type == "reference"
    assert "there is no key 'report_name'" in (failed.error or "")

    rig.runtime.variables.set("report_name", "weekly-orders")
    resumed = rig.runtime.runs.resume(run.id)
    assert resumed.status is RunStatus.QUEUED
    done = wait_resumed(rig, run.id, first.log_count or 0)
    assert done.status is RunStatus.SUCCEEDED, f"{done.error}\n" + "\n".join(rig.messages(run.id))
    assert done.attempt == 2

    # Steps 1 and 2 ran once in all: one hit on the API, one execution of the query.
    assert api.hits == 1
    assert orders_db.sql_hits() == 1
    assert step_rows(rig, run.id) == [
        ("fetch", "succeeded", 1),
        ("query", "succeeded", 1),
        ("write", "succeeded", 2),
        ("upload", "succeeded", 2),
    ]
    name = f"weekly-orders-{run.id}.xlsx"
    assert read_xlsx((remote_dir / name).read_bytes())["Orders"][1:] == [
        (1, "anvil", 125.5),
        (3, "bird seed", 3.25),
        (4, "giant magnet", 410),
    ]
    context, _ = saved_context(rig, job_id, run.id)
    assert {k: (s.status, s.attempt) for k, s in context.steps.items()} == {
        "fetch": ("succeeded", 1),
        "query": ("succeeded", 1),
        "write": ("succeeded", 2),
        "upload": ("succeeded", 2),
    }
    assert context.steps["query"].output["rows"] == EXPECTED_ROWS  # carried over
    assert context.variables["report_name"] == "weekly-orders"  # read fresh
    assert [f.filename for f in context.files] == [name]

    messages = rig.messages(run.id, "system")
    assert "Step fetch: succeeded in attempt 1; not run again" in messages
    assert "Step query: succeeded in attempt 1; not run again" in messages
    assert "Resuming from the saved context: 2 of 4 steps already done (fetch, query)" in messages
    assert sum("Step fetch (http) started" in m for m in messages) == 1
    assert sum("Step write (file) started" in m for m in messages) == 2


# -- d. SFTP specifics -------------------------------------------------------------------
def test_sftp_upload_with_a_private_key(rig: Rig, ssh_server: SshServer, remote_dir: Path) -> None:
    deployed = rig.runtime.jobs.deploy_steps(
        "key-upload",
        {
            "steps": [
                {
                    "id": "write",
                    "uses": "file",
                    "with": {
                        "action": "write",
                        "filename": "totals.csv",
                        "rows": [{"day": "2026-11-22", "total": 12}, {"day": "2026-11-23"}],
                    },
                },
                {
                    "id": "upload",
                    "uses": "sftp",
                    "with": sftp_step(
                        ssh_server,
                        remote_dir,
                        action="upload",
                        private_key="{{ variables.sftp_key }}",
                        files=["*.csv"],
                    ),
                },
            ]
        },
    )
    rig.runtime.variables.set("sftp_key", ssh_server.private_key, sensitive=True)
    log_before = len(ssh_server.log_text())
    run = rig.run("key-upload")
    done = rig.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED, f"{done.error}\n" + "\n".join(rig.messages(run.id))
    uploaded = remote_dir / "totals.csv"
    assert uploaded.read_bytes() == b"day,total\r\n2026-11-22,12\r\n2026-11-23,\r\n"
    assert uploaded.stat().st_uid == pwd.getpwnam(ssh_server.username).pw_uid
    sshd_log = ssh_server.log_text()[log_before:]
    assert f"Accepted publickey for {ssh_server.username}" in sshd_log
    assert "password for" not in sshd_log

    context, raw = saved_context(rig, deployed.job.id, run.id)
    assert context.steps["upload"].output["count"] == 1
    key_body = ssh_server.private_key.splitlines()[1]  # a line of the key's base64
    assert_secrets_absent(raw, key_body)
    assert_secrets_absent(all_log_text(rig, deployed.job.id, run.id), key_body)


def test_sftp_download_with_a_wildcard(rig: Rig, ssh_server: SshServer, remote_dir: Path) -> None:
    reports = {
        "report-1.csv": "region,total\nnorth,10\nsouth,20\n",
        "report-2.csv": "region,total\neast,5\n",
    }
    for name, text in {**reports, "other.txt": "not a report\n", "report-3.txt": "no"}.items():
        (remote_dir / name).write_text(text)
    deployed = rig.runtime.jobs.deploy_steps(
        "fetch-reports",
        {
            "steps": [
                {
                    "id": "download",
                    "uses": "sftp",
                    "with": sftp_step(
                        ssh_server,
                        remote_dir,
                        action="download",
                        password="{{ variables.sftp_password }}",
                        files="report-*.csv",
                    ),
                },
                {
                    "id": "read",
                    "uses": "file",
                    "with": {"action": "read", "path": "{{ files[0].path }}"},
                },
            ]
        },
    )
    job_id = deployed.job.id
    rig.runtime.variables.set("sftp_password", ssh_server.password, sensitive=True)
    run = rig.run("fetch-reports")
    done = rig.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED, f"{done.error}\n" + "\n".join(rig.messages(run.id))

    context, _ = saved_context(rig, job_id, run.id)
    downloaded = context.steps["download"].output
    assert downloaded["count"] == 2
    assert sorted((f["remote_path"], f["path"], f["size"]) for f in downloaded["files"]) == [
        (f"{remote_dir}/{name}", output_key(job_id, run.id, name), len(text))
        for name, text in sorted(reports.items())
    ]
    # Both files are in the context; reading one again records it again (same path,
    # so it replaces the download's entry), now with its row count and step.
    files = sorted(context.files, key=lambda f: f.filename)
    assert [(f.filename, f.size, f.mime_type) for f in files] == [
        (name, len(text), "text/csv") for name, text in sorted(reports.items())
    ]
    for metadata in files:
        assert metadata.path == output_key(job_id, run.id, metadata.filename)
        assert rig.runtime.store.get(metadata.path).decode() == reports[metadata.filename]
    [read] = [f for f in files if f.step_id == "read"]
    [other] = [f for f in files if f.step_id == "download"]
    assert (read.row_count, other.row_count) == (len(reports[read.filename].splitlines()) - 1, None)
    # Listed in the store under the run's output folder, and nothing else was fetched.
    listed = sorted(
        info.key for info in rig.runtime.store.list(f"jobs/{job_id}/executions/{run.id}/output/")
    )
    assert listed == [output_key(job_id, run.id, name) for name in sorted(reports)]
    # The later step read the first downloaded file through the context.
    expected = list(csv.DictReader(io.StringIO(reports[read.filename])))
    assert context.steps["read"].output["rows"] == expected
    assert context.steps["read"].output["columns"] == ["region", "total"]


@pytest.mark.parametrize("problem", ["host_key", "auth"])
def test_sftp_refusals_name_their_cause(
    rig: Rig, ssh_server: SshServer, remote_dir: Path, problem: str
) -> None:
    (remote_dir / "data.csv").write_text("a\n1\n")
    wrong_host = problem == "host_key"
    deployed = rig.runtime.jobs.deploy_steps(
        f"sftp-{problem.replace('_', '-')}",
        {
            "steps": [
                {
                    "id": "download",
                    "uses": "sftp",
                    "with": sftp_step(
                        ssh_server,
                        remote_dir,
                        host_key=ssh_server.wrong_host_key if wrong_host else None,
                        action="download",
                        password="{{ variables.sftp_password }}",
                        files="*.csv",
                    ),
                }
            ]
        },
    )
    password = ssh_server.password if wrong_host else "Wrong-Password-1b7"
    rig.runtime.variables.set("sftp_password", password, sensitive=True)
    log_before = len(ssh_server.log_text())
    run = rig.run(deployed.job.name)
    done = rig.wait(run.id)
    assert done.status is RunStatus.FAILED
    [step] = rig.runtime.steps.list(run.id)
    assert (step.step_id, step.status, step.error_type) == ("download", "failed", problem)
    where = f"{ssh_server.host}:{ssh_server.port}"
    if wrong_host:
        assert step.error is not None
        assert step.error.startswith(f"The host key of {where} does not match host_key")
        assert "someone may be in the middle" in step.error
    else:
        assert step.error == (
            f"{ssh_server.username}@{where} refused the login (Permission denied for user "
            f"{ssh_server.username} on host {ssh_server.host}); check username, password or key."
        )
    context, raw = saved_context(rig, deployed.job.id, run.id)
    assert context.steps["download"].error == step.error
    assert context.files == []
    assert_secrets_absent(raw, password)
    assert_secrets_absent(all_log_text(rig, deployed.job.id, run.id), password)

    # What sshd saw: the client hung up before authenticating, or a failed password.
    def sshd_saw() -> str | None:
        text = ssh_server.log_text()[log_before:]
        ended = "[preauth]" in text
        return text if ended else None

    sshd_log = wait_until(sshd_saw, timeout=5, what="sshd to log the connection")
    if wrong_host:
        assert "password for" not in sshd_log, sshd_log
        assert "Accepted" not in sshd_log
    else:
        assert f"Failed password for {ssh_server.username}" in sshd_log
    assert os.listdir(remote_dir) == ["data.csv"]
