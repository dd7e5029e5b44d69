"""Targets, credentials (operators read them, admins change them; never a secret),
variables and workers. Forms and buttons are rendered only to the roles api.access
lets through; static/forms.js sends them to the JSON API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from runwright.api.auth import PagePrincipalDep
from runwright.errors import InvalidRequest
from runwright.model.auth import Role
from runwright.model.targets import DRIVERS
from runwright.web.pages.common import require, runtime_of
from runwright.web.prefill import credential_values, target_values, variable_values
from runwright.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/targets", response_class=HTMLResponse)
def targets_page(
    request: Request,
    principal: PagePrincipalDep,
    tag: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    runtime = runtime_of(request)
    problem = ""
    try:
        targets = runtime.targets.list(tag or None)
    except InvalidRequest as exc:
        targets, problem = [], exc.message
    tags = sorted({t for target in runtime.targets.list() for t in target.tags})
    return render(
        request,
        principal,
        "targets.html",
        {
            "targets": targets,
            "tag": tag,
            "tags": tags,
            "problem": problem,
            "values": {t.name: target_values(t) for t in targets},
            "drivers": sorted(DRIVERS, key=lambda d: d != "ssh"),
        },
        section="targets",
    )


@router.get("/credentials", response_class=HTMLResponse)
def credentials_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    require(principal, Role.OPERATOR, "The credentials page")
    credentials = runtime_of(request).credentials.list()
    return render(
        request,
        principal,
        "credentials.html",
        {
            "credentials": credentials,
            "values": {c.name: credential_values(c) for c in credentials},
        },
        section="credentials",
    )


@router.get("/variables", response_class=HTMLResponse)
def variables_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    runtime = runtime_of(request)
    variables = runtime.variables.list()
    return render(
        request,
        principal,
        "variables.html",
        {
            "variables": variables,
            "values": [variable_values(v) for v in variables],
            "jobs": sorted(job.name for job in runtime.jobs.list()),
        },
        section="variables",
    )


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    runtime = runtime_of(request)
    return render(
        request,
        principal,
        "workers.html",
        {"workers": runtime.runs.workers(), "task_types": runtime.runs.task_types()},
        section="workers",
    )
