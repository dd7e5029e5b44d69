"""One-file Python scripts as jobs: validated uploads, listed with their last run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runwright.artifacts.package import build_from_files
from runwright.config import Settings
from runwright.errors import Conflict, InvalidRequest
from runwright.model.manifest import script_manifest
from runwright.model.runs import Job
from runwright.services.jobs import Deployed, JobService

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ScriptSummary:
    job: Job
    last_status: str | None
    last_outcome: str | None


def sanitize_filename(filename: str) -> str:
    """Keep the base name; replace runs of unusual characters by one '_'
    (``my report!.py`` -> ``my_report.py``)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem = base[:-3] if base.lower().endswith(".py") else base
    clean = _UNSAFE.sub("_", stem).strip("._-")
    return f"{clean}.py" if clean else ""


class ScriptService:
    def __init__(self, *, jobs: JobService, settings: Settings) -> None:
        self._jobs = jobs
        self._settings = settings

    def validate(self, filename: str, data: bytes) -> str:
        """The sanitised file name, or a 4xx naming what to fix."""
        if not filename.lower().endswith(".py"):
            raise InvalidRequest(
                f"{filename!r} is not a Python script: only .py files can be uploaded."
            )
        limit = self._settings.script_max_bytes
        if len(data) > limit:
            raise InvalidRequest(
                f"{filename!r} is {len(data):,} bytes; the limit is {limit:,} bytes "
                "(RUNWRIGHT_SCRIPT_MAX_BYTES)."
            )
        if not data.strip():
            raise InvalidRequest(f"{filename!r} is empty.")
        clean = sanitize_filename(filename)
        if clean in ("", ".py") or clean.startswith("."):
            raise InvalidRequest(f"{filename!r} does not make a usable file name.")
        pattern = self._settings.script_name_pattern
        if pattern and not re.search(pattern, clean):
            raise InvalidRequest(
                f"{clean!r} does not match the required name pattern {pattern!r} "
                "(RUNWRIGHT_SCRIPT_NAME_PATTERN); rename the file."
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{filename!r} is not UTF-8 text.") from exc
        try:
            compile(text, clean, "exec")
        except SyntaxError as exc:
            raise InvalidRequest(
                f"{clean} has a syntax error on line {exc.lineno}: {exc.msg}. "
                "Fix it and upload again."
            ) from exc
        script_manifest(clean, text)  # its inline metadata, checked now
        return clean

    def upload(
        self,
        filename: str,
        data: bytes,
        *,
        description: str = "",
        job_name: str | None = None,
        created_by: str | None = None,
    ) -> Deployed:
        """Store a script as a new version of its script job (created on first upload)."""
        clean = self.validate(filename, data)
        name = job_name or clean.removesuffix(".py").replace("_", "-").strip("-.").lower()
        # The description is the job's, not the code's: it stays out of the package so
        # that the same code is the same version.
        manifest = script_manifest(clean, data.decode("utf-8"))
        built = build_from_files(
            [("runwright.toml", manifest.encode(), False), (clean, data, False)]
        )
        existing = self._jobs.list(kinds=("script", "package", "task"))
        for job in existing:
            if job.name == name and job.kind != "script":
                raise Conflict(
                    f"A {job.kind} job named {name!r} exists; upload the script under another "
                    "file name or pass job_name."
                )
        return self._jobs.deploy(
            name,
            built.data,
            kind="script",
            description=description or None,
            created_by=created_by,
        )

    def list(self) -> list[ScriptSummary]:
        scripts = self._jobs.list(kinds=("script",))
        last = self._jobs.last_statuses(scripts)
        return [
            ScriptSummary(
                job=job,
                last_status=last.get(job.id, (None, None))[0],
                last_outcome=last.get(job.id, (None, None))[1],
            )
            for job in scripts
        ]
