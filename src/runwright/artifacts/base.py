"""The artifact store interface, shared by every backend.

A store maps keys to immutable-until-overwritten byte objects. Keys are relative,
'/'-separated paths (``jobs/7/packages/<sha256>.zip``); every method validates the key
it is given with :func:`validate_key`, so that no backend ever sees ``..``, an absolute
path, an empty segment, a backslash or a NUL byte.

Errors are runwright's own: :class:`~runwright.errors.ObjectNotFound` for a missing
key, :class:`~runwright.errors.StoreUnavailable` when the store cannot be reached right
now, :class:`~runwright.errors.StoreError` for everything else. Nothing above
``artifacts/`` sees an ``OSError`` or a botocore exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from runwright.errors import StoreError

MAX_KEY_LENGTH = 1024
TEMP_SUFFIX = ".rwtmp"
"""Ending of the temporary files of an unfinished write; no key segment may end so."""

COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: float
    """Last modification, seconds since the epoch."""


def _show(key: str) -> str:
    return repr(key) if len(key) <= 200 else repr(key[:200]) + f"... ({len(key)} characters)"


def _check_path(key: str, *, what: str, allow_empty_last: bool) -> str:
    if not isinstance(key, str):
        raise StoreError(f"Invalid {what} {key!r}: it must be a string.")
    problem = ""
    if len(key) > MAX_KEY_LENGTH:
        problem = f"it is longer than {MAX_KEY_LENGTH} characters"
    elif "\x00" in key:
        problem = "it contains a NUL character"
    elif "\\" in key:
        problem = "it contains a backslash; use '/' to separate folders"
    elif key.startswith("/"):
        problem = "it starts with '/'; keys are relative paths"
    else:
        segments = key.split("/")
        if allow_empty_last:
            segments = segments[:-1] if segments[-1] == "" else segments
        for segment in segments:
            if segment == "":
                problem = "it is empty or has an empty segment ('//' or a trailing '/')"
            elif segment in {".", ".."}:
                problem = f"it has a {segment!r} segment"
            elif segment.endswith(TEMP_SUFFIX):
                problem = f"segments ending in {TEMP_SUFFIX!r} are reserved for temporary files"
            if problem:
                break
    if problem:
        raise StoreError(f"Invalid artifact {what} {_show(key)}: {problem}.")
    return key


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise :class:`StoreError`."""
    return _check_path(key, what="key", allow_empty_last=False)


def validate_prefix(prefix: str) -> str:
    """Like :func:`validate_key`, but ``""`` and a trailing '/' are allowed."""
    if prefix == "":
        return prefix
    return _check_path(prefix, what="prefix", allow_empty_last=True)


class ArtifactStore(Protocol):
    """Where job packages, run contexts, outputs and logs are kept.

    Writes replace the whole object at once: a reader sees the old or the new bytes,
    never a mix, and a failed write leaves the old object (or none) in place.
    """

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous object."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the content of the file ``path``, streamed (never read whole)."""
        ...

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        """Store everything ``stream`` yields until its end, streamed."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; for large ones prefer :meth:`open` or :meth:`download`."""
        ...

    def download(self, key: str, path: Path) -> None:
        """Write the object to ``path`` (created or replaced atomically), streamed."""
        ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A streaming, read-only binary file of the object."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (plain string prefix), in key order."""
        ...

    def size(self, key: str) -> int:
        """Size of the object in bytes."""
        ...

    def describe(self) -> str:
        """A URL of the store without any secret, for messages."""
        ...
