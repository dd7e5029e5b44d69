"""Steps on targets, end to end: a real ``runwright server`` subprocess (REST API,
embedded worker) on SQLite and on PostgreSQL, a real OpenSSH server on loopback
(tests/sshserver.py) as every target, targets and credentials created through the API
and the CLI.

Several targets are names for the same sshd (one per test process); each test uses
tags of its own, so the tests that share a server never select each other's targets
or credentials. What is checked: per-target rows (``GET /api/runs/{id}/targets``),
log lines tagged with their target, the run's status and outcome for every verdict,
credential fall-back and statistics, host keys (pinned, trust on first use, changed),
python steps on targets, the run's own choice of targets, cancel, and that a
credential's password shows up nowhere (API, CLI, saved context, database, files).

The tests of the last section (k) reproduce bugs found while writing these and fail
until they are fixed: stale "running" rows, the start times and step status after a
cancel, remote commands left running after a cancel, a secret in an ssh command in the
server's log.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import re
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from runwright.config import Settings
from runwright.db.engine import create_engine
from runwright.model.targets import SecretPart
from runwright.services.runtime import Runtime
from tests.conftest import make_database
from tests.e2e.test_cli import Server, no_traceback, start_server
from tests.procs import RUNWRIGHT, Processes, free_port, wait_for
from tests.sshserver import SshServer, ssh_server_process

SECRET_KEY = Fernet.generate_key().decode()
CLI_TIMEOUT = 90.0  # a `runwright` process spends seconds importing on a busy machine
FINAL = {"succeeded", "failed", "canceled", "dead_letter"}
BLACKHOLE = "10.255.255.1"  # nothing answers there (see test_partial_failure_...)


# -- the server --------------------------------------------------------------------------
@dataclass
class Fleet:
    """One runwright server and the SSH server its targets point at."""

    server: Server
    database_url: str
    ssh: SshServer
    procs: Processes
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.server.url, headers=self.server.headers, timeout=20)

    @property
    def home(self) -> Path:
        return self.server.home

    # -- REST ----------------------------------------------------------------------------
    def api(self, method: str, path: str, *, expect: int | None = None, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.text)
            return response.json() if response.content else None
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def target(
        self,
        name: str,
        tags: Sequence[str],
        *,
        address: str | None = None,
        port: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "address": address or self.ssh.host,
            "port": port or self.ssh.port,
            "tags": list(tags),
            **fields,
        }
        created: dict[str, Any] = self.api("POST", "/api/targets", json=body)
        return created

    def targets(self, names: Sequence[str], tags: Sequence[str], **fields: Any) -> None:
        for name in names:
            self.target(name, tags, **fields)

    def credential(
        self,
        name: str,
        tags: Sequence[str],
        *,
        password: str | None = None,
        private_key: str | None = None,
        username: str | None = None,
        priority: int = 100,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "username": username or self.ssh.username,
            "priority": priority,
            "tags": list(tags),
        }
        if private_key is not None:
            body["private_key"] = private_key
        else:
            body["password"] = password or self.ssh.password
        created: dict[str, Any] = self.api("POST", "/api/credentials", json=body)
        return created

    def credential_info(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.api("GET", f"/api/credentials/{name}")
        return info

    def steps_job(self, job: str, *steps: dict[str, Any]) -> None:
        self.api("PUT", f"/api/jobs/{job}/steps", json={"steps": list(steps)})

    def package_job(self, job: str, files: dict[str, str]) -> None:
        """A package (job.yaml and modules) uploaded as `runwright deploy` would."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, text in files.items():
                archive.writestr(name, text)
        self.api(
            "POST",
            f"/api/jobs/{job}/packages",
            files={"file": ("package.zip", buffer.getvalue(), "application/zip")},
        )

    def run(self, job: str, targets: dict[str, Any] | None = None) -> int:
        body: dict[str, Any] = {} if targets is None else {"targets": targets}
        started = self.api("POST", f"/api/jobs/{job}/runs", json=body)
        return int(started["id"])

    def get_run(self, run_id: int) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/api/runs/{run_id}")
        return run

    def wait(self, run_id: int, timeout: float = 60.0) -> dict[str, Any]:
        """The run once it ended and its log is complete."""

        def done() -> dict[str, Any] | None:
            run = self.get_run(run_id)
            if run["status"] not in FINAL or not run["log_count"]:
                return None
            lines = self.lines(run_id)
            return run if lines and lines[-1]["seq"] >= run["log_count"] else None

        try:
            return wait_for(done, timeout=timeout, what=f"run {run_id} to end", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe(run_id)}") from None

    def run_and_wait(
        self, job: str, targets: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        return self.wait(self.run(job, targets), timeout=timeout)

    def lines(self, run_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.api(
                "GET", f"/api/runs/{run_id}/logs", params={"after": after, "limit": 5000}
            )
            found.extend(page["lines"])
            if len(page["lines"]) < 5000:
                return found
            after = page["next_after"]

    def messages(self, run_id: int, target: str | None = None) -> list[str]:
        return [
            line["message"]
            for line in self.lines(run_id)
            if target is None or line.get("target") == target
        ]

    def run_targets(self, run_id: int) -> dict[str, dict[str, Any]]:
        rows = self.api("GET", f"/api/runs/{run_id}/targets")
        by_name = {row["target"]: row for row in rows}
        assert len(by_name) == len(rows), rows  # one row per target (one step here)
        return by_name

    def context(self, run_id: int) -> dict[str, Any]:
        saved: dict[str, Any] = self.api("GET", f"/api/runs/{run_id}/context")
        return saved

    def describe(self, run_id: int) -> str:
        """The run, its targets and its lines: for failure messages."""
        with contextlib.suppress(Exception):
            run = self.get_run(run_id)
            rows = self.api("GET", f"/api/runs/{run_id}/targets")
            lines = [
                f"[{x.get('step')}/{x.get('target')}] {x['message']}" for x in self.lines(run_id)
            ]
            return (
                f"run: {run['status']}/{run['outcome']} {run['error']!r}\n"
                f"targets: {json.dumps(rows, indent=1)}\n" + "\n".join(lines[-60:])
            )
        return self.procs.tails(30)

    # -- CLI -----------------------------------------------------------------------------
    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNWRIGHT, *args],
            input=stdin,
            env=self.server.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def together(
        self, *commands: tuple[str, ...], stdin: Sequence[str | None] = ()
    ) -> list[subprocess.CompletedProcess[str]]:
        """Independent commands, two at a time (the test machines have two cores);
        ``stdin[i]`` is the input of the i-th."""
        inputs = list(stdin) + [None] * (len(commands) - len(stdin))
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda args, text: self.cli(*args, stdin=text), commands, inputs))


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done)
    return done.stdout


