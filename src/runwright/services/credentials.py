"""Credentials: who logs in to targets, and with what.

The secret part (a password, or a private key and its passphrase) is checked when it is
given, then sealed: one Fernet token of a JSON object in ``credentials.secret``. Nothing
here returns it except ``unlock``, which workers call to log in; lists, shows and every
API answer carry ``model.targets.Credential``, which has no field for it.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Sequence
from typing import Any

import asyncssh

from runwright.db.targets import CredentialRepository
from runwright.errors import ConfigError, Conflict, NotFound
from runwright.model.targets import (
    Credential,
    SecretPart,
    UnlockedCredential,
    check_name,
    check_tags,
)
from runwright.services.secrets import SecretBox
from runwright.services.targets import InvalidField

MAX_PASSWORD = 4096
MAX_KEY_BYTES = 64 * 1024
MAX_USERNAME = 200
MAX_DESCRIPTION = 1000
PRIORITY_RANGE = (-1_000_000, 1_000_000)


def _name(name: str) -> str:
    try:
        return check_name(name, "Credential")
    except ValueError as exc:
        raise InvalidField("name", str(exc)) from exc


def _username(value: str) -> str:
    text = value.strip()
    if not text or len(text) > MAX_USERNAME or not text.isprintable():
        raise InvalidField(
            "username",
            "username must be 1 to 200 printable characters: the account to log in as.",
        )
    return text


def _priority(value: int) -> int:
    low, high = PRIORITY_RANGE
    if isinstance(value, bool) or not low <= value <= high:
        raise InvalidField(
            "priority",
            f"priority {value!r} is not valid: use a whole number from {low:,} to {high:,} "
            "(lower is tried first; the default is 100).",
        )
    return value


def _tags(value: Sequence[str]) -> list[str]:
    try:
        return list(check_tags(value))
    except ValueError as exc:
        raise InvalidField("tags", str(exc)) from exc


def _description(value: str) -> str:
    text = value.strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidField(
            "description", f"description is {len(text):,} characters; the limit is 1,000."
        )
    return text


def _check_key(private_key: str, passphrase: str | None) -> str | None:
    """Refuse a key runwright could not use; the passphrase to keep (None when the key
    is not encrypted). Messages never quote the key or the passphrase."""
    if len(private_key.encode()) > MAX_KEY_BYTES:
        raise InvalidField("private_key", "private_key is larger than 64 KiB: give one key.")
    try:
        asyncssh.import_private_key(private_key)
        return None  # not encrypted: a passphrase would be meaningless
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        first = str(exc).lower()
    if "passphrase must be specified" not in first:
        raise InvalidField(
            "private_key",
            "private_key is not a private key runwright can read: give the whole key file "
            "(from its -----BEGIN line to its -----END line), in OpenSSH, PKCS#1 or PKCS#8 "
            "format.",
        )
    if passphrase is None:
        raise InvalidField(
            "passphrase",
            "private_key is encrypted: give its passphrase too (field passphrase; "
            "--passphrase-stdin in the CLI).",
        )
    try:
        asyncssh.import_private_key(private_key, passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        if "bcrypt" in str(exc).lower():
            raise InvalidField(
                "private_key",
                "private_key is an OpenSSH key encrypted with bcrypt, which this server cannot "
                "open: install the bcrypt package where runwright runs (pip install bcrypt), "
                "or give the key in PEM format (`ssh-keygen -p -m PEM -f FILE` on a copy).",
            ) from exc
        raise InvalidField(
            "passphrase", "the passphrase does not decrypt private_key: check it."
        ) from exc
    return passphrase


def seal_input(secret: SecretPart) -> tuple[str, dict[str, str]]:
    """The credential's kind and the object to seal, after checking the secret part."""
    if secret.password is not None and secret.private_key is not None:
        raise InvalidField("password", "give a password or a private_key, not both.")
    if secret.password is not None:
        if secret.passphrase is not None:
            raise InvalidField(
                "passphrase", "a passphrase goes with a private_key, not a password."
            )
        if not secret.password or len(secret.password) > MAX_PASSWORD:
            raise InvalidField("password", "password must be 1 to 4,096 characters.")
        return "password", {"password": secret.password}
    if secret.private_key is not None:
        key = secret.private_key.replace("\r\n", "\n").strip() + "\n"
        passphrase = _check_key(key, secret.passphrase or None)
        sealed = {"private_key": key}
        if passphrase is not None:
            sealed["passphrase"] = passphrase
        return "key", sealed
    if secret.passphrase is not None:
        raise InvalidField("passphrase", "a passphrase goes with a private_key: give both.")
    raise InvalidField("password", "give a password or a private_key (with its passphrase).")


