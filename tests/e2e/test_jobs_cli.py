"""Job code through the `runwright` command against a server subprocess (SQLite home):
deploy, versions, runs followed live, logs, scripts and package builds."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import Server, no_traceback, start_server
from tests.procs import RUNWRIGHT, Processes, cli_env, run_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("jobs-server-home")
    procs = Processes(tmp_path_factory.mktemp("jobs-server-logs"))
    try:
        yield start_server(procs, home)
    finally:
        procs.kill_all()


def job_folder(parent: Path, main: str, manifest: str = 'entrypoint = "main.py"\n') -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "runwright.toml").write_text(manifest)
    (parent / "main.py").write_text(main)
    return parent


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done)
    return done.stdout


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(done))


def started_run(stdout: str) -> int:
    match = re.search(r"Started run (\d+) of", stdout)
    assert match, stdout
    return int(match.group(1))


# -- deploy and versions ---------------------------------------------------------------------
def test_deploy_list_versions_and_activate(server: Server, tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "etl", "print('v1')\n")
    out = ok(server.cli("deploy", str(folder), "--job", "etl"))
    assert re.search(r"Deployed etl v1 \([0-9a-f]{12}\)\.", out), out
    out = ok(server.cli("deploy", str(folder), "--job", "etl"))
    assert "etl v1 already has this code" in out
    (folder / "main.py").write_text("print('v2')\n")
    assert "Deployed etl v2" in ok(server.cli("deploy", str(folder), "--job", "etl"))

    table = ok(server.cli("job", "list"))
    row = next(line for line in table.splitlines() if line.split()[:1] == ["etl"])
    assert row.split()[:4] == ["etl", "package", "v2", "0"]
    listed = as_json(server.cli("job", "list", "--json"))
    assert [(j["name"], j["current_version"]) for j in listed if j["name"] == "etl"] == [("etl", 2)]

    versions = ok(server.cli("job", "versions", "etl"))
    rows = [line.split() for line in versions.splitlines()[1:] if line.strip()]
    assert rows[0][:2] == ["*", "v2"]
    assert rows[1][0] == "v1"
    assert "main.py" in versions

    assert "Job etl now runs v1." in ok(server.cli("job", "activate", "etl", "1"))
    current = [v["version"] for v in as_json(server.cli("job", "versions", "etl", "--json"))]
    flags = [v["current"] for v in as_json(server.cli("job", "versions", "etl", "--json"))]
    assert list(zip(current, flags, strict=True)) == [(2, False), (1, True)]

    missing = server.cli("job", "activate", "etl", "7")
    assert missing.returncode == 1
    no_traceback(missing)
    assert "no version v7; versions: v2, v1" in missing.stderr


def test_deploy_of_a_folder_without_manifest_says_what_to_write(
    server: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "main.py").write_text("print(1)\n")
    done = server.cli("deploy", str(folder), "--job", "bare")
    assert done.returncode == 1
    no_traceback(done)
    assert 'entrypoint = "main.py"' in done.stderr


# -- run --follow and logs -------------------------------------------------------------------
COUNTER = """\
import time
from runwright import sdk
n = sdk.params["n"]
for i in range(1, n + 1):
    print(f"step {i} of {n}", flush=True)
    time.sleep(0.6)
