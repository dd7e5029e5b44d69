"""A real OpenSSH server on loopback for the SFTP step tests.

``/usr/sbin/sshd`` runs in the foreground (``sshd -D -e -f CONFIG``) with a config in
a temporary folder: a fresh ed25519 host key, password and public-key login for a
dedicated local user ``rwtest`` (created once, idempotently), ``internal-sftp``.
Each pytest-xdist worker process starts its own server on its own free port.

Tests use the session fixture ``ssh_server`` (tests/conftest.py). They run as root
(the user is created with ``useradd`` and ``chpasswd``); on a machine without sshd
(package openssh-server) the fixture fails under CI=true and skips elsewhere
(``need_service``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import need_service
from tests.s3server import free_port

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
USERNAME = "rwtest"
PASSWORD = "rw-Test-pass-5f1c9a"
START_TIMEOUT = 15.0
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it
USER_LOCK = Path(tempfile.gettempdir()) / "runwright-tests-rwtest-user.lock"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    username: str
    password: str
    private_key: str  # the client key, OpenSSH format (authorized for the user)
    host_key: str  # "ssh-ed25519 AAAA..." of the server
    wrong_host_key: str  # another ed25519 public key line: pinning it must fail
    home: Path  # the user's home: where relative remote paths land
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def make_dir(self, name: str | None = None) -> Path:
        """A fresh folder in the user's home, owned by the user (one per test keeps
        the tests of several xdist workers, which share the home, apart)."""
        folder = self.home / (name or f"t-{uuid.uuid4().hex[:12]}")
        folder.mkdir(parents=True)
        entry = pwd.getpwnam(self.username)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        return folder


class SshServerFailed(Exception):
    """sshd could not be started (missing, refused its config, never answered)."""


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def _keygen(path: Path, comment: str) -> tuple[str, str]:
    """A new ed25519 key without passphrase: (private key text, public key line)."""
    done = _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    if done.returncode != 0:
        raise SshServerFailed(f"ssh-keygen failed: {done.stderr.strip()}")
    public = Path(f"{path}.pub").read_text().split()
    return path.read_text(), f"{public[0]} {public[1]}"


def _retry(
    command: list[str], *, what: str, ok_codes: tuple[int, ...] = (0,), stdin: str | None = None
) -> None:
    """Run a user-database command, again while another process holds its lock."""
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode in ok_codes:
            return
        busy = "lock" in done.stderr.lower() or "try again" in done.stderr.lower()
        if not busy or time.monotonic() > deadline:
            raise SshServerFailed(f"{what} failed ({done.returncode}): {done.stderr.strip()}")
        time.sleep(0.2)


def ensure_user(username: str = USERNAME, password: str = PASSWORD) -> Path:
    """Create the local user with a home folder (idempotent) and set its password;
    returns the home folder.

    Processes of one machine (xdist workers) take turns through a file lock: useradd
    checks for the name before it locks /etc/passwd, so two of them at once can both
    add the user, the second replacing the first's entry with another uid (and
    leaving the home to the first uid)."""
    if os.geteuid() != 0:
        raise SshServerFailed("the SFTP tests create a local user and must run as root")
    with USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(username)
        except KeyError:
            # Exit code 9: the user exists already (created by something else meanwhile).
            _retry(
                ["useradd", "--create-home", "--shell", "/bin/sh", username],
                what=f"useradd {username}",
                ok_codes=(0, 9),
            )
        entry = pwd.getpwnam(username)
        home = Path(entry.pw_dir)
        home.mkdir(parents=True, exist_ok=True)  # the user may exist without its home
        if (home.stat().st_uid, home.stat().st_gid) != (entry.pw_uid, entry.pw_gid):
            os.chown(home, entry.pw_uid, entry.pw_gid)
        _retry(["chpasswd"], stdin=f"{username}:{password}\n", what="chpasswd")
    return home


def _sshd_version() -> tuple[int, int]:
    done = _run([SSHD, "-V"])
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _answers(port: int) -> bool:
    """True once sshd accepts a connection and sends its version banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@contextlib.contextmanager
def ssh_server_process() -> Iterator[SshServer]:
    """Start sshd on a free loopback port with a fresh configuration; stop it on exit."""
    if not os.path.exists(SSHD):
        raise SshServerFailed(f"{SSHD} is missing (install the openssh-server package)")
    home = ensure_user()
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="rw-sshd-"))
    # sshd reads AuthorizedKeysFile as the user: the folder must be traversable.
    folder.chmod(0o755)
    popen: subprocess.Popen[bytes] | None = None
    try:
        _, host_key = _keygen(folder / "host_ed25519", "rw-test-host")
        private_key, client_public = _keygen(folder / "client_ed25519", "rw-test-client")
        _, wrong_host_key = _keygen(folder / "other_ed25519", "rw-test-other-host")
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
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "MaxStartups 100:30:200",
        ]
        if _sshd_version() >= (9, 8):
            # Failed logins on purpose must not get 127.0.0.1 penalised.
            lines.append("PerSourcePenalties no")
        config = folder / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        log = folder / "sshd.log"
        checked = _run([SSHD, "-t", "-f", str(config)])
        if checked.returncode != 0:
            raise SshServerFailed(f"sshd refused its config: {checked.stderr.strip()}")
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(port):
            if popen.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise SshServerFailed(f"sshd exited with {popen.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise SshServerFailed(
                    f"sshd did not answer on port {port} within {START_TIMEOUT:g}s"
                )
            time.sleep(0.05)
        yield SshServer(
            host="127.0.0.1",
            port=port,
            username=USERNAME,
            password=PASSWORD,
            private_key=private_key,
            host_key=host_key,
            wrong_host_key=wrong_host_key,
            home=home,
            log=log,
        )
    finally:
        if popen is not None and popen.poll() is None:
            # Its own session: the listener and any connection children go together.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def serve_or_need() -> Iterator[SshServer]:
    """The body of the session fixture ``ssh_server`` (in tests/conftest.py): a server
    for the whole test process, or ``need_service`` when none can be started."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(ssh_server_process())
        except SshServerFailed as exc:
            need_service(f"an OpenSSH server could not be started: {exc}")
        yield server
