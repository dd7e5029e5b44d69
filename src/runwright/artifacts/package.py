"""Job packages: deterministic zips built from a folder, validated and safely extracted.

Same files give the same bytes and so the same sha256: entries are sorted, carry a
fixed timestamp and normalised permissions, and caches (``__pycache__``, ``.git``,
virtual environments) are left out.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from runwright.errors import InvalidRequest
from runwright.model.manifest import (
    MANIFEST_NAME,
    STEPS_NAME,
    Manifest,
    environment_of_config_file,
    parse_manifest,
)
from runwright.model.references import has_reference
from runwright.model.steps import parse_definition

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        "__pycache__",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        ".runwright",
        ".idea",
        ".vscode",
    }
)
SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_files: int = 10_000
    max_package_bytes: int = 100 * 1024 * 1024  # the zip itself
    max_unpacked_bytes: int = 500 * 1024 * 1024
    max_ratio: float = 200.0  # uncompressed / compressed, per entry and in total


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltPackage:
    data: bytes
    sha256: str
    manifest: Manifest
    files: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


def collect_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files to package, sorted."""
    if not folder.is_dir():
        raise InvalidRequest(f"{folder} is not a folder.")
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if name.endswith(SKIPPED_SUFFIXES) or name == ".DS_Store":
                continue
            if path.is_symlink():
                raise InvalidRequest(
                    f"{relative} is a symbolic link; packages contain regular files only. "
                    "Replace the link with the file or leave it out."
                )
            found.append(relative)
        for name in dirs:
            if (Path(root) / name).is_symlink():
                relative = (Path(root) / name).relative_to(folder).as_posix()
                raise InvalidRequest(f"{relative} is a symbolic link to a folder; remove it.")
    return sorted(found)


def build_package(folder: Path, *, limits: Limits = DEFAULT_LIMITS) -> BuiltPackage:
    """Zip a folder deterministically; it must hold a ``runwright.toml``."""
    files = collect_files(folder)
    if MANIFEST_NAME not in files and STEPS_NAME not in files:
        raise InvalidRequest(
            f'{folder} has no {MANIFEST_NAME}. Create one with at least: entrypoint = "main.py" '
            f"(or a {STEPS_NAME} for a multi-step job)."
        )
    if len(files) > limits.max_files:
        raise InvalidRequest(f"{folder} has {len(files)} files; the limit is {limits.max_files}.")
    entries = []
    for relative in files:
        source = folder / relative
        executable = bool(source.stat().st_mode & stat.S_IXUSR)
        entries.append((relative, source.read_bytes(), executable))
    return build_from_files(entries, limits=limits)


def build_from_files(
    entries: list[tuple[str, bytes, bool]], *, limits: Limits = DEFAULT_LIMITS
) -> BuiltPackage:
    """Zip ``(path, content, executable)`` entries deterministically."""
    entries = sorted(entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for relative, content, executable in entries:
            info = zipfile.ZipInfo(relative, date_time=FIXED_TIME)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permissions above are honoured
            zf.writestr(info, content, compresslevel=6)
            if buffer.tell() > limits.max_package_bytes:
                raise InvalidRequest(
                    f"The package exceeds {limits.max_package_bytes // 2**20} MB; "
                    "leave data files out of the job code."
                )
    data = buffer.getvalue()
    return BuiltPackage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        manifest=inspect_package(data, limits=limits),
        files=tuple(name for name, _, _ in entries),
    )


def _check_entry(info: zipfile.ZipInfo, limits: Limits) -> str:
    name = info.filename
    path = PurePosixPath(name)
    mode = info.external_attr >> 16
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise InvalidRequest(f"The package contains an absolute path ({name!r}); refused.")
    if any(part == ".." for part in path.parts):
        raise InvalidRequest(f"The package contains a path leaving its folder ({name!r}); refused.")
    if stat.S_ISLNK(mode):
        raise InvalidRequest(f"The package contains a symbolic link ({name!r}); refused.")
    if "\x00" in name:
        raise InvalidRequest("The package contains a file name with a NUL byte; refused.")
    compressed = max(info.compress_size, 1)
    if info.file_size > 1024 * 1024 and info.file_size / compressed > limits.max_ratio:
        raise InvalidRequest(
            f"{name} expands {info.file_size / compressed:.0f} times (limit "
            f"{limits.max_ratio:.0f}); the package looks like a zip bomb and is refused."
        )
    return name