sdk.set_result({"counted": n})
"""


def test_run_follow_prints_the_lines_live_and_the_result(server: Server, tmp_path: Path) -> None:
    ok(server.cli("deploy", str(job_folder(tmp_path / "counter", COUNTER)), "--job", "counter"))
    proc = subprocess.Popen(
        [RUNWRIGHT, "run", "counter", "-p", "n=3", "--follow"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    arrived: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            arrived.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    ended = time.monotonic()
    reader.join(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    text = [line for _, line in arrived]
    assert code == 0, "\n".join(text)
    assert "Traceback" not in "\n".join(text)
    steps = [(at, line) for at, line in arrived if line.startswith("step ")]
    assert [line for _, line in steps] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert ended - steps[0][0] > 1.0, "step 1 was printed only at the end, not live"
    assert steps[1][0] - steps[0][0] > 0.3
    joined = "\n".join(text)
    assert re.search(r"Run \d+ succeeded in \d+\.\d\ds", joined), joined
    assert json.loads(joined[joined.index("{") :]) == {"counted": 3}


FAILING = """\
import sys
print("starting")
print("ERROR: the export failed", file=sys.stderr)
sys.exit(5)
"""


def test_a_failing_run_exits_1_and_its_logs_filter_by_level(server: Server, tmp_path: Path) -> None:
    ok(server.cli("deploy", str(job_folder(tmp_path / "failing", FAILING)), "--job", "failing"))
    done = server.cli("run", "failing", "--follow")
    assert done.returncode == 1, done.stdout + done.stderr
    no_traceback(done)
    assert "starting" in done.stdout
    assert "ERROR: the export failed" in done.stdout
    assert re.search(r"Run \d+ failed \(error\) in [\d.]+s, exit code 5", done.stdout)
    assert "The job exited with code 5" in done.stderr
    run_id = started_run(done.stdout)

    every = ok(server.cli("logs", str(run_id))).splitlines()
    assert "starting" in every
    assert "ERROR: the export failed" in every
    assert every[0].startswith("Job failing v1 (")
    errors = ok(server.cli("logs", str(run_id), "--level", "error")).splitlines()
    assert "ERROR: the export failed" in errors
    assert "starting" not in errors
    assert not [line for line in errors if line.startswith("Job failing v1")]
    assert any(line.startswith("Exited with code 5") for line in errors)

    bad = server.cli("logs", str(run_id), "--level", "loud")
    assert bad.returncode == 2
    no_traceback(bad)


# -- scripts ---------------------------------------------------------------------------------
def test_script_upload_list_run_and_archive(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "cleanup_tmp.py"
    script.write_text("print('cleaned 3 files')\n")
    out = ok(server.cli("script", "upload", str(script), "--description", "Nightly cleanup"))
    assert "Uploaded cleanup_tmp.py as job cleanup-tmp v1" in out
    assert "runwright run cleanup-tmp" in out

    table = ok(server.cli("script", "list"))
    row = next(line for line in table.splitlines() if line.split()[:1] == ["cleanup-tmp"])
    assert row.split()[:4] == ["cleanup-tmp", "v1", "0", "-"]
    assert "Nightly cleanup" in row

    ran = server.cli("run", "cleanup-tmp", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    scripts = as_json(server.cli("script", "list", "--json"))
    mine = [s for s in scripts if s["name"] == "cleanup-tmp"]
    assert [(s["total_runs"], s["last_status"]) for s in mine] == [(1, "succeeded")]

    assert "Archived script cleanup-tmp." in ok(server.cli("script", "archive", "cleanup-tmp"))
    remaining = as_json(server.cli("script", "list", "--json"))
    assert "cleanup-tmp" not in [s["name"] for s in remaining]
    archived = as_json(server.cli("job", "list", "--archived", "--json"))
    assert "cleanup-tmp" in [j["name"] for j in archived]


def test_script_upload_of_a_broken_script_says_where(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("print('a')\nif True\n    pass\n")
    done = server.cli("script", "upload", str(script))
    assert done.returncode == 1
    no_traceback(done)
    assert "syntax error on line 2" in done.stderr
    missing = server.cli("script", "upload", str(tmp_path / "absent.py"))
    assert missing.returncode == 1
    no_traceback(missing)
    assert "cannot read" in missing.stderr


# -- package build -----------------------------------------------------------------------------
def test_package_build_twice_gives_identical_bytes(tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "pkg", "print('same')\n")
    (folder / "lib").mkdir()
    (folder / "lib" / "helpers.py").write_text("X = 1\n")
    env = cli_env(tmp_path / "home")
    first, second = tmp_path / "one.zip", tmp_path / "two.zip"
    out = ok(run_cli(["package", "build", str(folder), "-o", str(first)], env))
    for path in folder.rglob("*"):
        path.touch()
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00")
    ok(run_cli(["package", "build", str(folder), "-o", str(second)], env))
    assert first.read_bytes() == second.read_bytes()
    sha256 = hashlib.sha256(first.read_bytes()).hexdigest()
    assert f"sha256 {sha256}" in out
    assert "3 files" in out
