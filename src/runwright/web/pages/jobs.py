"""Jobs: the list, and a job's page with its tabs (overview, code, versions, runs,
schedules, webhooks, parameters) and the run form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from runwright.api.auth import PagePrincipalDep
from runwright.db.runs import RunFilter
from runwright.errors import NotFound, RunwrightError
from runwright.model.auth import Principal
from runwright.model.context import mask_values
from runwright.model.manifest import merge_config, secret_values
from runwright.model.params import ParameterSpec, parse_specs
from runwright.model.runs import Job, Package
from runwright.services.code_editor import CodeEditor, CodeFile
from runwright.services.runtime import Runtime
from runwright.web.pages.common import PageError, runtime_of
from runwright.web.templating import render

router = APIRouter(include_in_schema=False)

TABS = (
    "overview",
    "code",
    "versions",
    "runs",
    "schedules",
    "webhooks",
    "parameters",
    "environments",
)
MODES = {
    ".py": "python",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".json": "application/json",
    ".ini": "properties",
    ".cfg": "properties",
    ".properties": "properties",
    ".env": "properties",
    ".sh": "shell",
    ".sql": "sql",
}


def mode_of(path: str) -> str:
    for suffix, mode in MODES.items():
        if path.endswith(suffix):
            return mode
    return "text/plain"


def editor_of(runtime: Runtime) -> CodeEditor:
    return CodeEditor(jobs=runtime.jobs, store=runtime.store, settings=runtime.settings)


def load_job(runtime: Runtime, principal: Principal, name: str) -> Job:
    try:
        return runtime.jobs.get(name)
    except NotFound as exc:
        raise PageError(
            principal,
            f"There is no job named {name!r}. It may have another name; pick it from the list "
            "of jobs.",
            back_url="/jobs",
            back_label="the jobs",
        ) from exc


def next_fires(runtime: Runtime) -> dict[int, float]:
    """The next fire time of each job's enabled schedules."""
    soonest: dict[int, float] = {}
    for schedule in runtime.schedules.list():
        if schedule.enabled and schedule.next_fire_at is not None:
            current = soonest.get(schedule.job_id)
            if current is None or schedule.next_fire_at < current:
                soonest[schedule.job_id] = schedule.next_fire_at
    return soonest


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    principal: PagePrincipalDep,
    kind: Annotated[str, Query(max_length=20)] = "",
    archived: bool = False,
) -> HTMLResponse:
    runtime = runtime_of(request)
    jobs = runtime.jobs.list(kinds=(kind,) if kind else (), archived=archived)
    last = runtime.jobs.last_statuses(jobs)
    versions = {job.id: _version(runtime, job) for job in jobs}
    return render(
        request,
        principal,
        "jobs.html",
        {
            "jobs": jobs,
            "last": last,
            "versions": versions,
            "next_fire": next_fires(runtime),
            "kind": kind,
            "archived": archived,
        },
        section="jobs",
    )


def _version(runtime: Runtime, job: Job) -> int | None:
    package = runtime.jobs.current_package(job)
    return package.version if package else None


def run_form(job: Job, package: Package | None) -> dict[str, Any]:
    """What the run form shows: the job's parameters and its environments."""
    try:
        specs: list[ParameterSpec] = parse_specs(job.parameters)
    except RunwrightError:
        specs = []
    environments = list(package.manifest.get("environments") or []) if package else []
    return {"specs": specs, "environments": environments}


@router.get("/jobs/{name}", response_class=HTMLResponse)
def job_page(
    request: Request,
    name: str,
    principal: PagePrincipalDep,
    tab: Annotated[str, Query(max_length=20)] = "overview",
    file: Annotated[str, Query(max_length=500)] = "",
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    runtime = runtime_of(request)
    job = load_job(runtime, principal, name)
    tab = tab if tab in TABS else "overview"
    package = runtime.jobs.current_package(job) if job.kind != "task" else None
    context: dict[str, Any] = {
        "job": job,
        "tab": tab,
        "tabs": TABS,
        "package": package,
        "last": runtime.jobs.last_statuses([job]).get(job.id),
        **run_form(job, package),
    }
    if tab == "overview":
        context["recent"] = runtime.runs.list(RunFilter(jobs=[job.name], limit=10))
        context["schedules"] = runtime.schedules.list(job.name)
    elif tab == "code":
        context.update(_code_tab(runtime, job, package, file))
    elif tab == "versions":
        context.update(_versions_tab(runtime, principal, job, a, b))
    elif tab == "runs":
        context["recent"] = runtime.runs.list(RunFilter(jobs=[job.name], limit=100))
    elif tab == "schedules":
        schedules = runtime.schedules.list(job.name)
        context["schedules"] = schedules
        context["upcoming"] = {s.id: runtime.schedules.upcoming(s.id, 5) for s in schedules}
    elif tab == "webhooks":
        context["webhooks"] = runtime.webhooks.list(job.name)
    elif tab == "environments":
        context["environments"] = _environments(runtime, job, package)
    return render(request, principal, "job.html", context, section="jobs")


def _code_tab(runtime: Runtime, job: Job, package: Package | None, file: str) -> dict[str, Any]:
    if package is None:
        return {"files": [], "current_file": None}
    files = editor_of(runtime).files(job)
    by_path = {f.path: f for f in files}
    entry = str(package.manifest.get("entrypoint", "")).split(":", 1)[0]
    entry_file = entry if entry.endswith(".py") else entry.replace(".", "/") + ".py"
    current: CodeFile | None = by_path.get(file) or by_path.get(entry_file)
    if current is None or current.text is None:
        current = next((f for f in files if f.text is not None), None)
    return {
        "files": files,
        "current_file": current,
        "mode": mode_of(current.path) if current else "text/plain",
    }


def _versions_tab(
    runtime: Runtime, principal: Principal, job: Job, a: int | None, b: int | None
) -> dict[str, Any]:
    packages = runtime.jobs.packages(job.name) if job.kind != "task" else []
    context: dict[str, Any] = {"packages": packages, "diff": None, "a": a, "b": b}
    if len(packages) >= 2 and (a is None or b is None):
        b = b or packages[0].version
        a = a or next((p.version for p in packages if p.version < b), packages[-1].version)
        context.update(a=a, b=b)
    if a is not None and b is not None and a != b:
        try:
            context["diff"] = editor_of(runtime).diff(job, a, b)
        except RunwrightError as exc:
            context["diff_error"] = exc.message
    return context


@dataclass(frozen=True, slots=True)
class Environment:
    name: str  # "" for the base configuration
    files: list[str]
    config: Any  # merged, with secret values masked
    problem: str = ""


def _environments(runtime: Runtime, job: Job, package: Package | None) -> list[Environment]:
    """The base configuration and each environment's (config.json, then
    config.<env>.json over it), as a run in that environment receives it, secrets masked."""
    if package is None:
        return []
    texts = {f.path: f.text for f in editor_of(runtime).files(job) if f.text is not None}
    names = ["", *(package.manifest.get("environments") or [])]
    found: list[Environment] = []
    for name in names:
        files = ["config.json"] + ([f"config.{name}.json"] if name else [])
        present = [f for f in files if f in texts]
        merged: dict[str, Any] = {}
        problem = ""
        for path in present:
            try:
                loaded = json.loads(texts[path])
            except ValueError as exc:
                problem = f"{path} is not valid JSON: {exc}"
                break
            if isinstance(loaded, dict):
                merged = merge_config(merged, loaded)
        masked = mask_values(merged, secret_values(merged))
        found.append(Environment(name=name, files=present, config=masked, problem=problem))
    return found