def _entries(zf: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    infos = [info for info in zf.infolist() if not info.is_dir()]
    if len(infos) > limits.max_files:
        raise InvalidRequest(
            f"The package has {len(infos)} files; the limit is {limits.max_files}."
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_unpacked_bytes:
        raise InvalidRequest(
            f"The package unpacks to {total // 2**20} MB; the limit is "
            f"{limits.max_unpacked_bytes // 2**20} MB."
        )
    compressed = sum(max(info.compress_size, 1) for info in infos)
    if total > 1024 * 1024 and total / max(compressed, 1) > limits.max_ratio:
        raise InvalidRequest(
            f"The package expands {total / compressed:.0f} times (limit "
            f"{limits.max_ratio:.0f}); it looks like a zip bomb and is refused."
        )
    for info in infos:
        _check_entry(info, limits)
    return infos


def _open_zip(data: bytes | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidRequest(f"The package is not a valid zip file: {exc}") from exc


def inspect_package(data: bytes | Path, *, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Validate a package without extracting it and return its manifest."""
    with _corrupt_is_invalid():
        return _inspect(data, limits)


@contextlib.contextmanager
def _corrupt_is_invalid() -> Iterator[None]:
    """A damaged archive (bad CRC, truncated data, lying headers) is the sender's problem."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise InvalidRequest(f"The package is damaged: {exc}. Build and upload it again.") from exc


def _inspect(data: bytes | Path, limits: Limits) -> Manifest:
    if isinstance(data, bytes) and len(data) > limits.max_package_bytes:
        raise InvalidRequest(
            f"The package is {len(data) // 2**20} MB; the limit is "
            f"{limits.max_package_bytes // 2**20} MB."
        )
    with _open_zip(data) as zf:
        infos = _entries(zf, limits)
        names = {info.filename for info in infos}
        if MANIFEST_NAME not in names and STEPS_NAME not in names:
            raise InvalidRequest(
                f"The package has no {MANIFEST_NAME} (or {STEPS_NAME}) at its top level; build "
                "it with `runwright package build DIR`."
            )
        steps = None
        if STEPS_NAME in names:
            steps = _steps_definition(zf.read(STEPS_NAME), names)
        text = (
            zf.read(MANIFEST_NAME).decode("utf-8", errors="replace")
            if MANIFEST_NAME in names
            else ""
        )
        environments = []
        for name in sorted(names):
            env = environment_of_config_file(name)
            if env is not None or name == "config.json":
                _check_json_object(zf.read(name), name)
            if env is not None:
                environments.append(env)
        manifest = parse_manifest(text, environments=tuple(environments), steps=steps)
        if manifest.is_steps:
            return manifest
        entry_file = manifest.entrypoint if not manifest.is_function else None
        if entry_file is not None and entry_file not in names:
            raise InvalidRequest(
                f"The entrypoint {entry_file} is not in the package; files: "
                f"{', '.join(sorted(names)[:20])}"
            )
        if manifest.is_function:
            module = manifest.entrypoint.split(":", 1)[0].replace(".", "/")
            if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
                raise InvalidRequest(f"The entrypoint module {module}.py is not in the package.")
    return manifest


def _steps_definition(raw: bytes, names: set[str]) -> dict[str, Any]:
    """Parse and validate job.yaml; python steps must name a module in the package."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{STEPS_NAME} is not valid YAML: {exc}") from exc
    definition = parse_definition(data, source=STEPS_NAME)
    for index, step in enumerate(definition.steps):
        function = step.with_.get("function") if step.uses == "python" else None
        if isinstance(function, str) and ":" in function and not has_reference(function):
            module = function.split(":", 1)[0].replace(".", "/")
            if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
                raise InvalidRequest(
                    f"{STEPS_NAME} is not valid: steps[{index}].with.function: module "
                    f"{module}.py is not in the package"
                )
    return definition.to_json()


def read_package_files(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS
) -> dict[str, tuple[bytes, bool]]:
    """The files of a stored package: path -> (content, executable)."""
    inspect_package(data, limits=limits)
    files: dict[str, tuple[bytes, bool]] = {}
    with _corrupt_is_invalid(), zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            executable = bool((info.external_attr >> 16) & stat.S_IXUSR)
            files[info.filename] = (zf.read(info), executable)
    return files


def _check_json_object(raw: bytes, name: str) -> None:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must contain a JSON object.")


def safe_extract(archive: Path, destination: Path, *, limits: Limits = DEFAULT_LIMITS) -> None:
    """Extract into ``destination`` and nowhere else, enforcing the limits while reading
    (the sizes in a zip's headers may lie)."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    written = 0
    with _corrupt_is_invalid(), _open_zip(archive) as zf:
        for info in _entries(zf, limits):
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):
                raise InvalidRequest(f"{info.filename} would be written outside the run folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                while chunk := src.read(1024 * 1024):
                    written += len(chunk)
                    if written > limits.max_unpacked_bytes:
                        raise InvalidRequest(
                            "The package unpacks to more than "
                            f"{limits.max_unpacked_bytes // 2**20} MB; refused."
                        )
                    dst.write(chunk)
            if (info.external_attr >> 16) & stat.S_IXUSR:
                target.chmod(0o755)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
