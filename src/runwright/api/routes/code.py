"""/api/jobs/{name}/files: a job's code, read and saved as a new version (the editor)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from runwright.api.auth import PrincipalDep
from runwright.api.deps import RuntimeDep
from runwright.api.routes.jobs import job_out, package_out
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import DeployedOut
from runwright.services.code_editor import CodeEditor
from runwright.services.runtime import Runtime

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
log = logging.getLogger(__name__)


class FilesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(
        default_factory=dict, description="Path -> new text; replaced or added."
    )
    delete: list[str] = Field(default_factory=list, description="Paths to leave out.")
    message: str = Field(default="", max_length=2000, description="What changed, and why.")


class FileOut(BaseModel):
    path: str
    size: int
    executable: bool
    text: str | None = Field(description="Null for a binary or very large file.")


class FilesOut(BaseModel):
    job: str
    version: int
    files: list[FileOut]


class SavedOut(DeployedOut):
    message: str


def editor(runtime: Runtime) -> CodeEditor:
    return CodeEditor(jobs=runtime.jobs, store=runtime.store, settings=runtime.settings)


@router.get("/{name}/files", responses=ERRORS)
def get_files(
    name: str,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    version: Annotated[int | None, Query(ge=1, description="Default: the current one.")] = None,
) -> FilesOut:
    """The files of a version of the job's code, with the text of the text files."""
    job = runtime.jobs.get(name)
    code = editor(runtime)
    package = code.package(job, version)
    return FilesOut(
        job=job.name,
        version=package.version,
        files=[
            FileOut(path=f.path, size=f.size, executable=f.executable, text=f.text)
            for f in code.files(job, package.version)
        ],
    )


@router.put("/{name}/files", status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def save_files(
    name: str, body: FilesIn, runtime: RuntimeDep, principal: PrincipalDep
) -> SavedOut:
    """Save edited files as a new version: the current version's files with `files`
    replaced or added and `delete` left out, validated like an upload and made current.
    `created` is false when the result equals an earlier version (which becomes current)."""
    deployed = await run_in_threadpool(
        editor(runtime).save, name, body.files, delete=body.delete, created_by=principal.name
    )
    # Packages have no column for a message yet: the server log keeps it.
    log.info(
        "job %s v%d saved by %s: %s",
        name,
        deployed.package.version,
        principal.name,
        body.message or "(no message)",
    )
    return SavedOut(
        job=job_out(runtime, deployed.job),
        package=package_out(deployed.package, deployed.job.current_package_id),
        created=deployed.created,
        uploaded=deployed.uploaded,
        message=body.message,
    )