def succeeded(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_fleet(
    request: pytest.FixtureRequest,
    kind: str,
    folder: Path,
    ssh: SshServer,
    stack: contextlib.ExitStack,
    **env: str,
) -> Fleet:
    database_url = stack.enter_context(
        contextlib.contextmanager(make_database)(kind, request, folder)
    )
    procs = Processes(folder / "logs")
    stack.callback(procs.kill_all)
    server = start_server(
        procs,
        folder / "home",
        "--database-url",
        database_url,
        RUNWRIGHT_SECRET_KEY=SECRET_KEY,
        **env,
    )
    fleet = Fleet(server=server, database_url=database_url, ssh=ssh, procs=procs)
    stack.callback(fleet.http.close)
    return fleet


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fleet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    ssh_server: SshServer,
) -> Iterator[Fleet]:
    """A server per database for the module (tests keep apart by their tags)."""
    with contextlib.ExitStack() as stack:
        yield start_fleet(
            request,
            request.param,
            tmp_path_factory.mktemp(f"fleet-{request.param}"),
            ssh_server,
            stack,
        )


@pytest.fixture
def tag() -> str:
    """A tag of this test alone."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def remote_dir(ssh_server: SshServer) -> Iterator[Path]:
    folder = ssh_server.make_dir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ssh_step(
    step_id: str, command: str, tags: Sequence[str], max_parallel: int = 10
) -> dict[str, Any]:
    return {
        "id": step_id,
        "uses": "ssh",
        "with": {"command": command},
        "targets": {"tags": list(tags), "max_parallel": max_parallel},
    }


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(1, count + 1)]


def sshd_log_since(ssh: SshServer, offset: int) -> str:
    return ssh.log_text()[offset:]


# -- a. success on several targets -------------------------------------------------------
def test_a_command_on_several_targets(fleet: Fleet, tag: str) -> None:
    hosts = names(f"{tag}-web", 3)
    fleet.targets(hosts, [tag, "web"])
    fleet.credential(f"{tag}-ops", [tag])
    fleet.steps_job(
        f"{tag}-job",
        ssh_step("hello", "echo hello from $(whoami); echo to-stderr >&2", [tag], max_parallel=3),
    )
    run = fleet.run_and_wait(f"{tag}-job")
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success"), fleet.describe(
        run["id"]
    )

    rows = fleet.run_targets(run["id"])
    assert sorted(rows) == hosts
    for host in hosts:
        row = rows[host]
        assert row["step_id"] == "hello"
        assert row["address"] == f"{fleet.ssh.host}:{fleet.ssh.port}"
        assert (row["status"], row["credential"], row["credentials_tried"]) == (
            "succeeded",
            f"{tag}-ops",
            1,
        ), row
        assert (row["exit_status"], row["error"], row["error_type"]) == (0, None, None)
        assert "hello from rwtest" in row["output"]
        assert "to-stderr" in row["output"]
        assert row["started_at"] is not None
        assert row["finished_at"] is not None
        assert 0 < row["duration"] < 30

    lines = fleet.lines(run["id"])
    messages = [x["message"] for x in lines]
    assert "Resolved credentials for 3/3 targets (100%)" in messages
    assert "All 3 target(s) succeeded." in messages
    for host in hosts:
        mine = [x for x in lines if x.get("target") == host]
        assert {x["step"] for x in mine} == {"hello"}
        by_stream = {(x["stream"], x["message"]) for x in mine}
        assert ("stdout", "hello from rwtest") in by_stream, mine
        assert ("stderr", "to-stderr") in by_stream, mine
        assert any(
            x["stream"] == "system" and x["message"].startswith("succeeded in") for x in mine
        )
    # Lines about the run as a whole carry no target.
    assert all(
        x.get("target") is None for x in lines if x["message"].startswith("Resolved credentials")
    )

    context = fleet.context(run["id"])
    output = context["steps"]["hello"]["output"]
    assert (output["matched"], output["succeeded"], output["failed"]) == (3, 3, 0)
    assert output["outcome"] == "completed_success"
    assert output["targets"][hosts[0]]["stdout"] == "hello from rwtest"

    # Trust on first use: each target now has the server's key recorded.
    for host in hosts:
        shown = fleet.api("GET", f"/api/targets/{host}")
        assert (shown["host_key"], shown["known_host_key"]) == (None, fleet.ssh.host_key)
    info = fleet.credential_info(f"{tag}-ops")
    assert (info["successes"], info["failures"], info["success_rate"]) == (3, 0, 1.0)
    assert info["last_used_at"] is not None

    # The CLI: the targets table, and log lines prefixed with their target.
    shown, logs = fleet.together(("runs", "show", str(run["id"])), ("logs", str(run["id"]), "-f"))
    table = ok(shown)
    assert "targets (3 of 3 succeeded)" in table, table
    header = next(line for line in table.splitlines() if "TARGET" in line and "CREDENTIAL" in line)
    assert header.split()[:7] == [
        "STEP",
        "TARGET",
        "ADDRESS",
        "STATUS",
        "CREDENTIAL",
        "EXIT",
        "DURATION",
    ]
    for host in hosts:
        row_line = next(line for line in table.splitlines() if f" {host} " in f" {line} ")
        cells = row_line.split()
        assert cells[:6] == [
            "hello",
            host,
            f"{fleet.ssh.host}:{fleet.ssh.port}",
            "succeeded",
            f"{tag}-ops",
            "0",
        ]
    text = ok(logs)
    for host in hosts:
        assert f"[{host}] hello from rwtest" in text, text


# -- b. a refused credential falls back to the next one ----------------------------------
def test_a_refused_credential_falls_back_to_the_next(fleet: Fleet, tag: str) -> None:
    hosts = names(f"{tag}-db", 2)
    fleet.targets(hosts, [tag])
    wrong, right, spare = f"{tag}-a-wrong", f"{tag}-b-right", f"{tag}-c-spare"
    # Through the CLI, the password on stdin; the lowest priority number is tried first.
    given = [(right, fleet.ssh.password, 5), (wrong, "not-the-password-3c1", 1)]
    added = fleet.together(
        *[
            ("credential", "add", name, "--username", fleet.ssh.username, "--password-stdin",
             "--priority", str(priority), "--tags", f"{tag},other")
            for name, _, priority in given
        ],
        stdin=[password + "\n" for _, password, _ in given],
    )  # fmt: skip
    for done in added:
        assert "Its secret is encrypted at rest and never shown." in ok(done)
    fleet.credential(spare, [tag], priority=9)
    fleet.credential(f"{tag}-unrelated", ["unrelated-tag"], priority=0)
    fleet.steps_job(f"{tag}-job", ssh_step("check", "echo checked", [tag]))
    log_before = len(fleet.ssh.log_text())

    run = fleet.run_and_wait(f"{tag}-job")
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success"), fleet.describe(
        run["id"]
    )
    rows = fleet.run_targets(run["id"])
    for host in hosts:
        row = rows[host]
        assert (row["status"], row["credential"], row["credentials_tried"]) == (
            "succeeded",
            right,
            2,
        ), row
        assert row["output"] == "checked"
    stats = {n: fleet.credential_info(n) for n in (wrong, right, spare, f"{tag}-unrelated")}
    assert (stats[wrong]["successes"], stats[wrong]["failures"]) == (0, 2)
    assert stats[wrong]["success_rate"] == 0.0
    assert (stats[right]["successes"], stats[right]["failures"]) == (2, 0)
    assert stats[wrong]["last_used_at"] is not None
    assert stats[right]["last_used_at"] is not None
    for untouched in (spare, f"{tag}-unrelated"):
        assert (stats[untouched]["successes"], stats[untouched]["failures"]) == (0, 0)
        assert stats[untouched]["last_used_at"] is None
    sshd = sshd_log_since(fleet.ssh, log_before)
    assert sshd.count(f"Failed password for {fleet.ssh.username}") >= 2, sshd
    assert sshd.count(f"Accepted password for {fleet.ssh.username}") >= 2, sshd

    # The statistics through the CLI.
    listed, shown = fleet.together(("credential", "list"), ("credential", "show", wrong))
    table = ok(listed)
    row_of = {line.split()[0]: line.split() for line in table.splitlines() if tag in line}
    assert wrong in row_of, table
    assert row_of[wrong][-3:] == ["0", "2", "0%"], table
    assert row_of[right][-3:] == ["2", "0", "100%"], table
    assert row_of[spare][-3:] == ["0", "0", "-"], table
    assert "0 worked, 2 refused (0% success)" in ok(shown)


# -- c. unreachable targets: a partial failure -------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def quick_fleet(
    request: pytest.FixtureRequest, tmp_path: Path, ssh_server: SshServer
) -> Iterator[Fleet]:
    """A server of its own that gives up on a target after 1 s (and one retry)."""
    with contextlib.ExitStack() as stack:
        yield start_fleet(
            request,
            request.param,
            tmp_path,
            ssh_server,
            stack,
            RUNWRIGHT_TARGET_CONNECT_TIMEOUT="1",
            RUNWRIGHT_TARGET_CONNECT_RETRIES="1",
        )


def test_partial_failure_with_a_refused_port_and_a_blackhole(quick_fleet: Fleet, tag: str) -> None:
    fleet = quick_fleet
    closed_port = free_port()  # nothing listens there
    fleet.target(f"{tag}-good", [tag])
    fleet.target(f"{tag}-refused", [tag], port=closed_port)
    # Nothing answers at 10.255.255.1: on a machine with a route the SYN goes unanswered,
    # in a sandbox with a transparent proxy the TCP connection opens and no SSH banner
    # comes. Either way connecting times out (on a machine without any route it would be
    # refused at once: a connection error).
    fleet.target(f"{tag}-blackhole", [tag], address=BLACKHOLE, port=22)
    fleet.credential(f"{tag}-ops", [tag])
    fleet.steps_job(f"{tag}-job", ssh_step("ping", "echo pong", [tag], max_parallel=3))

    started = time.monotonic()
    run = fleet.run_and_wait(f"{tag}-job")
    took = time.monotonic() - started
    assert (run["status"], run["outcome"]) == ("failed", "completed_partial_failure"), (
        fleet.describe(run["id"])
    )
    assert "2 of 3 target(s) failed; 1 succeeded." in (run["error"] or ""), run["error"]
    rows = fleet.run_targets(run["id"])
    good, refused, hole = rows[f"{tag}-good"], rows[f"{tag}-refused"], rows[f"{tag}-blackhole"]
    assert (good["status"], good["output"], good["error_type"]) == ("succeeded", "pong", None)
    assert (refused["status"], refused["error_type"]) == ("failed", "connection"), refused
    assert refused["error"].startswith(f"Could not connect to 127.0.0.1:{closed_port}:"), refused
    assert refused["address"] == f"127.0.0.1:{closed_port}"
    assert hole["status"] == "failed", hole
    assert hole["error_type"] in ("timeout", "connection"), hole
    if hole["error_type"] == "timeout":
        assert hole["error"] == f"{BLACKHOLE}:22 did not answer within 1s", hole
        # Two attempts of 1 s with a 1 s pause between them.
        assert 2.5 < hole["duration"] < 10, hole
    for row in (refused, hole):
        assert (row["credential"], row["credentials_tried"], row["exit_status"]) == (None, 0, None)
    assert took < 30
    messages = fleet.messages(run["id"])
    assert "Resolved credentials for 3/3 targets (100%)" in messages
    assert any(
        m.startswith("failed (connection) after")
        for m in fleet.messages(run["id"], f"{tag}-refused")
    )
    # No login was refused: only the target that was reached counts as a use.
    info = fleet.credential_info(f"{tag}-ops")
    assert (info["successes"], info["failures"]) == (1, 0)
    step = fleet.context(run["id"])["steps"]["ping"]
    assert (step["status"], step["error_type"]) == ("failed", "targets")
    assert (step["output"]["succeeded"], step["output"]["failed"]) == (1, 2)


# -- d. every outcome through a real run ---------------------------------------------------
def foreign_credential(fleet: Fleet, home: Path, name: str, tags: Sequence[str]) -> None:
    """A credential sealed with another secret key than the server's: as if another
    server with another RUNWRIGHT_SECRET_KEY had stored it."""
    other = Settings(
        home=home, database_url=fleet.database_url, secret_key=Fernet.generate_key().decode()
    )
    runtime = Runtime.open(other)
    try:
        runtime.credentials.create(
            name,
            username=fleet.ssh.username,
            secret=SecretPart(password=fleet.ssh.password),
            tags=list(tags),
        )
    finally:
        runtime.close()


@contextlib.contextmanager
def refusing_target_rows(fleet: Fleet, prefix: str) -> Iterator[None]:
    """The database refuses the run_targets rows of targets named ``prefix...``: the
    dispatch hits an error nobody planned for."""
    engine = create_engine(fleet.database_url)
    name = f"refuse_{prefix}"
    postgres = fleet.database_url.startswith("postgresql")
    try:
        with engine.begin() as conn:
            if postgres:
                conn.exec_driver_sql(
                    f"ALTER TABLE run_targets ADD CONSTRAINT {name} "
                    f"CHECK (strpos(target, '{prefix}') <> 1) NOT VALID"
                )
            else:
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON run_targets "
                    f"WHEN substr(NEW.target, 1, {len(prefix)}) = '{prefix}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
        yield
    finally:
        with engine.begin() as conn:
            if postgres:
                conn.exec_driver_sql(f"ALTER TABLE run_targets DROP CONSTRAINT IF EXISTS {name}")
            else:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        engine.dispose()


OUTCOMES = ["no_targets", "no_credentials", "failure", "credential_resolution", "unexpected"]


@pytest.mark.parametrize("case", OUTCOMES)
def test_every_outcome(fleet: Fleet, tag: str, tmp_path: Path, case: str) -> None:
    hosts = names(f"{tag}-h", 2)
    command = "echo working"
    if case == "no_targets":
        # Only a disabled target has the tag, and an enabled one has another tag.
        fleet.target(f"{tag}-off", [tag], enabled=False)
        fleet.target(f"{tag}-elsewhere", [f"{tag}x"])
        fleet.credential(f"{tag}-ops", [tag, f"{tag}x"])
    elif case == "no_credentials":
        fleet.targets(hosts, [tag])
        fleet.credential(f"{tag}-ops", [f"{tag}-other"])
    elif case == "failure":
        # One target refuses its only credential, the other runs a command that fails.
        fleet.target(hosts[0], [tag, f"{tag}-a"])
        fleet.target(hosts[1], [tag, f"{tag}-b"])
        fleet.credential(f"{tag}-wrong", [f"{tag}-a"], password="not-the-password-77")
        fleet.credential(f"{tag}-ops", [f"{tag}-b"])
        command = "echo about to fail; exit 3"
    elif case == "credential_resolution":
        fleet.targets(hosts, [tag])
        fleet.credential(f"{tag}-good", [tag])
        foreign_credential(fleet, tmp_path / "other-home", f"{tag}-foreign", [tag])
    else:
        fleet.targets(hosts, [tag])
        fleet.credential(f"{tag}-ops", [tag])
    fleet.steps_job(f"{tag}-job", ssh_step("work", command, [tag]))

    with refusing_target_rows(fleet, tag) if case == "unexpected" else contextlib.nullcontext():
        run = fleet.run_and_wait(f"{tag}-job")
    rows = fleet.run_targets(run["id"])
    messages = fleet.messages(run["id"])
    [step] = fleet.api("GET", f"/api/runs/{run['id']}/steps")
    described = fleet.describe(run["id"])

    if case == "no_targets":
        assert (run["status"], run["outcome"]) == ("succeeded", "completed_no_targets"), described
        assert rows == {}
        assert "Resolved credentials for 0/0 targets (0%)" in messages
        assert "No enabled target has any of the selected tags; nothing to do." in messages
        assert step["status"] == "succeeded"
        output = fleet.context(run["id"])["steps"]["work"]["output"]
        assert (output["matched"], output["targets"]) == (0, {})
    elif case == "no_credentials":
        assert (run["status"], run["outcome"]) == ("failed", "completed_no_credentials"), described
        assert sorted(rows) == hosts
        for row in rows.values():
            assert (row["status"], row["error_type"], row["credentials_tried"]) == (
                "no_credentials",
                "credential",
                0,
            ), row
            assert row["error"] == "no credential shares a tag with this target"
            assert row["started_at"] is None
        assert "Resolved credentials for 0/2 targets (0%)" in messages
        assert "2 target(s) matched but no credential shares a tag" in (run["error"] or "")
        for host in hosts:
            assert any("no credential shares a tag" in m for m in fleet.messages(run["id"], host))
        assert (step["status"], step["error_type"]) == ("failed", "targets")
    elif case == "failure":
        assert (run["status"], run["outcome"]) == ("failed", "completed_failure"), described
        refused, failing = rows[hosts[0]], rows[hosts[1]]
        assert (refused["status"], refused["error_type"], refused["credentials_tried"]) == (
            "failed",
            "auth",
            1,
        ), refused
        assert refused["credential"] is None
        assert f"refused every candidate credential ({tag}-wrong)" in refused["error"]
        assert (failing["status"], failing["error_type"], failing["exit_status"]) == (
            "failed",
            "command",
            3,
        ), failing
        assert failing["error"] == "the command ended with exit status 3"
        assert failing["output"] == "about to fail"
        assert failing["credential"] == f"{tag}-ops"
        assert "All 2 target(s) failed." in (run["error"] or "")
        assert (step["status"], step["error_type"]) == ("failed", "targets")
        # The login that worked counts as a success of its credential; the refused one not.
        assert [
            (info["successes"], info["failures"])
            for info in map(fleet.credential_info, (f"{tag}-ops", f"{tag}-wrong"))
        ] == [(1, 0), (0, 1)]
    elif case == "credential_resolution":
        assert (run["status"], run["outcome"]) == (
            "failed",
            "failed_credential_resolution",
        ), described
        assert rows == {}
        assert (step["status"], step["error_type"]) == ("failed", "credential")
        assert f"credential '{tag}-foreign' cannot be decrypted" in step["error"], step
        assert any(m.startswith("Could not resolve the targets' credentials") for m in messages)
        errors = [x for x in fleet.lines(run["id"]) if x["level"] == "error"]
        assert any("cannot be decrypted" in x["message"] for x in errors), errors
        # Nothing was attempted: no use recorded, not even of the readable credential.
        info = fleet.credential_info(f"{tag}-good")
        assert (info["successes"], info["failures"], info["last_used_at"]) == (0, 0, None)
    else:
        assert (run["status"], run["outcome"]) == ("failed", "failed_unexpected"), described
        assert (step["status"], step["error_type"]) == ("failed", "unexpected")
        assert "refused by the test" in step["error"] or "check constraint" in step["error"], step


# -- e. a private key ----------------------------------------------------------------------
def test_a_key_credential_from_a_key_file(fleet: Fleet, tag: str, tmp_path: Path) -> None:
    hosts = names(f"{tag}-k", 2)
    fleet.targets(hosts, [tag])
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(fleet.ssh.private_key)
    key_file.chmod(0o600)
    added = fleet.cli(
        "credential", "add", f"{tag}-key", "--username", fleet.ssh.username,
        "--key-file", str(key_file), "--tags", tag,
    )  # fmt: skip
    assert f"Added credential {tag}-key: user {fleet.ssh.username}, key, priority 100" in ok(added)
    assert fleet.credential_info(f"{tag}-key")["kind"] == "key"
    fleet.steps_job(f"{tag}-job", ssh_step("whoami", "whoami", [tag]))
    log_before = len(fleet.ssh.log_text())

    run = fleet.run_and_wait(f"{tag}-job")
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success"), fleet.describe(
        run["id"]
    )
    for row in fleet.run_targets(run["id"]).values():
        assert (row["status"], row["credential"], row["output"]) == (
            "succeeded",
            f"{tag}-key",
            fleet.ssh.username,
        ), row
    sshd = sshd_log_since(fleet.ssh, log_before)
    assert sshd.count(f"Accepted publickey for {fleet.ssh.username}") >= 2, sshd
    assert "password for" not in sshd
    key_line = fleet.ssh.private_key.splitlines()[1]
    assert key_line not in json.dumps(fleet.context(run["id"]))
    assert key_line not in json.dumps(fleet.lines(run["id"]))


# -- f. host keys ----------------------------------------------------------------------------
def test_a_pinned_host_key_that_differs_fails_before_any_login(fleet: Fleet, tag: str) -> None:
    fleet.target(f"{tag}-pinned-wrong", [tag], host_key=fleet.ssh.wrong_host_key)
    fleet.target(f"{tag}-pinned-right", [tag], host_key=fleet.ssh.host_key)
    fleet.credential(f"{tag}-ops", [tag])
    fleet.steps_job(f"{tag}-job", ssh_step("check", "echo reached", [tag]))
    log_before = len(fleet.ssh.log_text())

    run = fleet.run_and_wait(f"{tag}-job")
    assert (run["status"], run["outcome"]) == ("failed", "completed_partial_failure"), (
        fleet.describe(run["id"])
    )
    rows = fleet.run_targets(run["id"])
    wrong, right = rows[f"{tag}-pinned-wrong"], rows[f"{tag}-pinned-right"]
    assert (wrong["status"], wrong["error_type"]) == ("failed", "host_key"), wrong
    assert (wrong["credential"], wrong["credentials_tried"]) == (None, 0)
    assert "differs from the pinned or recorded one" in wrong["error"]
    assert "runwright target forget-host-key" in wrong["error"]
    assert (right["status"], right["output"]) == ("succeeded", "reached"), right
    # One login only: the right target's. A pinned key is not replaced by a recorded one.
    info = fleet.credential_info(f"{tag}-ops")
    assert (info["successes"], info["failures"]) == (1, 0)
    for name in (f"{tag}-pinned-wrong", f"{tag}-pinned-right"):
        assert fleet.api("GET", f"/api/targets/{name}")["known_host_key"] is None

    def sshd_saw_both() -> str | None:
        text = sshd_log_since(fleet.ssh, log_before)
        return text if text.count("Connection closed") + text.count("Disconnected") >= 2 else None

    sshd = wait_for(sshd_saw_both, timeout=10, what="sshd to log both connections")
    assert sshd.count(f"Accepted password for {fleet.ssh.username}") == 1, sshd
    assert "Failed password" not in sshd, sshd


def test_a_host_key_recorded_on_first_use_is_verified_later(fleet: Fleet, tag: str) -> None:
    host = f"{tag}-rebuilt"
    fleet.target(host, [tag])
    fleet.credential(f"{tag}-ops", [tag])
    fleet.steps_job(f"{tag}-job", ssh_step("check", "echo reached", [tag]))
    first = fleet.run_and_wait(f"{tag}-job")
    assert first["status"] == "succeeded", fleet.describe(first["id"])
    assert fleet.api("GET", f"/api/targets/{host}")["known_host_key"] == fleet.ssh.host_key
    assert "host key recorded on first use; later connections must present it" in (
        fleet.messages(first["id"], host)
    )

    # The host is "rebuilt": same target, another sshd with another host key.
    with ssh_server_process() as other:
        fleet.api("PATCH", f"/api/targets/{host}", json={"port": other.port})
        other_log_before = len(other.log_text())
        second = fleet.run_and_wait(f"{tag}-job")
        assert (second["status"], second["outcome"]) == ("failed", "completed_failure"), (
            fleet.describe(second["id"])
        )
        row = fleet.run_targets(second["id"])[host]
        assert (row["status"], row["error_type"], row["credentials_tried"]) == (
            "failed",
            "host_key",
            0,
        ), row
        assert fleet.api("GET", f"/api/targets/{host}")["known_host_key"] == fleet.ssh.host_key
        assert "password for" not in sshd_log_since(other, other_log_before)
        info = fleet.credential_info(f"{tag}-ops")
        assert (info["successes"], info["failures"]) == (1, 0)

        # The operator confirms the rebuild: the next run records the new key.
        forgot = ok(fleet.cli("target", "forget-host-key", host))
        assert f"Forgot the recorded host key of {host}" in forgot
        third = fleet.run_and_wait(f"{tag}-job")
        assert third["status"] == "succeeded", fleet.describe(third["id"])
        assert fleet.api("GET", f"/api/targets/{host}")["known_host_key"] == other.host_key


# -- g. python steps on targets ----------------------------------------------------------------
LOGIN_PY = """\
import hashlib

