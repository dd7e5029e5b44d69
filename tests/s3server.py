"""A real S3 API on loopback for the artifact store tests: moto's server mode in a
subprocess (moto is never imported into the test process)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    log: Path


class S3ServerFailed(Exception):
    """moto's server could not be started (not installed, crashed, never answered)."""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@contextlib.contextmanager
def moto_server() -> Iterator[S3Server]:
    """Start ``python -m moto.server`` on a free loopback port; stop it on exit."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="moto-server-", suffix=".log")[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(f"{endpoint}/moto-api/"):
            if popen.poll() is not None:
                raise S3ServerFailed(
                    f"moto.server exited with {popen.returncode}: "
                    f"{log.read_text(errors='replace')[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise S3ServerFailed(
                    f"moto.server did not answer at {endpoint} within {START_TIMEOUT:.0f} s"
                )
            time.sleep(0.1)
        yield S3Server(endpoint_url=endpoint, log=log)
    finally:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)
        with contextlib.suppress(OSError):
            log.unlink()
