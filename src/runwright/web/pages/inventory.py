"""Targets, credentials (admins only; never a secret), variables and workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from runwright.api.auth import PagePrincipalDep
from runwright.errors import InvalidRequest
from runwright.model.auth import Role
from runwright.web.pages.common import forbidden, runtime_of
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
        {"targets": targets, "tag": tag, "tags": tags, "problem": problem},
        section="targets",
    )


@router.get("/credentials", response_class=HTMLResponse)
def credentials_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    if not principal.can(Role.OPERATOR):
        raise forbidden(principal, "The credentials page")
    credentials = runtime_of(request).credentials.list()
    return render(
        request, principal, "credentials.html", {"credentials": credentials}, section="credentials"
    )


@router.get("/variables", response_class=HTMLResponse)
def variables_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    variables = runtime_of(request).variables.list()
    return render(
        request, principal, "variables.html", {"variables": variables}, section="variables"
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
