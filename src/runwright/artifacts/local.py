"""Artifacts as files in a local (or mounted) folder.

Every write goes to a temporary file next to its target, is flushed to disk and then
renamed over the target (``os.replace``), so that readers and crashes never see half an
object. Temporary files end in ``.rwtmp`` and are never listed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from runwright.artifacts.base import (
    COPY_CHUNK,
    TEMP_SUFFIX,
    ArtifactStore,
    ObjectInfo,
    validate_key,
    validate_prefix,
)
from runwright.errors import ObjectNotFound, StoreError

_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; best effort (not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(target: Path, fill: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``target`` with what ``fill`` writes, all or nothing.

    OSError propagates; the temporary file is removed on any failure.
    """
    temp = _temp_path(target)
    # os.open with 0o666 lets the umask decide the permissions, like a plain open().
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(target.parent)


def _copy_stream(source: BinaryIO) -> Callable[[BinaryIO], None]:
    def fill(handle: BinaryIO) -> None:
        shutil.copyfileobj(source, handle, COPY_CHUNK)

    return fill


def open_input(path: Path, key: str) -> BinaryIO:
    """The file to store as ``key``, open for reading; StoreError if it cannot be read."""
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise StoreError(
            f"Could not read {path} to store it as artifact {key!r}: {exc.strerror or exc}."
        ) from exc


class LocalStore(ArtifactStore):
    """Objects are files under ``root``; the key is the relative path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def describe(self) -> str:
        return self.root.as_uri()

    # -- paths and errors ---------------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        target = self.root.joinpath(*key.split("/"))
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
            raise StoreError(
                f"Artifact key {key!r} cannot be resolved under {self.root}: {exc}"
            ) from exc
        if not resolved.is_relative_to(self.root):
            raise StoreError(
                f"Artifact key {key!r} leads to {resolved}, outside the store folder "
                f"{self.root} (through a symbolic link); refused."
            )
        return target

    @contextlib.contextmanager
    def _translate(self, action: str, key: str, path: Path, *, reading: bool) -> Iterator[None]:
        try:
            yield
        except _MISSING as exc:
            if reading:
                raise ObjectNotFound(
                    f"Artifact {key!r} not found in {self.describe()} (no file {path})."
                ) from exc
            raise self._error(action, key, path, exc) from exc
        except OSError as exc:
            raise self._error(action, key, path, exc) from exc

    def _error(self, action: str, key: str, path: Path, exc: OSError) -> StoreError:
        if isinstance(exc, PermissionError):
            reason = "permission denied; check the owner and mode of the store folder"
        elif exc.errno in {errno.ENOSPC, errno.EDQUOT}:
            reason = "the disk is full"
        elif exc.errno == errno.EROFS:
            reason = "the file system is read-only"
        else:
            reason = exc.strerror or str(exc)
        where = f"{path}" if exc.filename in (None, str(path)) else f"{path} ({exc.filename})"
        return StoreError(f"Could not {action} artifact {key!r} at {where}: {reason}.")

    # -- writing ------------------------------------------------------------------------

    def _write(self, key: str, fill: Callable[[BinaryIO], None]) -> None:
        path = self._path(key)
        with self._translate("write", key, path, reading=False):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, fill)

    def put(self, key: str, data: bytes) -> None:
        def fill(handle: BinaryIO) -> None:
            handle.write(data)

        self._write(key, fill)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        with (
            open_input(path, key) as source,
            self._translate("write", key, target, reading=False),
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, _copy_stream(source))

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        self._write(key, _copy_stream(stream))

    # -- reading ------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path = self._path(key)
        with self._translate("read", key, path, reading=True):
            return path.read_bytes()

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        with self._translate("read", key, path, reading=True):
            handle = path.open("rb")
        with handle:
            yield handle

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._open(key)

    def download(self, key: str, path: Path) -> None:
        source_path = self._path(key)
        destination = Path(path)
        with self._translate("read", key, source_path, reading=True):
            source = source_path.open("rb")
        with source:
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(destination, _copy_stream(source))
            except OSError as exc:
                raise StoreError(
                    f"Could not download artifact {key!r} to {destination}: {exc.strerror or exc}."
                ) from exc

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._translate("inspect", key, path, reading=False):
            return path.is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        with self._translate("inspect", key, path, reading=True):
            info = path.stat()
            if not path.is_file():
                raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
            return info.st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._translate("delete", key, path, reading=False):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            except (IsADirectoryError, PermissionError):
                # unlink() of a folder fails with EISDIR on Linux, EPERM on macOS.
                if path.is_dir():
                    return  # a folder is not an object: nothing to delete
                raise

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walks the folder at once (sorted results need all of them anyway)."""
        validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        with self._translate("list", prefix, start, reading=False):
            if not start.resolve().is_relative_to(self.root):
                return iter(())
            found = sorted(self._walk(start, prefix), key=lambda info: info.key)
        return iter(found)

    def _walk(self, start: Path, prefix: str) -> Iterator[ObjectInfo]:
        def fail(exc: OSError) -> None:
            if not isinstance(exc, _MISSING):  # a folder removed while walking is fine
                raise exc

        for folder, dirs, files in os.walk(start, onerror=fail):
            dirs.sort()
            base = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                if name.endswith(TEMP_SUFFIX):
                    continue
                key = name if base == "." else f"{base}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    validate_key(key)
                    info = os.stat(os.path.join(folder, name))
                except (StoreError, FileNotFoundError):
                    continue  # not addressable as a key, or deleted meanwhile
                yield ObjectInfo(key=key, size=info.st_size, modified=info.st_mtime)
