"""``uses: sftp``: upload files of this run to a host, or download files (wildcards)
from it into the run's output folder. The host key is verified when one is given."""

from __future__ import annotations

import asyncio
import fnmatch
import posixpath
from typing import Any

import asyncssh

from runwright.artifacts.keys import output_key
from runwright.errors import StoreError
from runwright.model.context import FileMetadata
from runwright.model.steps import SftpInputs
from runwright.worker.steps.common import StepEnv, StepFailed, StepTimedOut
from runwright.worker.steps.files import check_filename

MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024


def run_sftp(inputs: SftpInputs, env: StepEnv) -> dict[str, Any]:
    where = f"{inputs.username}@{inputs.host}:{inputs.port}"
    timeout = env.bounded(inputs.timeout * 20)  # connecting is bounded by inputs.timeout
    try:
        return asyncio.run(asyncio.wait_for(_transfer(inputs, env), timeout))
    except TimeoutError as exc:
        raise StepTimedOut(f"SFTP to {where} did not finish within {timeout:g}s") from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        raise StepFailed(
            f"The host key of {inputs.host}:{inputs.port} does not match host_key: {exc.reason}. "
            "If the host was rebuilt, update host_key; otherwise someone may be in the middle.",
            "host_key",
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise StepFailed(
            f"{where} refused the login ({exc.reason}); check username, password or key.",
            "auth",
        ) from exc
    except asyncssh.SFTPError as exc:
        raise StepFailed(f"SFTP on {where} failed: {exc.reason}", "sftp") from exc
    except (OSError, asyncssh.Error) as exc:
        raise StepFailed(f"Could not connect to {where}: {exc}", "connection") from exc


def _options(inputs: SftpInputs, env: StepEnv) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": inputs.host,
        "port": inputs.port,
        "username": inputs.username,
        "connect_timeout": inputs.timeout,
        "agent_path": None,  # never the worker's agent or ~/.ssh keys
        "client_keys": [],
        "config": [],
    }
    if inputs.password:
        options["password"] = inputs.password
    if inputs.private_key:
        try:
            key = asyncssh.import_private_key(inputs.private_key, inputs.passphrase)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise StepFailed(f"private_key cannot be read: {exc}", "config") from exc
        options["client_keys"] = [key]
    if inputs.host_key:
        try:
            pinned = asyncssh.import_public_key(inputs.host_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise StepFailed(
                f"host_key is not a public key line like 'ssh-ed25519 AAAA...': {exc}", "config"
            ) from exc
        options["known_hosts"] = ([pinned], [], [])
    else:
        options["known_hosts"] = None
        env.warn(
            f"The host key of {inputs.host} is not verified; give host_key to pin it "
            "(ssh-keyscan prints it)."
        )
    return options


async def _transfer(inputs: SftpInputs, env: StepEnv) -> dict[str, Any]:
    patterns = [inputs.files] if isinstance(inputs.files, str) else list(inputs.files)
    async with (
        asyncssh.connect(**_options(inputs, env)) as connection,
        connection.start_sftp_client() as sftp,
    ):
        if inputs.action == "upload":
            return await _upload(sftp, patterns, inputs, env)
        return await _download(sftp, patterns, inputs, env)


async def _upload(
    sftp: asyncssh.SFTPClient, patterns: list[str], inputs: SftpInputs, env: StepEnv
) -> dict[str, Any]:
    chosen = [
        f
        for f in env.files
        if any(fnmatch.fnmatch(f.filename, p) or fnmatch.fnmatch(f.path, p) for p in patterns)
    ]
    if not chosen:
        known = ", ".join(f.filename for f in env.files) or "none yet"
        raise StepFailed(
            f"No file of this run matches {', '.join(patterns)}; its files: {known}.", "input"
        )
    sent = []
    for metadata in chosen:
        try:
            data = env.store.get(metadata.path)
        except StoreError as exc:
            raise StepFailed(f"Could not read {metadata.path}: {exc}", "store") from exc
        remote = posixpath.join(inputs.remote_dir, metadata.filename)
        async with sftp.open(remote, "wb") as handle:
            await handle.write(data)
        env.info(f"Uploaded {metadata.filename} ({len(data):,} bytes) to {remote}")
        sent.append({"filename": metadata.filename, "remote_path": remote, "size": len(data)})
    return {"files": sent, "count": len(sent)}


async def _download(
    sftp: asyncssh.SFTPClient, patterns: list[str], inputs: SftpInputs, env: StepEnv
) -> dict[str, Any]:
    fetched = []
    for pattern in patterns:
        remote_pattern = posixpath.join(inputs.remote_dir, pattern)
        try:
            matches = await sftp.glob(remote_pattern)
        except asyncssh.SFTPNoSuchFile:
            matches = []
        if not matches:
            raise StepFailed(f"No remote file matches {remote_pattern}.", "input")
        for remote in matches:
            remote_path = remote.decode() if isinstance(remote, bytes) else str(remote)
            name = posixpath.basename(remote_path)
            attributes = await sftp.stat(remote)
            if attributes.size is not None and attributes.size > MAX_DOWNLOAD_BYTES:
                raise StepFailed(
                    f"{remote_path} is {attributes.size:,} bytes; the limit is "
                    f"{MAX_DOWNLOAD_BYTES:,}.",
                    "input",
                )
            async with sftp.open(remote, "rb") as handle:
                raw = await handle.read()
            data = raw if isinstance(raw, bytes) else raw.encode()
            key = output_key(env.job_id, env.run_id, check_filename(name))
            try:
                env.store.put(key, data)
            except StoreError as exc:
                raise StepFailed(f"Could not store {name}: {exc}", "store") from exc
            env.record_file(
                FileMetadata(
                    path=key,
                    filename=name,
                    size=len(data),
                    mime_type=_mime(name),
                    step_id=env.step_id,
                )
            )
            env.info(f"Downloaded {remote_path} ({len(data):,} bytes)")
            fetched.append({"remote_path": remote_path, "path": key, "size": len(data)})
    return {"files": fetched, "count": len(fetched)}


def _mime(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"
