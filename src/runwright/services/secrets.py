"""Encryption of secrets at rest (Fernet): credentials, sensitive variables and webhook
signing secrets; and the rotation of the key that encrypts them.

The keys come from ``RUNWRIGHT_SECRET_KEY`` or, when that is unset, from
``$RUNWRIGHT_HOME/secret.key``, generated on first use with mode 0600. Either may hold
several keys, newest first: the first encrypts, every one decrypts (``MultiFernet``).
In the variable they are separated by commas (``NEW,OLD``); every key but the last must
be a Fernet key, so that a passphrase (stretched to a key) may still contain commas. In
the file they are one per line.

A fleet must share its keys: set ``RUNWRIGHT_SECRET_KEY`` on every server and worker.
A process using the key file notices when ``runwright secrets rotate-key`` replaces
it: it reads the file again before encrypting and when a value does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Engine

from runwright.config import Settings
from runwright.db.secrets import Rewritten, Sealed, rewrite_sealed
from runwright.errors import ConfigError, InvalidRequest

KEY_FILE = "secret.key"
LOCK_FILE = "secret.key.lock"
GENERATE_HINT = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


def is_fernet_key(text: str) -> bool:
    text = text.strip()
    if len(text) != 44:
        return False
    try:
        return len(base64.urlsafe_b64decode(text.encode())) == 32
    except (binascii.Error, ValueError):
        return False


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


def parse_keys(value: str) -> list[bytes]:
    """``RUNWRIGHT_SECRET_KEY``: ``KEY`` or ``NEW,OLD,...``. A part is split off only when
    it is a Fernet key, so a passphrase with commas stays one key (it can only be last)."""
    keys: list[bytes] = []
    rest = value.strip()
    while True:
        head, sep, tail = rest.partition(",")
        if sep and is_fernet_key(head):
            keys.append(head.strip().encode())
            rest = tail.strip()
            if rest:
                continue
            return keys
        keys.append(_as_fernet_key(rest))
        return keys


def _parse_key_file(path: Path, content: bytes) -> list[bytes]:
    lines = [line.strip() for line in content.decode("ascii", "replace").splitlines()]
    keys = [line for line in lines if line]
    bad = [n for n, line in enumerate(lines, 1) if line and not is_fernet_key(line)]
    if not keys or bad:
        where = f"line {bad[0]} is not a Fernet key" if bad else "it is empty"
        raise ConfigError(
            f"The secret key file {path} cannot be used: {where}. It holds one Fernet key "
            "per line, newest first; restore it from a backup or set RUNWRIGHT_SECRET_KEY."
        )
    return [key.encode() for key in keys]


def _key_file(home: Path) -> list[bytes]:
    path = home / KEY_FILE
    try:
        return _parse_key_file(path, path.read_bytes())
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return _parse_key_file(path, path.read_bytes())
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return [key]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically (mode 0600): a reader sees the old keys or the
    new ones, never a partial file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"".join(key + b"\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class SecretBox:
    """Encrypts with the first key, decrypts with any. Built from a key file, it reads
    the file again when it changed (before encrypting) and when a value does not
    decrypt, so a rotation reaches running processes without a restart."""

    def __init__(self, keys: list[bytes], *, key_file: Path | None = None) -> None:
        self._key_file = key_file
        self._stamp = _stamp(key_file) if key_file is not None else None
        self._lock = threading.Lock()
        self._fernet = self._build(keys)

    @staticmethod
    def _build(keys: list[bytes]) -> MultiFernet:
        if not keys:
            raise ConfigError("No secret key given: set RUNWRIGHT_SECRET_KEY.")
        try:
            return MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise ConfigError(
                f"A secret key is not a valid Fernet key ({exc}); generate one with {GENERATE_HINT}"
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secret_key:
            return cls(parse_keys(settings.secret_key))
        try:
            return cls(_key_file(settings.home), key_file=settings.home / KEY_FILE)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Could not read or create the secret key file {settings.home / KEY_FILE}: "
                f"{exc}. Set RUNWRIGHT_SECRET_KEY instead."
            ) from exc

    def _reload(self) -> bool:
        """Read the key file again if it changed; True when the keys were replaced."""
        if self._key_file is None:
            return False
        with self._lock:
            stamp = _stamp(self._key_file)
            if stamp is None or stamp == self._stamp:
                return False
            try:
                keys = _parse_key_file(self._key_file, self._key_file.read_bytes())
            except OSError:
                return False
            self._fernet = self._build(keys)
            self._stamp = stamp
            return True

    def encrypt(self, text: str) -> str:
        self._reload()
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._decrypt(token)
        except (InvalidToken, UnicodeError) as exc:
            if self._reload():
                with contextlib.suppress(InvalidToken, UnicodeError):
                    return self._decrypt(token)
            raise ConfigError(
                "A stored secret cannot be decrypted with this secret key: the key differs "
                "from the one that encrypted it. Set RUNWRIGHT_SECRET_KEY (or "
                f"$RUNWRIGHT_HOME/{KEY_FILE}) to the key the server uses."
            ) from exc

    def _decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")


# -- rotation ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rotation:
    rewritten: Rewritten
    key_file: Path | None  # the key file that now holds the new key (None: the variable)
    new_key: str | None  # the generated key, to show once (RUNWRIGHT_SECRET_KEY only)
    same_key: bool = False  # the "new" key already encrypted: older keys are now unneeded


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One rotation at a time on this home folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _opened(sealed: list[Sealed], keys: list[bytes]) -> list[bytes]:
    current = MultiFernet([Fernet(key) for key in keys])
    plain: list[bytes] = []
    for item in sealed:
        try:
            plain.append(current.decrypt(item.token.encode("ascii")))
        except (InvalidToken, UnicodeError) as exc:
            raise ConfigError(
                f"Cannot rotate the secret key: the {item.label} cannot be decrypted with the "
                "current key, so it would be lost. Nothing was changed. Make the key that "
                "encrypted it available (RUNWRIGHT_SECRET_KEY=CURRENT,OLDER or a line of "
                f"$RUNWRIGHT_HOME/{KEY_FILE}), or delete that value, then rotate again."
            ) from exc
    return plain


def _new_key(given: str | None) -> bytes:
    if given is None:
        return Fernet.generate_key()
    if not is_fernet_key(given):
        raise InvalidRequest(
            "The new key is not a Fernet key (44 characters of URL-safe base64). Generate one "
            f"with {GENERATE_HINT}"
        )
    return given.strip().encode()


def rotate_key(settings: Settings, engine: Engine, new_key: str | None = None) -> Rotation:
    """Re-encrypt every stored secret with a new key, in one transaction.

    With the key file, the order keeps every value readable by every process at every
    moment: (1) all values are read, locked and decrypted with the current keys, and
    the rotation stops there, changing nothing, if one does not decrypt; (2) the file
    becomes ``NEW`` + the current keys, so any process that reads it encrypts with
    ``NEW`` and still decrypts the old values; (3) the values are rewritten with
    ``NEW`` and committed; (4) the file becomes ``NEW`` + the previous first key, kept
    for decryption only: a process that encrypted with it just before reading the new
    file wrote a value only that key opens. The next rotation drops it (as does a
    rotation to the key that already encrypts). If (3) fails, the file keeps ``NEW``
    and the current keys, which open everything stored.

    With ``RUNWRIGHT_SECRET_KEY`` the values are re-encrypted with the new key (given, or
    generated and returned to be shown once); the operator then sets the variable to
    ``NEW,OLD`` on every process and restarts them. Rotating to the key that already
    comes first re-encrypts with it, after which the keys behind it can be dropped.
    """
    fresh = _new_key(new_key)
    if settings.secret_key:
        old = parse_keys(settings.secret_key)

        def with_new_key(sealed: list[Sealed]) -> list[str]:
            plain = _opened(sealed, old)
            return [Fernet(fresh).encrypt(p).decode("ascii") for p in plain]

        rewritten = rewrite_sealed(engine, with_new_key)
        shown = fresh.decode() if new_key is None else None
        return Rotation(rewritten, key_file=None, new_key=shown, same_key=old[0] == fresh)

    path = settings.home / KEY_FILE
    with _exclusive(settings.home / LOCK_FILE):
        try:
            current = _key_file(settings.home)
        except OSError as exc:
            raise ConfigError(f"Cannot read the secret key file {path}: {exc}.") from exc
        during = [fresh, *(key for key in current if key != fresh)]

        def through_file(sealed: list[Sealed]) -> list[str]:
            plain = _opened(sealed, current)
            write_key_file(path, during)
            return [Fernet(fresh).encrypt(p).decode("ascii") for p in plain]

        rewritten = rewrite_sealed(engine, through_file)
        same = current[0] == fresh
        write_key_file(path, [fresh] if same else [fresh, current[0]])
    return Rotation(rewritten, key_file=path, new_key=None, same_key=same)
