"""Targets benchmark: one `echo` on 200 targets, at most 50 at a time, against the ideal.

Run from the repository root, as root (PostgreSQL on 127.0.0.1:5432, user postgres,
trust auth; /usr/sbin/sshd from the openssh-server package):

    .venv/bin/python bench/targets.py [--databases sqlite,postgres] [--targets 200]
        [--max-parallel 50] [--runs 3] [--command "echo ok"] [--auth key|password]
        [--max-startups 500:30:1000] [--server-workers 4] [--wait-quiet S]
        [--time-limit S]

Prints one JSON line per database on stdout and progress on stderr. Every database is a
fresh one, dropped at the end; the SSH server, the runwright server and the temporary
folders are removed, even on error, Ctrl-C or the time limit. Only public entry points
are used: the CLI (`runwright db upgrade`, `runwright server`), the REST API and the
database. See docs/benchmarks.md, section "Targets (bench/targets.py)", for what each
figure means.

1. An OpenSSH server of the benchmark's own on a free loopback port (``sshd -D -e -f``
   with a fresh ed25519 host key, a local user ``rwbench`` logging in with a key
   generated here, or with a password), the way tests/sshserver.py starts the tests'
   one, with ``MaxStartups`` raised: sshd's default (10:30:100) starts refusing
   unauthenticated connections beyond 10 at once, while here 50 arrive together.
   A real fleet has one sshd per host and never sees them.
2. A `runwright server` (API and embedded worker) on a fresh database; ``--targets``
   targets (``POST /api/targets/import``) that all name that sshd, tag ``fleet``, and one
   more, tag ``solo``; one credential for both tags; a steps job whose only step is
   ``uses: ssh`` with ``command`` on tag ``fleet``, ``max_parallel`` ``--max-parallel``.
3. One target: a warm-up run, then ``--runs`` runs with the run's own tags
   (``{"targets": {"tags": ["solo"]}}``): that target's time (its ``run_targets``
   duration: connect, log in, run, close) and the step's time. The ideal for the fleet
   is ``targets / max_parallel x one target's time``.
4. The fleet: a warm-up run (it records every host key), then ``--runs`` runs: the
   step's wall time (``run_steps``), each target's duration, failures by error type,
   how many targets ran at once, and the CPU of the runwright server, of sshd (with the
   per-connection processes it reaped) and of the PostgreSQL backends.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would come first on sys.path and its queue.py would shadow
# the standard library's `queue`: take the folder off and put the repository root there.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import collections
import contextlib
import fcntl
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncssh
import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet

import runwright
from bench.queue import (
    BenchAborted,
    BenchError,
    Processes,
    add_common_arguments,
    child_env,
    database_version,
    free_port,
    fresh_database,
    git_revision,
    percentiles,
    progress,
    runwright_command,
    server_headers,
    start_py_spy,
    stop_py_spy,
    time_limited,
    upgrade_schema,
    wait_healthy,
    wait_until_quiet,
)
from bench.steps import cpu_model
from bench.triggers import CpuMeter, pg_backend_pids
from runwright.db.engine import create_engine

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
USERNAME = "rwbench"
USER_LOCK = Path(tempfile.gettempdir()) / "runwright-bench-rwbench-user.lock"
JOB = "bench-targets"
FLEET_TAG, SOLO_TAG = "fleet", "solo"
AIM_RATIO = 1.5  # from the issue: the fleet's wall time at most 1.5 times the ideal
FINAL = {"succeeded", "failed", "canceled", "dead_letter"}
RUN_TIMEOUT = 300.0
POLL_SECONDS = 0.2  # between two reads of a run's status (the figures come from its rows)


# -- the SSH server ------------------------------------------------------------------------
@dataclass(frozen=True)
class Sshd:
    proc: subprocess.Popen[bytes]
    port: int
    username: str
    password: str
    private_key: str
    host_key: str
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


def _keygen(path: Path, comment: str) -> tuple[str, str]:
    done = _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    if done.returncode != 0:
        raise BenchError(f"ssh-keygen failed: {done.stderr.strip()}")
    public = Path(f"{path}.pub").read_text().split()
    return path.read_text(), f"{public[0]} {public[1]}"


def ensure_user(password: str) -> None:
    """The local user the targets log in as (created once, like tests/sshserver.py does
    for its own user; processes of one machine take turns through a file lock)."""
    if os.geteuid() != 0:
        raise BenchError("the benchmark starts sshd and a local user: run it as root")
    with USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(USERNAME)
        except KeyError:
            done = _run(["useradd", "--create-home", "--shell", "/bin/sh", USERNAME])
            if done.returncode not in (0, 9):  # 9: it exists already
                raise BenchError(f"useradd {USERNAME} failed: {done.stderr.strip()}") from None
        done = _run(["chpasswd"], stdin=f"{USERNAME}:{password}\n")
        if done.returncode != 0:
            raise BenchError(f"chpasswd failed: {done.stderr.strip()}")


def _sshd_version() -> tuple[int, int]:
    done = _run([SSHD, "-V"])
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@contextlib.contextmanager
def ssh_server(max_startups: str, rexec: bool) -> Iterator[Sshd]:
    """sshd on a free loopback port with its own configuration; stopped on the way out."""
    if not os.path.exists(SSHD):
        raise BenchError(f"{SSHD} is missing: install the openssh-server package")
    password = f"rwbench-{secrets.token_hex(8)}"
    ensure_user(password)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd refuses to start without it
    folder = Path(tempfile.mkdtemp(prefix="rw-bench-sshd-"))
    folder.chmod(0o755)  # sshd reads AuthorizedKeysFile as the user
    proc: subprocess.Popen[bytes] | None = None
    try:
        _, host_key = _keygen(folder / "host_ed25519", "rw-bench-host")
        private_key, client_public = _keygen(folder / "client_ed25519", "rw-bench-client")
        authorized = folder / "authorized_keys"
        authorized.write_text(client_public + "\n")
        authorized.chmod(0o644)
        port = free_port()
        lines = [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {folder / 'host_ed25519'}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PasswordAuthentication yes",
            "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {USERNAME}",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "LogLevel INFO",
            # 50 logins arrive at once; the default 10:30:100 refuses some of them.
            f"MaxStartups {max_startups}",
        ]
        if _sshd_version() >= (9, 8):
            lines.append("PerSourcePenalties no")
        config = folder / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        checked = _run([SSHD, "-t", "-f", str(config)])
        if checked.returncode != 0:
            raise BenchError(f"sshd refused its config: {checked.stderr.strip()}")
        log = folder / "sshd.log"
        # Up to OpenSSH 9.7, -r keeps sshd from executing itself again for every
        # connection (reading its configuration and keys again): a third of its CPU.
        no_rexec = [] if rexec or _sshd_version() >= (9, 8) else ["-r"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", *no_rexec, "-f", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while not _answers(port):
            if proc.poll() is not None:
                raise BenchError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"sshd did not answer on port {port} within 15s")
            time.sleep(0.05)
        progress(f"sshd (OpenSSH {'.'.join(map(str, _sshd_version()))}) on port {port}")
        yield Sshd(proc, port, USERNAME, password, private_key, host_key, log)
    finally:
        if proc is not None and proc.poll() is None:
            # Its own session: the listener and its connection processes go together.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def cpu_with_children(pid: int) -> float | None:
    """User + system CPU of a process and of the children it reaped (sshd's per-connection
    processes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    except (OSError, IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the runwright side ----------------------------------------------------------------------
@dataclass
class Options:
    targets: int
    max_parallel: int
    runs: int
    command: str
    auth: str
    max_startups: str
    sshd_rexec: bool
    server_workers: int
    pg_server: str
    py_spy: Path | None = None
    py_spy_gil: bool = False


class Api:
    def __init__(
        self,
        base: str,
        server: subprocess.Popen[bytes],
        processes: Processes,
        headers: dict[str, str],
    ) -> None:
        self.http = httpx.Client(base_url=base, headers=headers, timeout=60)
        self.server = server
        self.processes = processes

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise BenchError(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json() if response.content else None

    def run(self, targets: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a run of the job and wait for its end; the run, its step, its targets."""
        body = {"targets": targets} if targets else {}
        run_id = self.call("POST", f"/api/jobs/{JOB}/runs", json=body)["id"]
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            run = self.call("GET", f"/api/runs/{run_id}")
            if run["status"] in FINAL:
                break
            if self.server.poll() is not None:
                raise BenchError(
                    f"`runwright server` exited with code {self.server.returncode}; its log "
                    f"ends with:\n{self.processes.log_tail(self.server)}"
                )
            if time.monotonic() > deadline:
                raise BenchError(f"run {run_id} did not end within {RUN_TIMEOUT:g}s")
            time.sleep(POLL_SECONDS)
        [step] = self.call("GET", f"/api/runs/{run_id}/steps")
        rows = self.call("GET", f"/api/runs/{run_id}/targets")
        return {"run": run, "step": step, "targets": rows}

    def close(self) -> None:
        self.http.close()


def max_concurrent(rows: Sequence[dict[str, Any]]) -> int:
    """The most targets that were running at the same moment."""
    events = []
    for row in rows:
        if row["started_at"] is not None and row["finished_at"] is not None:
            events += [(row["started_at"], 1), (row["finished_at"], -1)]
    events.sort(key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def seconds(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "best": round(min(values), 3),
        "all": [round(v, 3) for v in values],
    }


def failures_of(done: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for item in done:
        for row in item["targets"]:
            if row["status"] != "succeeded":
                counts[row["error_type"] or row["status"]] += 1
    return dict(counts)


def check_run(item: dict[str, Any], expected: int, what: str) -> None:
    run, rows = item["run"], item["targets"]
    if len(rows) != expected:
        raise BenchError(f"{what}: {len(rows)} targets in the run, expected {expected}")
    if run["status"] != "succeeded":
        errors = collections.Counter(
            f"{r['error_type']}: {r['error']}" for r in rows if r["status"] != "succeeded"
        )
        progress(f"{what}: run {run['id']} {run['status']} ({run['error']}); {dict(errors)}")


def measure(kind: str, opts: Options, processes: Processes, sshd: Sshd) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rw-bench-targets-") as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        home.mkdir()
        with fresh_database(kind, workdir, opts.pg_server) as url:
            upgrade_schema(url, home)
            env = child_env(home)
            env["RUNWRIGHT_SECRET_KEY"] = Fernet.generate_key().decode()
            port = free_port()
            server = processes.start(
                "server",
                [
                    *runwright_command(),
                    "--database-url",
                    url,
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(opts.server_workers),
                ],
                env,
            )
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, server, processes)
            api = Api(base, server, processes, server_headers(home))
            engine = create_engine(url)
            try:
                return fleet_figures(kind, opts, api, engine, server, sshd, processes, home)
            finally:
                api.close()
                engine.dispose()
                processes.stop(server)


def fleet_figures(
    kind: str,
    opts: Options,
    api: Api,
    engine: sa.Engine,
    server: subprocess.Popen[bytes],
    sshd: Sshd,
    processes: Processes,
    home: Path,
) -> dict[str, Any]:
    width = len(str(opts.targets))
    address = {"address": "127.0.0.1", "port": sshd.port}
    rows = [
        {"name": f"host-{i:0{width}d}", **address, "tags": [FLEET_TAG]}
        for i in range(1, opts.targets + 1)
    ]
    rows.append({"name": "solo", **address, "tags": [SOLO_TAG]})
    report = api.call("POST", "/api/targets/import", json=rows)
    if report["refused"]:
        raise BenchError(f"targets refused by the import: {report['rows'][:3]}")
    credential: dict[str, Any] = {
        "name": "bench",
        "username": sshd.username,
        "tags": [FLEET_TAG, SOLO_TAG],
    }
    if opts.auth == "key":
        credential["private_key"] = sshd.private_key
    else:
        credential["password"] = sshd.password
    api.call("POST", "/api/credentials", json=credential)
    api.call(
        "PUT",
        f"/api/jobs/{JOB}/steps",
        json={
            "description": "runwright benchmark: one command on every target",
            "steps": [
                {
                    "id": "fleet",
                    "uses": "ssh",
                    "with": {"command": opts.command},
                    "targets": {"tags": [FLEET_TAG], "max_parallel": opts.max_parallel},
                }
            ],
        },
    )
    solo = {"tags": [SOLO_TAG]}

    progress(f"{kind}: one target, warm-up and {opts.runs} runs")
    check_run(api.run(solo), 1, "one target, warm-up")
    single = [api.run(solo) for _ in range(opts.runs)]
    for item in single:
        check_run(item, 1, "one target")
    one_target = [item["targets"][0]["duration"] for item in single]
    one_step = [item["step"]["duration"] for item in single]

    progress(f"{kind}: {opts.targets} targets, warm-up (records the host keys)")
    warm = api.run()
    check_run(warm, opts.targets, "fleet, warm-up")
    pids: dict[str, Sequence[int]] = {"server": [server.pid], "postgres": pg_backend_pids(engine)}
    spy = start_py_spy(opts, processes, server.pid, f"{kind}-targets-server", home)  # type: ignore[arg-type]
    meter = CpuMeter()
    meter.start(pids)
    sshd_before = cpu_with_children(sshd.proc.pid) or 0.0
    log_offset = len(sshd.log_text())
    began = time.monotonic()
    fleet = []
    for n in range(opts.runs):
        item = api.run()
        check_run(item, opts.targets, f"fleet run {n + 1}")
        progress(
            f"{kind}: fleet run {n + 1}: step {item['step']['duration']:.2f}s, "
            f"{sum(r['status'] == 'succeeded' for r in item['targets'])} succeeded"
        )
        fleet.append(item)
    wall = time.monotonic() - began
    cpu: dict[str, float | None] = meter.stop(
        {**pids, "postgres": pg_backend_pids(engine) or pids["postgres"]}
    )
    sshd_cpu = (cpu_with_children(sshd.proc.pid) or 0.0) - sshd_before
    if spy is not None:
        stop_py_spy(spy, processes)
    server_cpu_s = (cpu["server"] or 0) / 100 * wall
    cpu["sshd"] = round(100 * sshd_cpu / wall, 1)
    other = cpu["other_work_pct_of_machine"]
    if other is not None:  # the meter counted sshd as other work
        sshd_share = 100 * sshd_cpu / wall / (os.cpu_count() or 1)
        cpu["other_work_pct_of_machine"] = round(max(0.0, other - sshd_share), 1)
    sshd_log = sshd.log_text()[log_offset:]

    steps = [item["step"]["duration"] for item in fleet]
    durations_ms = [
        1000 * r["duration"] for item in fleet for r in item["targets"] if r["duration"]
    ]
    runs_s = [item["run"]["duration"] for item in fleet if item["run"]["duration"] is not None]
    postgres_cpu_s = (cpu["postgres"] or 0) / 100 * wall
    cpu_floor = (server_cpu_s + sshd_cpu + postgres_cpu_s) / opts.runs / (os.cpu_count() or 1)
    ideal = opts.targets / opts.max_parallel * statistics.median(one_target)
    ideal_step = opts.targets / opts.max_parallel * statistics.median(one_step)
    ratio = statistics.median(steps) / ideal
    failures = failures_of(fleet)
    return {
        "database": kind,
        "targets": opts.targets,
        "max_parallel": opts.max_parallel,
        "command": opts.command,
        "auth": opts.auth,
        "runs": opts.runs,
        "one_target_s": seconds(one_target),
        "one_target_step_s": seconds(one_step),
        "ideal_s": round(ideal, 3),
        "step_wall_s": seconds(steps),
        "ratio": round(ratio, 2),
        "ratio_vs_step_ideal": round(statistics.median(steps) / ideal_step, 2),
        "meets_aim": ratio <= AIM_RATIO and not failures,
        "cpu_floor_s": round(cpu_floor, 3),
        "ratio_vs_cpu_floor": round(statistics.median(steps) / cpu_floor, 2),
        "run_wall_s": seconds(runs_s) if runs_s else None,
        "target_ms": {
            "p50": percentiles(durations_ms)["p50"],
            "p99": percentiles(durations_ms)["p99"],
            "max": percentiles(durations_ms)["max"],
        },
        "failures": failures,
        "failed_runs": sum(item["run"]["status"] != "succeeded" for item in fleet),
        "max_concurrent": max(max_concurrent(item["targets"]) for item in fleet),
        "cpu_pct_of_one_core": cpu,
        "server_cpu_ms_per_target": round(1000 * server_cpu_s / (opts.targets * opts.runs), 2),
        "sshd_cpu_ms_per_login": round(1000 * sshd_cpu / (opts.targets * opts.runs), 2),
        "sshd": {
            "accepted": len(re.findall(r"Accepted (?:publickey|password) for", sshd_log)),
            "refused_beyond_max_startups": sshd_log.count("exceeded MaxStartups")
            + sshd_log.count("drop connection"),
            "max_startups": opts.max_startups,
            "rexec": opts.sshd_rexec or _sshd_version() >= (9, 8),
        },
        "warmup_step_s": round(warm["step"]["duration"], 3),
        "profiled": spy is not None,
        "database_version": database_version(engine),
    }


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark runwright's steps on targets: one command on many targets "
        "over SSH against the ideal. One JSON line per database on stdout."
    )
    add_common_arguments(
        parser,
        limit="300 per database, plus --wait-quiet",
        py_spy="record the runwright server with py-spy during the measured fleet runs "
        "(raw stacks in DIR; slows the server, so its figures are not comparable)",
    )
    parser.add_argument("--targets", type=int, default=200, help="targets (default 200)")
    parser.add_argument(
        "--max-parallel", type=int, default=50, help="the step's max_parallel (default 50)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="measured runs of each kind (default 3)"
    )
    parser.add_argument(
        "--command", default="echo ok", help="the command run on every target (default: echo ok)"
    )
    parser.add_argument(
        "--auth",
        choices=("key", "password"),
        default="key",
        help="the credential: an ed25519 key (default) or a password",
    )
    parser.add_argument(
        "--max-startups",
        default="500:30:1000",
        help="sshd's MaxStartups (default 500:30:1000; sshd's own default, 10:30:100, "
        "refuses logins beyond 10 at once)",
    )
    parser.add_argument(
        "--sshd-rexec",
        action="store_true",
        help="let sshd execute itself again for every connection, as it does by default "
        "(the benchmark passes -r up to OpenSSH 9.7: its sshd stands for 200 hosts on "
        "the benchmark's own two cores)",
    )
    parser.add_argument(
        "--server-workers", type=int, default=4, help="runwright server --workers (default 4)"
    )
    args = parser.parse_args(argv)
    args.database_list = [d.strip() for d in args.databases.split(",") if d.strip()]
    for name in args.database_list:
        if name not in ("sqlite", "postgres"):
            parser.error(f"unknown database {name!r}: use sqlite and/or postgres")
    if args.targets < 1 or args.runs < 1 or not 1 <= args.max_parallel <= 1000:
        parser.error("--targets and --runs must be at least 1, --max-parallel 1 to 1000")
    return args


def sshd_version_text() -> str:
    done = _run([SSHD, "-V"])
    return (done.stderr or done.stdout).strip().split(",")[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit = args.time_limit or (300.0 + args.wait_quiet) * len(args.database_list)
    opts = Options(
        targets=args.targets,
        max_parallel=args.max_parallel,
        runs=args.runs,
        command=args.command,
        auth=args.auth,
        max_startups=args.max_startups,
        sshd_rexec=args.sshd_rexec,
        server_workers=args.server_workers,
        pg_server=args.pg_server.rstrip("/"),
        py_spy=args.py_spy,
        py_spy_gil=args.py_spy_gil,
    )
    common = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "runwright": runwright.__version__,
        "asyncssh": asyncssh.__version__,
        "openssh": sshd_version_text() if os.path.exists(SSHD) else None,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rw-bench-logs-") as logs:
        processes = Processes(Path(logs))
        status = 0
        try:
            with (
                time_limited(processes, limit),
                ssh_server(opts.max_startups, opts.sshd_rexec) as sshd,
            ):
                for kind in args.database_list:
                    busy = wait_until_quiet(args.wait_quiet)
                    try:
                        line = measure(kind, opts, processes, sshd)
                    except BenchError as exc:
                        progress(f"{kind}: FAILED: {exc}")
                        status = 1
                        continue
                    finally:
                        processes.stop_all()
                    line["git"] = git_revision()
                    line["machine_busy_pct_before"] = busy
                    line["bench_seconds"] = round(time.monotonic() - started, 1)
                    print(json.dumps({**line, **common}), flush=True)
        except BenchError as exc:
            progress(f"FAILED: {exc}")
            status = 1
        except BenchAborted as exc:
            progress(f"ABORTED: {exc}; subprocesses stopped and databases dropped")
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
