"""Editing a job's code in the browser: read the files of a version, save edited files
as a new version, and compare two versions.

A save builds a new package from the current version's files with the edits applied
and deploys it through ``JobService.deploy``: the same validation as an upload, and
nothing stored when it is refused (the package is checked before anything is written).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from runwright.artifacts.base import ArtifactStore
from runwright.artifacts.package import SKIPPED_DIRS, build_from_files, read_package_files
from runwright.config import Settings
from runwright.errors import Conflict, InvalidRequest, NotFound
from runwright.model.manifest import MANIFEST_NAME, script_manifest
from runwright.model.runs import Job, Package
from runwright.services.jobs import CODE_KINDS, Deployed, JobService
from runwright.services.scripts import ScriptService

MAX_TEXT_BYTES = 2 * 1024 * 1024  # a file the editor shows and saves
MAX_CHANGED_FILES = 200
MAX_DIFF_LINES = 4000  # per file: a diff longer than that is cut, with a note


@dataclass(frozen=True, slots=True)
class CodeFile:
    path: str
    size: int
    executable: bool
    text: str | None  # None: binary or too large to edit here


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # hunk, add, del, ctx, note
    text: str


@dataclass(frozen=True, slots=True)
class FileDiff:
    path: str
    change: str  # added, removed, changed
    lines: list[DiffLine] = field(default_factory=list)
    added: int = 0
    removed: int = 0


def as_text(data: bytes) -> str | None:
    if len(data) > MAX_TEXT_BYTES or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_path(path: str) -> str:
    """A package path the editor may write: relative, inside the package, no caches."""
    problem = None
    pure = PurePosixPath(path)
    if not path or path != path.strip():
        problem = "is empty or starts or ends with spaces"
    elif path.startswith("/") or "\\" in path or (len(path) > 1 and path[1] == ":"):
        problem = "is absolute or uses backslashes; use a relative path like lib/util.py"
    elif any(part in ("", ".", "..") for part in path.split("/")):
        problem = "contains an empty, '.' or '..' part"
    elif any(part in SKIPPED_DIRS for part in pure.parts[:-1]):
        problem = "is inside a folder that packages leave out (caches, .git, virtualenvs)"
    elif "\x00" in path or len(path) > 500:
        problem = "contains a NUL character or is longer than 500 characters"
    if problem:
        raise InvalidRequest(f"File path {path!r} {problem}.")
    return path


class CodeEditor:
    def __init__(self, *, jobs: JobService, store: ArtifactStore, settings: Settings) -> None:
        self._jobs = jobs
        self._store = store
        self._scripts = ScriptService(jobs=jobs, settings=settings)

    # -- read --------------------------------------------------------------------------
    def package(self, job: Job, version: int | None = None) -> Package:
        if job.kind not in CODE_KINDS:
            raise Conflict(f"Job {job.name!r} is a {job.kind} job; it has no code to edit.")
        if version is None:
            current = self._jobs.current_package(job)
            if current is None:
                raise NotFound(
                    f"Job {job.name!r} has no code yet; upload a script or deploy a package first."
                )
            return current
        for package in self._jobs.packages(job.name):
            if package.version == version:
                return package
        raise NotFound(f"Job {job.name!r} has no version v{version}; see its version history.")

    def files(self, job: Job, version: int | None = None) -> list[CodeFile]:
        raw = self._raw_files(self.package(job, version))
        return [
            CodeFile(path=path, size=len(data), executable=executable, text=as_text(data))
            for path, (data, executable) in sorted(raw.items())
        ]

    def _raw_files(self, package: Package) -> dict[str, tuple[bytes, bool]]:
        return read_package_files(self._store.get(package.storage_key))

    # -- save --------------------------------------------------------------------------
    def save(
        self,
        name: str,
        changes: Mapping[str, str],
        *,
        delete: Sequence[str] = (),
        created_by: str | None = None,
    ) -> Deployed:
        """A new version of ``name`` from its current files with ``changes`` (path ->
        text, replaced or added) and ``delete`` applied. Refused edits store nothing."""
        job = self._jobs.get(name)
        if job.archived:
            raise Conflict(f"Job {name!r} is archived; its code cannot change.")
        if not changes and not delete:
            raise InvalidRequest("Nothing to save: send at least one file in `files`.")
        if len(changes) + len(delete) > MAX_CHANGED_FILES:
            raise InvalidRequest(f"Save at most {MAX_CHANGED_FILES} files at once.")
        files = self._raw_files(self.package(job))
        for path in delete:
            if check_path(path) not in files:
                raise InvalidRequest(
                    f"Cannot delete {path!r}: the current version has no such file."
                )
            del files[path]
        for path, text in changes.items():
            data = text.encode("utf-8")
            if len(data) > MAX_TEXT_BYTES:
                raise InvalidRequest(
                    f"{path} is {len(data):,} bytes; the editor saves files up to "
                    f"{MAX_TEXT_BYTES:,} bytes. Deploy larger files as a package."
                )
            if path.endswith(".py"):
                _check_syntax(path, text)
            executable = files[path][1] if path in files else False
            files[check_path(path)] = (data, executable)
        if job.kind == "script":
            self._script_manifest(job, files, changes, delete)
        built = build_from_files([(path, data, ex) for path, (data, ex) in files.items()])
        return self._jobs.deploy(name, built.data, created_by=created_by)

    def _script_manifest(
        self,
        job: Job,
        files: dict[str, tuple[bytes, bool]],
        changes: Mapping[str, str],
        delete: Sequence[str],
    ) -> None:
        """A script job is one .py file; its runwright.toml follows from the script's
        ``# /// script`` block, so it is rebuilt rather than edited."""
        scripts = [path for path in files if path.endswith(".py")]
        if MANIFEST_NAME in changes or MANIFEST_NAME in delete:
            raise InvalidRequest(
                f"Job {job.name!r} is a script: its {MANIFEST_NAME} is made from the script's "
                "`# /// script` block. Edit that block instead."
            )
        if len(scripts) != 1 or len(files) != 2:
            raise InvalidRequest(
                f"Job {job.name!r} is a script job: it holds exactly one .py file. Deploy a "
                "package (runwright deploy DIR) for more files."
            )
        script = scripts[0]
        data = files[script][0]
        self._scripts.validate(script, data)
        manifest = script_manifest(script, data.decode("utf-8"))
        files[MANIFEST_NAME] = (manifest.encode("utf-8"), False)

    # -- compare -----------------------------------------------------------------------
    def diff(self, job: Job, old: int, new: int) -> list[FileDiff]:
        """What changed from version ``old`` to version ``new``, file by file."""
        before = self._raw_files(self.package(job, old))
        after = self._raw_files(self.package(job, new))
        out: list[FileDiff] = []
        for path in sorted(set(before) | set(after)):
            a = before.get(path, (b"", False))[0]
            b = after.get(path, (b"", False))[0]
            if path in before and path in after and a == b:
                continue
            change = (
                "added" if path not in before else "removed" if path not in after else "changed"
            )
            out.append(_file_diff(path, change, a, b, old, new))
        return out