from runwright import sdk


def run(greeting):
    print(sdk.credential, flush=True)
    print(f"repr: {sdk.credential!r}", flush=True)
    if sdk.credential.username != sdk.target["vars"]["user"]:
        raise sdk.AuthenticationFailed(f"{sdk.target['name']} refused {sdk.credential.username}")
    return {
        "greeting": greeting,
        "target": sdk.target,
        "user": sdk.credential.username,
        "credential": sdk.credential.name,
        "password_sha256": hashlib.sha256(sdk.credential.password.encode()).hexdigest(),
        "private_key": sdk.credential.private_key,
    }
"""


def python_job(tag: str, function: str, inputs: dict[str, Any], max_parallel: int = 3) -> str:
    return json.dumps(
        {
            "description": "python on targets",
            "steps": [
                {
                    "id": "login",
                    "uses": "python",
                    "with": {"function": function, "inputs": inputs},
                    "targets": {"tags": [tag], "max_parallel": max_parallel},
                }
            ],
        }
    )


def test_a_python_step_on_targets(fleet: Fleet, tag: str) -> None:
    hosts = names(f"{tag}-dev", 3)
    fleet.targets(hosts, [tag], vars={"user": "operator", "rack": 4})
    wrong, right = f"{tag}-a-nobody", f"{tag}-b-operator"
    fleet.credential(wrong, [tag], username="nobody", password="nobody-pw-1", priority=1)
    fleet.credential(right, [tag], username="operator", password="operator-pw-2", priority=2)
    fleet.package_job(
        f"{tag}-job",
        {
            "job.yaml": python_job(tag, "lib.login:run", {"greeting": "hi {{ job }}"}),
            "lib/__init__.py": "",
            "lib/login.py": LOGIN_PY,
        },
    )
    run = fleet.run_and_wait(f"{tag}-job", timeout=120)
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success"), fleet.describe(
        run["id"]
    )
    rows = fleet.run_targets(run["id"])
    assert sorted(rows) == hosts
    for row in rows.values():
        assert (row["status"], row["credential"], row["credentials_tried"]) == (
            "succeeded",
            right,
            2,
        ), row
    stats = {n: fleet.credential_info(n) for n in (wrong, right)}
    assert (stats[wrong]["successes"], stats[wrong]["failures"]) == (0, 3)
    assert (stats[right]["successes"], stats[right]["failures"]) == (3, 0)

    output = fleet.context(run["id"])["steps"]["login"]["output"]
    for host in hosts:
        value = output["targets"][host]["value"]
        assert value["greeting"] == f"hi {tag}-job"
        assert value["user"] == "operator"
        assert value["credential"] == right
        assert value["password_sha256"] == hashlib.sha256(b"operator-pw-2").hexdigest()
        assert value["private_key"] is None
        assert value["target"]["name"] == host
        assert value["target"]["address"] == fleet.ssh.host
        assert value["target"]["tags"] == [tag]
        assert value["target"]["vars"] == {"user": "operator", "rack": 4}
        mine = fleet.messages(run["id"], host)
        shown = f"Credential(name='{right}', username='operator', secret=********)"
        assert shown in mine, mine
        assert f"repr: {shown}" in mine
        assert f"Credential(name='{wrong}', username='nobody', secret=********)" in mine
        assert any(
            m.startswith(f"credential {wrong} refused") and "AuthenticationFailed" in m
            for m in mine
        ), mine
    everything = json.dumps(fleet.lines(run["id"])) + json.dumps(rows)
    for secret in ("operator-pw-2", "nobody-pw-1"):
        assert secret not in everything


# -- h. a run chooses its own targets --------------------------------------------------------
def test_a_run_overrides_the_tags_and_max_parallel(fleet: Fleet, tag: str) -> None:
    usual, chosen = names(f"{tag}-usual", 1), names(f"{tag}-chosen", 3)
    fleet.targets(usual, [f"{tag}-usual"])
    fleet.targets(chosen, [f"{tag}-chosen"])
    fleet.credential(f"{tag}-ops", [f"{tag}-usual", f"{tag}-chosen"])
    fleet.steps_job(
        f"{tag}-job", ssh_step("nap", "sleep 0.4; echo rested", [f"{tag}-usual"], max_parallel=5)
    )
    fleet.steps_job(f"{tag}-plain", {"id": "hi", "uses": "shell", "with": {"command": "echo hi"}})

    # The CLI: --tags and --max-parallel.
    by_cli = fleet.cli(
        "run", f"{tag}-job", "--tags", f"{tag}-chosen", "--max-parallel", "1", "--wait"
    )
    text = ok(by_cli)
    match = re.search(r"Started run (\d+) of", text)
    assert match, text
    run = fleet.wait(int(match.group(1)))
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success")
    assert run["payload"]["targets"] == {"tags": [f"{tag}-chosen"], "max_parallel": 1}
    rows = fleet.run_targets(run["id"])
    assert sorted(rows) == chosen
    spans = sorted((row["started_at"], row["finished_at"]) for row in rows.values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.05, spans  # one at a time

    # The API: tags only; max_parallel stays the step's own.
    run = fleet.run_and_wait(f"{tag}-job", {"tags": [f"{tag}-chosen", f"{tag}-usual"]})
    assert run["status"] == "succeeded", fleet.describe(run["id"])
    rows = fleet.run_targets(run["id"])
    assert sorted(rows) == sorted(chosen + usual)
    spans = sorted((row["started_at"], row["finished_at"]) for row in rows.values())
    assert spans[-1][0] < spans[0][1], spans  # all four at once
    # Without an override, the step's own tags.
    run = fleet.run_and_wait(f"{tag}-job")
    assert sorted(fleet.run_targets(run["id"])) == usual

    # Refused: a job without a step on targets, and tags that are not valid.
    refused = fleet.api(
        "POST", f"/api/jobs/{tag}-plain/runs", json={"targets": {"tags": ["web"]}}, expect=422
    )
    assert "does not run on targets" in json.dumps(refused), refused
    bad = fleet.http.post(f"/api/jobs/{tag}-job/runs", json={"targets": {"tags": ["not a tag!"]}})
    assert bad.status_code == 422, bad.text
    assert "not valid" in bad.text
    runs = fleet.api("GET", "/api/runs", params={"job": f"{tag}-plain"})["runs"]
    assert runs == []


# -- i. cancel -------------------------------------------------------------------------------
@dataclass
class Canceled:
    run_id: int
    running: dict[str, dict[str, Any]]  # the rows while the commands ran
    run: dict[str, Any]
    took: float  # seconds from the cancel request to the run's end
    marker: str  # the argument of this test's remote `sleep`


def start_and_cancel(fleet: Fleet, tag: str, count: int, max_parallel: int) -> Canceled:
    """``sleep 30`` on ``count`` targets, canceled once ``max_parallel`` of them run."""
    fleet.targets(names(f"{tag}-slow", count), [tag])
    fleet.credential(f"{tag}-ops", [tag])
    marker = f"30.{uuid.uuid4().int % 10**6:06d}"  # a sleep of this test's own
    fleet.steps_job(
        f"{tag}-job",
        ssh_step("slow", f"echo going; sleep {marker}", [tag], max_parallel=max_parallel),
    )
    run_id = fleet.run(f"{tag}-job")

    def all_running() -> dict[str, dict[str, Any]] | None:
        rows = fleet.run_targets(run_id)
        running = [r for r in rows.values() if r["status"] == "running"]
        going = sum(m == "going" for m in fleet.messages(run_id))
        return rows if len(running) == max_parallel and going == max_parallel else None

    running = wait_for(all_running, timeout=30, what=f"{max_parallel} commands to run")
    assert sorted(r["status"] for r in running.values()) == sorted(
        ["running"] * max_parallel + ["pending"] * (count - max_parallel)
    )
    asked = time.monotonic()
    fleet.api("POST", f"/api/runs/{run_id}/cancel")
    run = fleet.wait(run_id, timeout=20)
    return Canceled(run_id, running, run, time.monotonic() - asked, marker)


def test_cancel_stops_every_target(fleet: Fleet, tag: str) -> None:
    done = start_and_cancel(fleet, tag, count=4, max_parallel=2)
    assert (done.run["status"], done.run["outcome"]) == ("canceled", "canceled"), fleet.describe(
        done.run_id
    )
    assert done.took < 5, done.took

    def settled() -> dict[str, dict[str, Any]] | None:
        found = fleet.run_targets(done.run_id)
        return found if all(r["status"] == "canceled" for r in found.values()) else None

    try:
        rows = wait_for(settled, timeout=3, what="every target to be canceled")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {fleet.describe(done.run_id)}") from None
    assert len(rows) == 4
    for row in rows.values():
        assert (row["error_type"], row["exit_status"]) == ("canceled", None), row
        assert row["finished_at"] is not None
    # Nothing ran after the cancel: the two pending targets never started a command.
    assert sum(m == "going" for m in fleet.messages(done.run_id)) == 2


# -- j. a canary password shows up nowhere -------------------------------------------------
CANARY_PY = """\
from runwright import sdk


