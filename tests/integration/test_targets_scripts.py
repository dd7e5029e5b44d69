"""Scripts and packages that declare ``targets``: their entry point runs once per target
with ``sdk.target`` and ``sdk.credential``, through a real ``runwright server``
subprocess on SQLite and on PostgreSQL (the fleet of test_targets_dispatch.py).

The job code here does not log in anywhere itself: it checks the credential it was
handed against the target's vars and refuses the wrong one with
``sdk.AuthenticationFailed``, which is what a job using its own client library does.
What is checked: the declared targets (runwright.toml, a script's ``# /// script``
block), the run's own choice of tags, credential fall-back and statistics, one row and
one log attribution per target, the run's result and outcome for every verdict, the
progress, a cancel that leaves no process behind, and that passwords stay out of what
the API shows.
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import time
import zipfile
from typing import Any

from tests.integration import test_targets_dispatch as dispatch
from tests.integration.test_targets_dispatch import Fleet, names, ok
from tests.procs import wait_for

# The same fleet (a server per database, one sshd) and per-test tags as the ssh tests.
fleet = dispatch.fleet
tag = dispatch.tag

CHECK_PY = """\
import hashlib
import sys
import time

from runwright import sdk

print(f"on {sdk.target['name']} with {sdk.credential!r}", flush=True)
if sdk.credential.username != sdk.target["vars"]["user"]:
    raise sdk.AuthenticationFailed(f"{sdk.target['name']} refused {sdk.credential.username}")