def _check_syntax(path: str, text: str) -> None:
    try:
        compile(text, path, "exec")
    except SyntaxError as exc:
        raise InvalidRequest(
            f"{path} has a syntax error on line {exc.lineno}: {exc.msg}. Fix it and save again."
        ) from exc
    except ValueError as exc:  # NUL characters
        raise InvalidRequest(f"{path} cannot be compiled: {exc}.") from exc


def _file_diff(path: str, change: str, a: bytes, b: bytes, old: int, new: int) -> FileDiff:
    text_a, text_b = as_text(a), as_text(b)
    if text_a is None or text_b is None:
        note = DiffLine("note", "Binary or large file: not shown.")
        return FileDiff(path=path, change=change, lines=[note])
    lines: list[DiffLine] = []
    added = removed = 0
    diff = difflib.unified_diff(
        text_a.splitlines(),
        text_b.splitlines(),
        fromfile=f"v{old}/{path}",
        tofile=f"v{new}/{path}",
        lineterm="",
        n=3,
    )
    for index, line in enumerate(diff):
        if index < 2:  # the ---/+++ header: the page names the versions itself
            continue
        if len(lines) >= MAX_DIFF_LINES:
            lines.append(DiffLine("note", f"Diff cut after {MAX_DIFF_LINES} lines."))
            break
        if line.startswith("@@"):
            lines.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            added += 1
            lines.append(DiffLine("add", line[1:]))
        elif line.startswith("-"):
            removed += 1
            lines.append(DiffLine("del", line[1:]))
        else:
            lines.append(DiffLine("ctx", line[1:]))
    return FileDiff(path=path, change=change, lines=lines, added=added, removed=removed)
