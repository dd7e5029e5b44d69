"""Scripts: upload, list with their last execution, run and archive."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from runwright.api.auth import PagePrincipalDep
from runwright.web.pages.common import runtime_of
from runwright.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/scripts", response_class=HTMLResponse)
def scripts_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    runtime = runtime_of(request)
    summaries = runtime.scripts.list()
    versions = {}
    for summary in summaries:
        package = runtime.jobs.current_package(summary.job)
        versions[summary.job.id] = package.version if package else None
    return render(
        request,
        principal,
        "scripts.html",
        {
            "scripts": summaries,
            "versions": versions,
            "max_bytes": runtime.settings.script_max_bytes,
            "name_pattern": runtime.settings.script_name_pattern,
        },
        section="scripts",
    )
