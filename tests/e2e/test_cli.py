"""The `runwright` command and the server as subprocesses, end to end.

Most tests share one server on SQLite in a temporary RUNWRIGHT_HOME; the CLI finds it
through the server.json the server writes there. Tests that stop processes start their
own. ``test_server_roundtrip`` runs against PostgreSQL too.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runwright.model.runs import SubmitRequest
from tests.helpers import home_headers
from tests.procs import (
    SLEEP,
    Db,
    Proc,
    Processes,
    cli_env,
    free_port,
    run_cli,
    start_worker,
    submit_many,
    wait_for,
)

DEMO = "runwright.demo"


@dataclass
class Server:
    home: Path
    url: str
    proc: Proc
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 30.0) -> Any:
        return run_cli(args, self.env, timeout=timeout)

    @property
    def headers(self) -> dict[str, str]:
        """The admin token the server wrote to its home on start."""
        return home_headers(self.home)

    def run(self, run_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/runs/{run_id}", headers=self.headers, timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def wait_status(self, run_id: int, statuses: set[str], timeout: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            data = self.run(run_id)
            return data if data["status"] in statuses else None

        return wait_for(
            reached, timeout=timeout, what=f"run {run_id} to be {'/'.join(sorted(statuses))}"
        )


def start_server(procs: Processes, home: Path, *args: str, **env: str | None) -> Server:
    port = free_port()
    environment = cli_env(home, **env)
    proc = procs.start(
        "server",
        [*args, "server", "--port", str(port), "--tasks", DEMO],
        environment,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not proc.alive():
            raise AssertionError(f"the server exited early:\n{proc.output()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, interval=0.1, what="the server's /healthz")
    return Server(home=home, url=url, proc=proc, env=environment)


def no_traceback(done: Any) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


def json_out(done: Any) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("server-home")
    procs = Processes(tmp_path_factory.mktemp("server-logs"))
    try:
        yield start_server(procs, home)
    finally:
        procs.kill_all()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path / "logs")
    try:
        yield started
    finally:
        started.kill_all()


# -- the shared server ----------------------------------------------------------------------
def test_server_writes_its_address_to_home(server: Server) -> None:
    info = json.loads((server.home / "server.json").read_text())
    assert info == {"url": server.url, "pid": server.proc.pid}
    health = httpx.get(f"{server.url}/healthz", timeout=5).json()
    assert health["status"] == "ok"


def test_submit_wait_prints_the_result(server: Server) -> None:
    done = server.cli("submit", "demo.echo", "--payload", '{"a": 1}', "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    assert re.search(r'"a":\s*1', done.stdout), done.stdout

    data = json_out(server.cli("submit", "demo.echo", "--payload", '{"a": 1}', "--wait", "--json"))
    assert (data["status"], data["result"]) == ("succeeded", {"a": 1})


def test_submit_wait_of_a_failing_run_exits_1_with_dead_letter(server: Server) -> None:
    done = server.cli("submit", "demo.fail", "--max-attempts", "2", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dead_letter" in done.stdout
    assert "2 of 2" in done.stdout
    assert "demo failure on attempt 2 of 2" in done.stdout


def test_submit_of_an_unknown_type_names_the_known_ones(server: Server) -> None:
    done = server.cli("submit", "nope")
    assert done.returncode != 0
    no_traceback(done)
    assert "Unknown task type 'nope'" in done.stderr
    for name in ("demo.count", "demo.echo", "demo.fail"):
        assert name in done.stderr


def test_submit_with_invalid_json_payload_exits_2(server: Server) -> None:
    done = server.cli("submit", "demo.echo", "--payload", "{bad")
    assert done.returncode == 2, done.stdout + done.stderr
    no_traceback(done)
    assert "--payload is not valid JSON" in done.stderr


def test_runs_list_show_and_result(server: Server) -> None:
    run = json_out(
        server.cli("submit", "demo.echo", "--payload", '{"b": [1, 2]}', "--wait", "--json")
    )
    run_id = run["id"]

    listed = server.cli("runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^\s*{run_id}\s+demo\.echo\s+succeeded", listed.stdout, re.M), listed.stdout
    as_json = json_out(server.cli("runs", "list", "--json", "--type", "demo.echo"))
    assert run_id in [item["id"] for item in as_json]

    shown = server.cli("runs", "show", str(run_id))
    assert shown.returncode == 0, shown.stderr
    assert f"Run {run_id} demo.echo  succeeded" in shown.stdout
    assert "1 of 1" in shown.stdout

    assert json_out(server.cli("runs", "result", str(run_id))) == {"b": [1, 2]}

    missing = server.cli("runs", "show", "999999")
    assert missing.returncode == 1
    no_traceback(missing)
    assert "Run 999999 does not exist" in missing.stderr


def test_cancel_and_result_of_a_run_scheduled_later(server: Server) -> None:
    queued = json_out(server.cli("submit", "demo.echo", "--delay", "60", "--json"))
    run_id = queued["id"]
    assert queued["status"] == "queued"

    no_result = server.cli("runs", "result", str(run_id))
    assert no_result.returncode == 1
    no_traceback(no_result)
    assert f"Run {run_id} is still queued" in no_result.stderr

    canceled = server.cli("runs", "cancel", str(run_id))
    assert canceled.returncode == 0, canceled.stderr
    assert f"Run {run_id} canceled" in canceled.stdout
    data = server.run(run_id)
    assert (data["status"], data["outcome"], data["attempt"]) == ("canceled", "canceled", 0)

    again = server.cli("runs", "cancel", str(run_id))
    assert again.returncode == 1
    no_traceback(again)
    assert "already finished (canceled)" in again.stderr


def test_cancel_a_running_run_and_retry_it(server: Server) -> None:
    run = json_out(
        server.cli("submit", "demo.count", "--payload", '{"to": 100, "every": 0.1}', "--json")
    )
    run_id = run["id"]
    server.wait_status(run_id, {"running"}, timeout=10)

    canceled = server.cli("runs", "cancel", str(run_id))
    asked = time.monotonic()
    assert canceled.returncode == 0, canceled.stderr
    assert "is running; its worker stops it" in canceled.stdout
    final = server.wait_status(run_id, {"canceled", "succeeded", "failed"}, timeout=5)
    took = time.monotonic() - asked
    assert final["status"] == "canceled", final
    assert final["progress"]["percent"] < 100
    print(f"\nrunning run canceled {took:.2f}s after the CLI returned")

    retried = server.cli("runs", "retry", str(run_id))
    assert retried.returncode == 0, retried.stderr
    found = re.search(r"Queued run (\d+) as a retry of run (\d+)", retried.stdout)
    assert found, retried.stdout
    assert int(found.group(2)) == run_id
    retry = server.run(int(found.group(1)))
    assert (retry["type"], retry["retry_of"], retry["payload"]) == (
        "demo.count",
        run_id,
        {"to": 100, "every": 0.1},
    )
    server.cli("runs", "cancel", found.group(1))  # do not keep the embedded worker busy

    succeeded = json_out(server.cli("submit", "demo.echo", "--wait", "--json"))
    refused = server.cli("runs", "retry", str(succeeded["id"]))
    assert refused.returncode == 1
    no_traceback(refused)
    assert "only failed or canceled runs can be retried" in refused.stderr


def test_workers_lists_the_embedded_worker(server: Server) -> None:
    listed = server.cli("workers")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"\s{server.proc.pid}\s+default\s+\d+/4\s", listed.stdout), listed.stdout
    workers = json_out(server.cli("workers", "--json"))
    assert [w["pid"] for w in workers] == [server.proc.pid]


def test_db_status_of_the_servers_database(server: Server) -> None:
    done = server.cli("db", "status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"database revision: (\w+)\nrequired revision: \1", done.stdout), done.stdout


# -- no server ------------------------------------------------------------------------------
def test_config_masks_the_password_and_shows_defaults(tmp_path: Path) -> None:
    env = cli_env(tmp_path, fast=False, RUNWRIGHT_DATABASE_URL="postgresql://u:secret@h/db")
    done = run_cli(["config"], env)
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stdout
    assert re.search(r"RUNWRIGHT_DATABASE_URL\s+postgresql://u:\*\*\*\*@h/db", done.stdout)
    assert re.search(r"RUNWRIGHT_HEARTBEAT_INTERVAL\s+5\.0\n", done.stdout), done.stdout
    assert re.search(r"RUNWRIGHT_LEASE_TIMEOUT\s+30\.0\n", done.stdout), done.stdout

    values = json_out(run_cli(["config", "--json"], env))
    assert values["database_url"] == "postgresql://u:****@h/db"
    assert (values["heartbeat_interval"], values["lease_timeout"]) == ("5.0", "30.0")


def test_cli_without_a_server_says_where_it_looked(tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    by_env = run_cli(["runs", "list"], cli_env(tmp_path, RUNWRIGHT_URL=address))
    by_option = run_cli(["--url", address, "workers"], cli_env(tmp_path))
    (tmp_path / "server.json").write_text(json.dumps({"url": address, "pid": 1}))
    by_stale_file = run_cli(["submit", "demo.echo"], cli_env(tmp_path))
    for done in (by_env, by_option, by_stale_file):
        assert done.returncode == 1, done.stdout + done.stderr
        no_traceback(done)
        assert f"Cannot reach the runwright server at {address}" in done.stderr
        assert "RUNWRIGHT_URL" in done.stderr
        assert "--url" in done.stderr


def test_server_refuses_a_database_without_runwright_schema(
    tmp_path: Path, procs: Processes
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "runwright.db")
    conn.execute("CREATE TABLE unrelated (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    env = cli_env(home)

    status = run_cli(["db", "status"], env)
    assert status.returncode == 1
    assert "database revision: (none)" in status.stdout
    assert "runwright db upgrade" in status.stdout

    proc = procs.start("server", ["server", "--port", str(free_port()), "--tasks", DEMO], env)
    code = proc.wait(timeout=30)
    output = proc.output()
    assert code not in (None, 0), output
    assert "Traceback" not in output, output
    assert "runwright db upgrade" in output, output
    assert not (home / "server.json").exists()


# -- stopping processes -----------------------------------------------------------------------
def test_server_stops_cleanly_on_sigterm(tmp_path: Path, procs: Processes) -> None:
    server = start_server(procs, tmp_path / "home")
    done = server.cli("submit", "demo.echo", "--payload", "1", "--wait")
    assert done.returncode == 0, done.stderr
    assert (server.home / "server.json").exists()

    server.proc.signal(signal.SIGTERM)
    code = server.proc.wait(timeout=20)
    output = server.proc.output()
    assert code == 0, f"exit status {code}:\n{output}"
    assert "Stopping" in output
    assert not (server.home / "server.json").exists(), "server.json left behind"


@pytest.fixture
def worker_home(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'runwright.db'}"
    done = run_cli(["--database-url", url, "db", "upgrade"], cli_env(home))
    assert done.returncode == 0, done.stderr
    assert "Upgraded the database from empty to" in done.stdout
    return home, url


def _worker(procs: Processes, home: Path, url: str, **env: str | None) -> tuple[Proc, Db]:
    proc = start_worker(procs, url, home, tasks=f"{DEMO},tests.tasks_crash", **env)
    db = Db(url)
    wait_for(
        lambda: db.scalar("SELECT count(*) FROM workers WHERE pid = :pid", pid=proc.pid),
        timeout=20,
        what="the worker to register",
    )
    return proc, db


def _wait_started(db: Db, run_id: int, ledger: Path | None = None) -> None:
    db.wait_status(run_id, ("running",), timeout=15)
    if ledger is not None:
        wait_for(ledger.exists, timeout=10, what=f"run {run_id}'s task to start")
    time.sleep(0.3)  # let the task get under way


def test_worker_sigterm_lets_the_running_run_finish(
    worker_home: tuple[Path, str], procs: Processes
) -> None:
    home, url = worker_home
    proc, db = _worker(procs, home, url, RUNWRIGHT_SHUTDOWN_GRACE="10")
    try:
        [run_id] = submit_many(
            url, home, [SubmitRequest(type="demo.count", payload={"to": 10, "every": 0.1})]
        )
        _wait_started(db, run_id)
        proc.signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        run = db.run(run_id)
        registered = db.scalar("SELECT count(*) FROM workers")
    finally:
        db.close()
    assert code == 0, proc.output()
    assert "Stopping after running runs finish" in proc.output()
    assert (run.status, run.attempt) == ("succeeded", 1)
    assert registered == 0, "the stopped worker is still registered"


@pytest.mark.parametrize(
    ("task_type", "payload"),
    [("demo.count", {"to": 100, "every": 0.1}), (SLEEP, {"seconds": 6})],
    ids=["cooperative", "time.sleep"],
)
def test_worker_sigterm_requeues_a_long_run_after_the_grace(
    worker_home: tuple[Path, str], procs: Processes, task_type: str, payload: dict[str, Any]
) -> None:
    home, url = worker_home
    ledger = home / "ledger"
    if task_type == SLEEP:
        payload = {**payload, "ledger": str(ledger)}
    proc, db = _worker(procs, home, url, RUNWRIGHT_SHUTDOWN_GRACE="0.5")
    try:
        [run_id] = submit_many(
            url, home, [SubmitRequest(type=task_type, payload=payload, max_attempts=2)]
        )
        _wait_started(db, run_id, ledger if task_type == SLEEP else None)
        proc.signal(signal.SIGTERM)
        signalled = time.monotonic()
        requeued = db.wait_status(run_id, ("queued", "succeeded", "failed", "canceled"), timeout=10)
        requeued_in = time.monotonic() - signalled
        code = proc.wait(timeout=15)
        exited_in = time.monotonic() - signalled
    finally:
        db.close()
    print(f"\nrequeued {requeued_in:.2f}s and exited {exited_in:.2f}s after SIGTERM")
    assert (requeued.status, requeued.attempt, requeued.worker_id) == ("queued", 0, None)
    assert "requeued" in (requeued.error or "")
    assert code == 0, proc.output()
    assert exited_in < 0.5 + 3.0, (
        f"the worker requeued its run {requeued_in:.1f}s after SIGTERM but went on executing "
        f"it until it exited {exited_in:.1f}s after SIGTERM"
    )


def test_worker_second_sigterm_exits_at_once(
    worker_home: tuple[Path, str], procs: Processes
) -> None:
    home, url = worker_home
    proc, db = _worker(procs, home, url, RUNWRIGHT_SHUTDOWN_GRACE="30")
    try:
        [run_id] = submit_many(
            url, home, [SubmitRequest(type="demo.count", payload={"to": 100, "every": 0.1})]
        )
        _wait_started(db, run_id)
        proc.signal(signal.SIGTERM)
        wait_for(
            lambda: "Stopping after running runs finish" in proc.output(),
            timeout=5,
            what="the worker to acknowledge the first SIGTERM",
        )
        assert proc.alive()
        proc.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = proc.wait(timeout=10)
        exited_in = time.monotonic() - signalled
        run = db.run(run_id)
    finally:
        db.close()
    assert exited_in < 2.0
    assert code == 1, proc.output()
    assert "Second signal: exiting now" in proc.output()
    assert run.status == "running"  # left for lease recovery


# -- PostgreSQL and SQLite -------------------------------------------------------------------
def test_server_roundtrip(database_url: str, tmp_path: Path, procs: Processes) -> None:
    home = tmp_path / "home"
    server = start_server(procs, home, "--database-url", database_url)

    status = server.cli("--database-url", database_url, "db", "status")
    assert status.returncode == 0, status.stdout + status.stderr

    done = json_out(
        server.cli("submit", "demo.echo", "--payload", '{"db": "x"}', "--wait", "--json")
    )
    assert (done["status"], done["result"]) == ("succeeded", {"db": "x"})

    run = json_out(
        server.cli("submit", "demo.count", "--payload", '{"to": 100, "every": 0.1}', "--json")
    )
    server.wait_status(run["id"], {"running"}, timeout=10)
    assert server.cli("runs", "cancel", str(run["id"])).returncode == 0
    assert (
        server.wait_status(run["id"], {"canceled", "succeeded", "failed"}, timeout=5)["status"]
        == "canceled"
    )

    listed = json_out(server.cli("runs", "list", "--json"))
    assert [(r["id"], r["status"]) for r in listed] == [
        (run["id"], "canceled"),
        (done["id"], "succeeded"),
    ]
    workers = json_out(server.cli("workers", "--json"))
    assert [w["pid"] for w in workers] == [server.proc.pid]