def run(label):
    print(sdk.credential, flush=True)
    print("the password is", sdk.credential.password, flush=True)
    if sdk.target["name"].endswith("-raiser"):
        raise RuntimeError(f"could not log in with {sdk.credential.password}")
    return {"label": label, "password": sdk.credential.password}
"""


def stars(text: str) -> str:
    """Masks as ``***`` whatever their length (log lines use 4 stars, contexts 8)."""
    return re.sub(r"\*{4,}", "***", text)


def database_dump(database_url: str) -> str:
    """Every row of every table, as text."""
    engine = create_engine(database_url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        parts = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    values = [
                        bytes(v).decode("utf-8", "replace")
                        if isinstance(v, bytes | memoryview)
                        else v
                        for v in row
                    ]
                    parts.append(f"{table.name}: {values!r}")
        assert any(p.startswith("credentials:") for p in parts)
        return "\n".join(parts)
    finally:
        engine.dispose()


def files_containing(folder: Path, needle: bytes) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 50_000_000:
            continue
        with contextlib.suppress(OSError):
            if needle in path.read_bytes():
                found.append(str(path))
    return found


def test_a_canary_password_is_never_shown(fleet: Fleet, tag: str, remote_dir: Path) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    hosts = [f"{tag}-one", f"{tag}-two", f"{tag}-raiser"]
    fleet.targets(hosts, [tag])
    # What a host might print: the password it was given (here from a file it holds).
    secret_file = remote_dir / "secret.txt"
    secret_file.write_text(f"canary={canary}\nlogin={fleet.ssh.password}\n")
    secret_file.chmod(0o644)
    # The canary is tried first (priority 1): sshd refuses it, the python step uses it.
    added, listed = fleet.together(
        ("credential", "add", f"{tag}-canary", "--username", fleet.ssh.username,
         "--password-stdin", "--priority", "1", "--tags", tag),
        ("credential", "list", "--json"),
        stdin=[canary + "\n"],
    )  # fmt: skip
    ok(added)
    ok(listed)
    fleet.credential(f"{tag}-real", [tag], priority=2)
    fleet.package_job(
        f"{tag}-job",
        {
            "job.yaml": json.dumps(
                {
                    "steps": [
                        {
                            "id": "echo",
                            "uses": "ssh",
                            "with": {"command": f"cat {secret_file}"},
                            "targets": {"tags": [tag], "max_parallel": 3},
                        },
                        {
                            "id": "show",
                            "uses": "python",
                            "with": {"function": "canary:run", "inputs": {"label": "x"}},
                            "targets": {"tags": [tag], "max_parallel": 3},
                        },
                    ]
                }
            ),
            "canary.py": CANARY_PY,
        },
    )
    run = fleet.run_and_wait(f"{tag}-job", timeout=120)
    run_id = run["id"]
    assert (run["status"], run["outcome"]) == ("failed", "completed_partial_failure"), (
        fleet.describe(run_id)
    )

    # It was really used: refused by sshd on the ssh step, handed to the python step.
    rows = fleet.api("GET", f"/api/runs/{run_id}/targets")
    echo = {r["target"]: r for r in rows if r["step_id"] == "echo"}
    show = {r["target"]: r for r in rows if r["step_id"] == "show"}
    for host in hosts:
        assert (echo[host]["credential"], echo[host]["credentials_tried"]) == (f"{tag}-real", 2)
        assert stars(echo[host]["output"]) == "canary=***\nlogin=***", echo[host]
    assert show[f"{tag}-one"]["credential"] == f"{tag}-canary"
    assert (show[f"{tag}-raiser"]["status"], show[f"{tag}-raiser"]["error_type"]) == (
        "failed",
        "command",
    )
    messages = [stars(m) for m in fleet.messages(run_id, f"{tag}-one")]
    assert "the password is ***" in messages, messages
    assert f"Credential(name='{tag}-canary', username='rwtest', secret=***)" in messages
    context = fleet.context(run_id)
    assert context["steps"]["show"]["output"]["targets"][f"{tag}-one"]["value"] == {
        "label": "x",
        "password": "********",
    }

    # Nowhere: the API, the CLI, the saved context, the database, the files.
    shown, logs = fleet.together(("runs", "show", str(run_id), "--json"), ("logs", str(run_id)))
    surfaces = {
        "log lines API": json.dumps(fleet.lines(run_id)),
        "log.txt": fleet.http.get(f"/api/runs/{run_id}/log.txt").text,
        "runwright logs": succeeded(logs) + logs.stderr,  # holds the job's traceback
        "runs show --json": ok(shown) + shown.stderr,
        "targets API": json.dumps(rows),
        "steps API": json.dumps(fleet.api("GET", f"/api/runs/{run_id}/steps")),
        "run API": json.dumps(fleet.get_run(run_id)),
        "context API": json.dumps(context),
        "credentials API": json.dumps(fleet.api("GET", "/api/credentials")),
        "credential list --json": listed.stdout,
        "credential add": added.stdout + added.stderr,
        "database": database_dump(fleet.database_url),
    }
    assert f"[{tag}-one] canary=***" in stars(surfaces["runwright logs"])
    assert len(surfaces["database"]) > 1000
    for secret in (canary, fleet.ssh.password):
        leaked = [name for name, text in surfaces.items() if secret in text]
        assert not leaked, f"{secret} leaked in {leaked}"
        files = files_containing(fleet.home, secret.encode())
        files += files_containing(fleet.procs.logs, secret.encode())
        assert not files, f"{secret} in {files}"
    if fleet.database_url.startswith("sqlite:///"):
        database = Path(fleet.database_url.removeprefix("sqlite:///"))
        assert not files_containing(database.parent, canary.encode())


# -- k. bug repros: these fail today (each docstring says what is wrong) -----------------
def test_a_finished_target_shows_its_result_while_others_run(
    fleet: Fleet, tag: str, remote_dir: Path
) -> None:
    """Bug repro: an ssh step writes the final rows of its targets only when the whole
    step ends, so `GET /api/runs/{id}/targets` (and `runs show`) keeps showing targets
    that ended long ago as "running" (with 200 targets, for most of the run)."""
    hosts = names(f"{tag}-h", 2)
    fleet.targets(hosts, [tag])
    fleet.credential(f"{tag}-ops", [tag])
    # The first target to get the lock ends at once, the other one takes 4 s.
    lock = remote_dir / "lock"
    command = f"if mkdir {lock} 2>/dev/null; then echo first; else sleep 4; echo later; fi"
    fleet.steps_job(f"{tag}-job", ssh_step("mixed", command, [tag], max_parallel=2))
    run_id = fleet.run(f"{tag}-job")

    def first_done() -> str | None:
        for line in fleet.lines(run_id):
            if line["message"].startswith("succeeded in") and line.get("target"):
                return str(line["target"])
        return None

    first = wait_for(first_done, timeout=20, what="the first target to end")
    time.sleep(0.5)  # more than the 0.25 s between two writes of the dispatcher
    run = fleet.get_run(run_id)
    row = fleet.run_targets(run_id)[first]
    fleet.wait(run_id)
    assert run["status"] == "running", "the slow target ended already: the test proves nothing"
    assert row["status"] == "succeeded", (
        f"{first} ended but its row still says {row['status']} (finished_at {row['finished_at']})"
    )


def test_cancel_keeps_the_start_times_and_calls_the_step_canceled(fleet: Fleet, tag: str) -> None:
    """Bug repro: after a cancel the final rows carry the cancel time as everyone's
    started_at (a target that ran for seconds shows a duration of ~0; one that never
    started shows a start); and the step is often recorded as *failed* with "All N
    target(s) failed." when the dispatch ends before the engine notices the cancel."""
    done = start_and_cancel(fleet, tag, count=2, max_parallel=1)
    assert done.run["status"] == "canceled"
    wait_for(
        lambda: all(r["status"] == "canceled" for r in fleet.run_targets(done.run_id).values()),
        timeout=3,
        what="every target to be canceled",
    )
    rows = fleet.run_targets(done.run_id)
    problems = []
    for name, before in done.running.items():
        after = rows[name]
        if before["status"] == "running" and after["started_at"] != before["started_at"]:
            problems.append(
                f"{name} ran from {before['started_at']:.3f} but its final row says it started "
                f"at {after['started_at']:.3f} (duration {after['duration']:.4f}s)"
            )
        if before["status"] == "pending" and after["started_at"] is not None:
            problems.append(f"{name} never started but its final row has started_at")
    [step] = fleet.api("GET", f"/api/runs/{done.run_id}/steps")
    if step["status"] != "canceled":
        problems.append(f"the step is {step['status']} ({step['error']}), not canceled")
    claims = [m for m in fleet.messages(done.run_id) if "target(s) failed" in m]
    if claims:
        problems.append(f"the log says {claims} although every target was canceled")
    assert not problems, "\n".join(problems)


