"""Encryption of secrets at rest (Fernet): sensitive variables, later credentials.

The key comes from ``RUNWRIGHT_SECRET_KEY`` (a Fernet key, or any passphrase, which
is stretched to one) or, when that is unset, from ``$RUNWRIGHT_HOME/secret.key``,
generated on first use with mode 0600. A fleet must share one key: set
``RUNWRIGHT_SECRET_KEY`` on every server and worker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from runwright.config import Settings
from runwright.errors import ConfigError

KEY_FILE = "secret.key"


def _as_fernet_key(secret: str) -> bytes:
    raw = secret.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    # A passphrase: stretched so that any length gives a valid key.
    derived = hashlib.pbkdf2_hmac("sha256", raw, b"runwright-secret-key", 200_000)
    return base64.urlsafe_b64encode(derived)


def _key_file(home: Path) -> bytes:
    path = home / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secret_key:
            return cls([_as_fernet_key(settings.secret_key)])
        try:
            return cls([_key_file(settings.home)])
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Could not read or create the secret key file {settings.home / KEY_FILE}: "
                f"{exc}. Set RUNWRIGHT_SECRET_KEY instead."
            ) from exc

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise ConfigError(
                "A stored secret cannot be decrypted with this secret key: the key differs "
                "from the one that encrypted it. Set RUNWRIGHT_SECRET_KEY (or "
                f"$RUNWRIGHT_HOME/{KEY_FILE}) to the key the server uses."
            ) from exc
