"""One command on one target over SSH (asyncssh): candidate credentials in order until
one is accepted, the host key checked before any credential is offered, the output
streamed line by line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from runwright.model.logs import Stream
from runwright.model.targets import (
    Candidates,
    ErrorType,
    TargetStatus,
    UnlockedCredential,
    summarize_output,
)

MAX_OUTPUT_CHARS = 1_000_000  # kept per target for the step's output (the log has it all)


@dataclass(kw_only=True)
class Attempted:
    """What happened on one target."""

    status: str = TargetStatus.FAILED
    credential: str | None = None
    credential_id: int | None = None
    tried: list[tuple[int, bool]] = field(default_factory=list)  # (credential id, accepted)
    started_at: float | None = field(default_factory=time.time)  # None: never started
    finished_at: float | None = None
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    error_type: str | None = None
    recorded_host_key: str | None = None
    value: Any = None  # what a python step returned for this target

    def fail(self, error_type: ErrorType, message: str) -> Attempted:
        self.status = TargetStatus.FAILED
        self.error_type = error_type.value
        self.error = message
        return self

    @property
    def summary(self) -> str:
        return summarize_output(self.stdout + (("\n" + self.stderr) if self.stderr else ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class SshSettings:
    connect_timeout: float
    connect_retries: int
    retry_delay: float = 1.0


Line = Callable[[Stream, str], None]
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


def _host_keys(candidates: Candidates) -> Any:
    """asyncssh's known_hosts: the pinned key, else the one recorded on first use,
    else None (this connection is the first use: any key, recorded afterwards)."""
    target = candidates.target
    line = target.host_key or target.known_host_key
    if not line:
        return None
    return ([asyncssh.import_public_key(line)], [], [])


def _options(
    candidates: Candidates, credential: UnlockedCredential, settings: SshSettings, known: Any
) -> dict[str, Any]:
    target = candidates.target
    options: dict[str, Any] = {
        "host": target.address,
        "port": target.port,
        "username": credential.info.username,
        "connect_timeout": settings.connect_timeout,
        "login_timeout": settings.connect_timeout,
        "known_hosts": known,
        "agent_path": None,  # never the worker's own agent, keys or ssh config
        "client_keys": [],
        "config": [],
        "password": None,
        # AES-GCM is one call into OpenSSL per packet, where asyncssh's first choice,
        # ChaCha20-Poly1305, costs Python work per packet; compression costs more
        # CPU than the short outputs of commands save.
        "encryption_algs": CIPHERS,
        "compression_algs": None,
    }
    secret = credential.secret
    if secret.private_key:
        options["client_keys"] = [
            asyncssh.import_private_key(secret.private_key, secret.passphrase)
        ]
    else:
        options["password"] = secret.password
    return options


async def run_command(
    candidates: Candidates,
    unlocked: dict[int, UnlockedCredential],
    command: str,
    *,
    settings: SshSettings,
    deadline: float | None,
    on_line: Line,
    on_refused: Callable[[str, str], None] = lambda name, why: None,
) -> Attempted:
    """Connect with the first credential the host accepts and run ``command``."""
    outcome = Attempted()
    target = candidates.target
    where = f"{target.address}:{target.port}"
    try:
        known = _host_keys(candidates)
    except (asyncssh.KeyImportError, ValueError) as exc:
        return outcome.fail(
            ErrorType.HOST_KEY, f"The stored host key of {where} is unreadable: {exc}"
        )
    for credential_info in candidates.credentials:
        credential = unlocked.get(credential_info.id)
        if credential is None:
            continue
        try:
            options = _options(candidates, credential, settings, known)
        except (asyncssh.KeyImportError, ValueError) as exc:
            outcome.tried.append((credential_info.id, False))
            outcome.fail(
                ErrorType.CREDENTIAL, f"credential {credential_info.name}: unreadable key ({exc})"
            )
            continue
        connection = await _connect(
            options, settings, deadline, outcome, where, credential_info.name
        )
        if connection is None:
            if outcome.error_type == ErrorType.AUTH:
                outcome.tried.append((credential_info.id, False))
                on_refused(credential_info.name, outcome.error or "refused")
                continue  # the next candidate may be the right one
            return outcome  # unreachable, timed out or an impostor: no credential helps
        outcome.tried.append((credential_info.id, True))
        outcome.credential = credential_info.name
        outcome.credential_id = credential_info.id
        async with connection:
            if known is None:
                key = connection.get_server_host_key()
                if key is not None:
                    outcome.recorded_host_key = key.export_public_key().decode().strip()
            await _execute(connection, command, deadline, outcome, on_line, where)
        return outcome
    if outcome.error_type is None:
        outcome.fail(ErrorType.CREDENTIAL, "no usable credential")
    elif outcome.error_type == ErrorType.AUTH:
        names = ", ".join(c.name for c in candidates.credentials)
        outcome.error = f"{where} refused every candidate credential ({names})"
    return outcome


async def _connect(
    options: dict[str, Any],
    settings: SshSettings,
    deadline: float | None,
    outcome: Attempted,
    where: str,
    credential: str,
) -> asyncssh.SSHClientConnection | None:
    attempts = settings.connect_retries + 1
    for attempt in range(1, attempts + 1):
        timeout = settings.connect_timeout
        if deadline is not None:
            timeout = min(timeout, max(0.001, deadline - time.monotonic()))
        try:
            return await asyncio.wait_for(asyncssh.connect(**options), timeout)
        except asyncssh.PermissionDenied as exc:
            outcome.fail(ErrorType.AUTH, f"{where} refused credential {credential}: {exc.reason}")
            return None
        except asyncssh.HostKeyNotVerifiable as exc:
            outcome.fail(
                ErrorType.HOST_KEY,
                f"The host key of {where} differs from the pinned or recorded one ({exc.reason}). "
                "If the host was rebuilt: `runwright target forget-host-key`; otherwise someone "
                "may be in the middle.",
            )
            return None
        except TimeoutError:
            outcome.fail(ErrorType.TIMEOUT, f"{where} did not answer within {timeout:g}s")
        except (OSError, asyncssh.Error) as exc:
            outcome.fail(ErrorType.CONNECTION, f"Could not connect to {where}: {exc}")
        if attempt < attempts:
            if deadline is not None and time.monotonic() + settings.retry_delay >= deadline:
                break
            await asyncio.sleep(settings.retry_delay * attempt)
    return None


async def _execute(
    connection: asyncssh.SSHClientConnection,
    command: str,
    deadline: float | None,
    outcome: Attempted,
    on_line: Line,
    where: str,
) -> None:
    timeout = None if deadline is None else max(0.001, deadline - time.monotonic())
    try:
        process = await connection.create_process(command)
    except (OSError, asyncssh.Error) as exc:
        outcome.fail(ErrorType.CONNECTION, f"{where} could not start the command: {exc}")
        return

    async def pump(reader: Any, stream: Stream) -> None:
        kept: list[str] = []
        size = 0
        async for raw in reader:
            if not raw:
                continue  # end of the stream, not an empty line (that is "\n")
            text = str(raw).rstrip("\r\n")
            on_line(stream, text)
            if size < MAX_OUTPUT_CHARS:
                kept.append(text)
                size += len(text) + 1
        joined = "\n".join(kept)
        if stream is Stream.STDOUT:
            outcome.stdout = joined
        else:
            outcome.stderr = joined

    try:
        await asyncio.wait_for(
            asyncio.gather(
                pump(process.stdout, Stream.STDOUT),
                pump(process.stderr, Stream.STDERR),
                process.wait(),
            ),
            timeout,
        )
    except asyncio.CancelledError:
        # Closing the channel does not stop a command without a terminal: signal it.
        with contextlib.suppress(OSError, asyncssh.Error):
            process.send_signal("TERM")
        process.close()
        raise
    except TimeoutError:
        with contextlib.suppress(OSError, asyncssh.Error):
            process.send_signal("TERM")
        process.kill()
        outcome.fail(ErrorType.TIMEOUT, f"the command on {where} did not finish in time")
        return
    except (OSError, asyncssh.Error) as exc:
        outcome.fail(ErrorType.CONNECTION, f"the connection to {where} broke: {exc}")
        return
    status = process.exit_status
    outcome.exit_status = status
    if status == 0:
        outcome.status = TargetStatus.SUCCEEDED
        outcome.error = outcome.error_type = None
    else:
        signal = process.exit_signal
        why = f"signal {signal[0]}" if signal else f"exit status {status}"
        outcome.fail(ErrorType.COMMAND, f"the command ended with {why}")