def _remote_processes() -> str:
    done = subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout


def test_cancel_ends_the_remote_commands(fleet: Fleet, tag: str) -> None:
    """Bug repro: closing the SSH connection does not stop a command started without a
    pty, so a canceled run leaves its commands running on every target (here the
    `sleep` goes on for its 30 s as rwtest)."""
    done = start_and_cancel(fleet, tag, count=2, max_parallel=2)
    assert done.run["status"] == "canceled"
    wait_for(
        lambda: f"sleep {done.marker}" not in _remote_processes(),
        timeout=10,
        what=f"the remote `sleep {done.marker}` to end after the cancel",
    )


def test_a_secret_in_a_command_stays_out_of_the_server_log(fleet: Fleet, tag: str) -> None:
    """Bug repro: asyncssh logs at INFO, and `runwright server` lets its INFO lines
    through (15 per target), among them "Command: <the rendered command>": a sensitive
    variable used in an ssh step's command lands unmasked in the server's log."""
    secret = f"token-{uuid.uuid4().hex}"
    fleet.api("PUT", f"/api/variables/{tag}_token", json={"value": secret, "sensitive": True})
    fleet.target(f"{tag}-api", [tag])
    fleet.credential(f"{tag}-ops", [tag])
    fleet.steps_job(
        f"{tag}-job",
        ssh_step("call", f"echo calling with {{{{ variables.{tag}_token }}}}", [tag]),
    )
    run = fleet.run_and_wait(f"{tag}-job")
    assert run["status"] == "succeeded", fleet.describe(run["id"])
    assert "calling with ***" in [stars(m) for m in fleet.messages(run["id"], f"{tag}-api")]
    assert secret not in json.dumps(fleet.lines(run["id"]))
    server_log = fleet.server.proc.output()
    leaked = [line for line in server_log.splitlines() if secret in line]
    assert not leaked, leaked