class CredentialService:
    def __init__(self, *, credentials: CredentialRepository, box: SecretBox) -> None:
        self._credentials = credentials
        self._box = box

    def _seal(self, secret: SecretPart) -> dict[str, str]:
        kind, part = seal_input(secret)
        return {"kind": kind, "secret": self._box.encrypt(json.dumps(part))}

    def create(
        self,
        name: str,
        *,
        username: str,
        secret: SecretPart,
        priority: int = 100,
        tags: Sequence[str] = (),
        description: str = "",
    ) -> Credential:
        name = _name(name)
        values: dict[str, Any] = {
            "username": _username(username),
            "priority": _priority(priority),
            "tags": _tags(tags),
            "description": _description(description),
        }
        values.update(self._seal(secret))
        created = self._credentials.create(name, values, time.time())
        if created is None:
            raise Conflict(
                f"Credential {name!r} already exists; change it with `runwright credential "
                f"update {name}` (PATCH /api/credentials/{name})."
            )
        return created

    def get(self, name: str) -> Credential:
        found = self._credentials.get(name)
        if found is None:
            raise _missing(name)
        return found

    def list(self) -> builtins.list[Credential]:
        return self._credentials.list()

    def update(
        self,
        name: str,
        *,
        username: str | None = None,
        secret: SecretPart | None = None,
        priority: int | None = None,
        tags: Sequence[str] | None = None,
        description: str | None = None,
    ) -> Credential:
        """Change the given fields; ``secret`` replaces the whole secret part (and the
        kind follows it)."""
        values: dict[str, Any] = {}
        if username is not None:
            values["username"] = _username(username)
        if priority is not None:
            values["priority"] = _priority(priority)
        if tags is not None:
            values["tags"] = _tags(tags)
        if description is not None:
            values["description"] = _description(description)
        if secret is not None:
            values.update(self._seal(secret))
        updated = self._credentials.update(name, values, time.time())
        if updated is None:
            raise _missing(name)
        return updated

    def delete(self, name: str) -> None:
        if not self._credentials.delete(name):
            raise _missing(name)

    # -- what workers ask ------------------------------------------------------------------
    def candidates(self) -> builtins.list[Credential]:
        """Every credential, without secrets: what ``model.targets.resolve`` chooses from."""
        return self._credentials.list()

    def unlock(self, ids: Sequence[int]) -> dict[int, UnlockedCredential]:
        """The secret parts of these credentials, decrypted, read in one query. Ids that
        no longer exist are left out. A secret that does not decrypt raises ConfigError."""
        unlocked: dict[int, UnlockedCredential] = {}
        for info, token in self._credentials.sealed(ids):
            try:
                part = json.loads(self._box.decrypt(token))
            except ConfigError as exc:
                raise ConfigError(
                    f"The secret of credential {info.name!r} cannot be decrypted with this "
                    "process's secret key: it was encrypted with another one. Give every "
                    "server and worker the same RUNWRIGHT_SECRET_KEY (or secret.key file), "
                    f"or set the secret again: `runwright credential update {info.name} "
                    "--password-stdin` (or --key-file)."
                ) from exc
            except ValueError as exc:
                raise ConfigError(
                    f"The stored secret of credential {info.name!r} is damaged; set it again "
                    f"with `runwright credential update {info.name} --password-stdin` (or "
                    "--key-file)."
                ) from exc
            if not isinstance(part, dict):
                raise ConfigError(
                    f"The stored secret of credential {info.name!r} is damaged; set it again "
                    f"with `runwright credential update {info.name}`."
                )
            secret = SecretPart(
                password=part.get("password"),
                private_key=part.get("private_key"),
                passphrase=part.get("passphrase"),
            )
            unlocked[info.id] = UnlockedCredential(info, secret)
        return unlocked

    def record_use(self, outcomes: Sequence[tuple[int, bool]]) -> None:
        """Count each (credential id, logged in?) and set the credentials' last use, in
        one transaction."""
        counts: dict[int, tuple[int, int]] = {}
        for credential_id, ok in outcomes:
            good, bad = counts.get(credential_id, (0, 0))
            counts[credential_id] = (good + 1, bad) if ok else (good, bad + 1)
        self._credentials.record_use(counts, time.time())


def _missing(name: str) -> NotFound:
    return NotFound(
        f"Credential {name!r} does not exist; list credentials with `runwright credential list`."
    )