if sdk.target["vars"].get("broken"):
    print("disk full", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(float(sdk.target["vars"].get("sleep", 0)))
sdk.set_result(
    {
        "target": sdk.target["name"],
        "address": sdk.target["address"],
        "user": sdk.credential.username,
        "password_sha256": hashlib.sha256(sdk.credential.password.encode()).hexdigest(),
        "args": sys.argv[1:],
        "param": sdk.params.get("greeting"),
    }
)
"""


def package(tag: str, max_parallel: int = 2, body: str = CHECK_PY) -> dict[str, str]:
    return {
        "runwright.toml": (
            'entrypoint = "check.py"\n'
            f'targets = {{tags = ["{tag}"], max_parallel = {max_parallel}}}\n'
        ),
        "check.py": body,
    }


def two_credentials(fleet: Fleet, tag: str) -> tuple[str, str]:
    """A wrong credential tried first, then the right one."""
    wrong, right = f"{tag}-a-nobody", f"{tag}-b-operator"
    fleet.credential(wrong, [tag], username="nobody", password="nobody-pw-1", priority=1)
    fleet.credential(right, [tag], username="operator", password="operator-pw-2", priority=2)
    return wrong, right


def upload_script(fleet: Fleet, filename: str, text: str) -> dict[str, Any]:
    uploaded: dict[str, Any] = fleet.api(
        "POST", "/api/scripts", files={"file": (filename, text.encode(), "text/x-python")}
    )
    return uploaded


# -- a package ------------------------------------------------------------------------------
def test_a_package_runs_once_per_target_with_its_credential(fleet: Fleet, tag: str) -> None:
    hosts = names(f"{tag}-sw", 3)
    fleet.targets(hosts, [tag], vars={"user": "operator"})
    wrong, right = two_credentials(fleet, tag)
    fleet.package_job(f"{tag}-job", package(tag))
    started = fleet.api("POST", f"/api/jobs/{tag}-job/runs", json={"params": {"greeting": "hello"}})
    run = fleet.wait(int(started["id"]), timeout=120)
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success"), fleet.describe(
        run["id"]
    )
    assert run["progress"] == {"percent": 100.0, "message": "3 of 3 targets done"}

    rows = fleet.run_targets(run["id"])
    assert sorted(rows) == hosts
    for row in rows.values():
        assert row["step_id"] == ""
        assert (row["status"], row["credential"], row["credentials_tried"]) == (
            "succeeded",
            right,
            2,
        ), row
        assert row["exit_status"] == 0
        assert row["started_at"] <= row["finished_at"]

    result = run["result"]
    assert (result["matched"], result["succeeded"], result["failed"]) == (3, 3, 0)
    assert result["outcome"] == "completed_success"
    for host in hosts:
        value = result["targets"][host]["value"]
        assert value["target"] == host
        assert value["user"] == "operator"
        assert value["param"] == "hello"
        assert value["password_sha256"] != "operator-pw-2"  # hashed by the job, not masked

    messages = fleet.messages(run["id"])
    assert "Resolved credentials for 3/3 targets (100%)" in messages
    for host in hosts:
        mine = fleet.messages(run["id"], host)
        assert (
            f"on {host} with Credential(name='{right}', username='operator', secret=********)"
            in mine
        )
        assert any(m.startswith(f"credential {wrong} refused") for m in mine), mine

    stats = {n: fleet.credential_info(n) for n in (wrong, right)}
    assert (stats[wrong]["successes"], stats[wrong]["failures"]) == (0, 3)
    assert (stats[right]["successes"], stats[right]["failures"]) == (3, 0)
    shown = json.dumps(fleet.lines(run["id"])) + json.dumps(rows) + json.dumps(run)
    for secret in ("operator-pw-2", "nobody-pw-1"):
        assert secret not in shown


def test_some_targets_failing_fail_the_run_as_a_partial_failure(fleet: Fleet, tag: str) -> None:
    fleet.target(f"{tag}-good", [tag], vars={"user": "operator"})
    fleet.target(f"{tag}-bad", [tag], vars={"user": "operator", "broken": True})
    two_credentials(fleet, tag)
    fleet.package_job(f"{tag}-job", package(tag))
    run = fleet.run_and_wait(f"{tag}-job", timeout=120)
    assert (run["status"], run["outcome"]) == ("failed", "completed_partial_failure")
    assert "1 of 2" in run["error"], run["error"]
    rows = fleet.run_targets(run["id"])
    assert rows[f"{tag}-good"]["status"] == "succeeded"
    bad = rows[f"{tag}-bad"]
    assert (bad["status"], bad["error_type"], bad["exit_status"]) == ("failed", "command", 3)
    assert "exited with code 3" in bad["error"], bad
    assert "disk full" in bad["error"], bad
    assert "disk full" in fleet.messages(run["id"], f"{tag}-bad")


def test_every_target_failing_is_a_failure(fleet: Fleet, tag: str) -> None:
    fleet.targets(names(f"{tag}-h", 2), [tag], vars={"user": "root"})  # nobody's user
    two_credentials(fleet, tag)
    fleet.package_job(f"{tag}-job", package(tag))
    run = fleet.run_and_wait(f"{tag}-job", timeout=120)
    assert (run["status"], run["outcome"]) == ("failed", "completed_failure")
    for row in fleet.run_targets(run["id"]).values():
        assert (row["status"], row["error_type"], row["credentials_tried"]) == (
            "failed",
            "auth",
            2,
        ), row


def test_no_matching_target_and_no_credential(fleet: Fleet, tag: str) -> None:
    fleet.package_job(f"{tag}-job", package(tag))
    run = fleet.run_and_wait(f"{tag}-job", timeout=60)
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_no_targets")
    assert fleet.run_targets(run["id"]) == {}

    fleet.target(f"{tag}-lonely", [tag], vars={"user": "operator"})
    run = fleet.run_and_wait(f"{tag}-job", timeout=60)
    assert (run["status"], run["outcome"]) == ("failed", "completed_no_credentials")
    row = fleet.run_targets(run["id"])[f"{tag}-lonely"]
    assert (row["status"], row["error_type"]) == ("no_credentials", "credential")


# -- a script ---------------------------------------------------------------------------------
def test_a_script_declares_its_targets_inline_and_a_run_chooses_others(
    fleet: Fleet, tag: str
) -> None:
    other = f"{tag}x"
    fleet.targets(names(f"{tag}-web", 2), [tag], vars={"user": "operator"})
    fleet.targets(names(f"{other}-db", 3), [other], vars={"user": "operator"})
    fleet.credential(f"{tag}-ops", [tag, other], username="operator", password="pw-ops-7")
    header = (
        "# /// script\n"
        "# [tool.runwright]\n"
        f'# targets = {{tags = ["{tag}"], max_parallel = 5}}\n'
        "# ///\n"
    )
    name = f"{tag}-check"
    uploaded = upload_script(fleet, f"{name}.py", header + CHECK_PY)
    assert uploaded["job"]["name"] == name

    run = fleet.run_and_wait(name, timeout=120)
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success"), fleet.describe(
        run["id"]
    )
    assert sorted(fleet.run_targets(run["id"])) == names(f"{tag}-web", 2)

    # The CLI's --tags picks other targets, and --follow shows whose line is whose.
    done = fleet.cli("run", name, "--tags", other, "--max-parallel", "1", "--follow")
    out = ok(done)
    for host in names(f"{other}-db", 3):
        assert f"[{host}] on {host} with Credential(" in out, out
    latest = fleet.api("GET", "/api/runs", params={"job": name, "limit": 1})["runs"][0]
    assert latest["id"] != run["id"]
    rows = fleet.run_targets(latest["id"])
    assert sorted(rows) == names(f"{other}-db", 3)
    spans = sorted((r["started_at"], r["finished_at"]) for r in rows.values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.05, spans  # max_parallel 1: one after the other


def test_targets_that_a_job_cannot_use_are_refused(fleet: Fleet, tag: str) -> None:
    upload_script(fleet, f"{tag}-plain.py", "print('hi')\n")
    refused = fleet.http.post(f"/api/jobs/{tag}-plain/runs", json={"targets": {"tags": [tag]}})
    assert refused.status_code == 422, refused.text
    assert "does not run on targets" in refused.text
    assert "# /// script" in refused.text

    bad = (
        "# /// script\n# [tool.runwright]\n# targets = {tags = [], max_parallel = 0}\n# ///\n"
        "print('hi')\n"
    )
    response = fleet.http.post(
        "/api/scripts", files={"file": (f"{tag}-bad.py", bad.encode(), "text/x-python")}
    )
    assert response.status_code == 422, response.text
    detail = response.text
    for part in ("[tool.runwright]", "tags", "max_parallel"):
        assert part in detail
    assert fleet.http.get(f"/api/jobs/{tag}-bad").status_code == 404  # nothing was created

    files = package(tag)
    files["runwright.toml"] = 'entrypoint = "check.py"\ntargets = ["web"]\n'
    response = fleet.http.post(
        f"/api/jobs/{tag}-pkg/packages",
        files={"file": ("package.zip", _zip(files), "application/zip")},
    )
    assert response.status_code == 422, response.text
    assert "targets must be a table" in response.text


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


# -- cancel -------------------------------------------------------------------------------------
def _processes_with(marker: str) -> list[str]:
    listing = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listing.splitlines() if marker in line and "ps -eo" not in line]


def test_cancel_stops_every_target_process(fleet: Fleet, tag: str) -> None:
    fleet.targets(names(f"{tag}-slow", 4), [tag], vars={"user": "operator", "sleep": 60})
    fleet.credential(f"{tag}-ops", [tag], username="operator", password="pw")
    fleet.package_job(f"{tag}-job", package(tag, max_parallel=2))
    run_id = fleet.run(f"{tag}-job")

    def two_running() -> dict[str, Any] | None:
        rows = fleet.run_targets(run_id)
        running = [r for r in rows.values() if r["status"] == "running"]
        said = [m for m in fleet.messages(run_id) if m.startswith("on ")]
        return rows if len(running) == 2 and len(said) == 2 else None

    rows = wait_for(two_running, timeout=60, what="two targets to run")
    assert sorted(r["status"] for r in rows.values()) == [
        "pending",
        "pending",
        "running",
        "running",
    ]
    asked = time.monotonic()
    fleet.api("POST", f"/api/runs/{run_id}/cancel")
    run = fleet.wait(run_id, timeout=30)
    assert (run["status"], run["outcome"]) == ("canceled", "canceled"), fleet.describe(run_id)
    assert time.monotonic() - asked < 20
    ended = sorted(r["status"] for r in fleet.run_targets(run_id).values())
    assert ended == ["canceled"] * 4
    # The job processes (python running check.py on this run's folder) are gone.
    folder = f"runs/{run_id}-"
    leftovers = [p for p in _processes_with("_runwright_entry.py") if folder in p]
    assert leftovers == []


def test_many_targets_respect_max_parallel(fleet: Fleet, tag: str) -> None:
    count = 12
    fleet.targets(names(f"{tag}-n", count), [tag], vars={"user": "operator", "sleep": 0.3})
    fleet.credential(f"{tag}-ops", [tag], username="operator", password="pw")
    fleet.package_job(f"{tag}-job", package(tag, max_parallel=4))
    run = fleet.run_and_wait(f"{tag}-job", timeout=180)
    assert (run["status"], run["outcome"]) == ("succeeded", "completed_success")
    rows = list(fleet.run_targets(run["id"]).values())
    events = sorted([(r["started_at"], 1) for r in rows] + [(r["finished_at"], -1) for r in rows])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak == 4, events
