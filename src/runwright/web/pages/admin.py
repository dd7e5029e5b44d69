"""Admins only: users, API tokens and the audit log. The pages list; the forms and
buttons call /api/users, /api/tokens (see static/forms.js). A password or token is
shown once, by the browser, from the API's answer: these pages never hold one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from runwright.api.auth import PagePrincipalDep
from runwright.model.auth import Role
from runwright.web.pages.common import require, runtime_of
from runwright.web.templating import render

router = APIRouter(include_in_schema=False)

AUDIT_PAGE = 50
MAX_ID = 2**63 - 1
ROLES = [role.value for role in Role]


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    require(principal, Role.ADMIN, "The users page")
    users = runtime_of(request).auth.users()
    return render(
        request, principal, "users.html", {"users": users, "roles": ROLES}, section="users"
    )


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, principal: PagePrincipalDep) -> HTMLResponse:
    require(principal, Role.ADMIN, "The tokens page")
    auth = runtime_of(request).auth
    auth.flush()  # the last uses kept in memory, so that "last used" is current
    tokens = sorted(auth.tokens(), key=lambda t: (t.revoked_at is not None, t.name))
    return render(
        request, principal, "tokens.html", {"tokens": tokens, "roles": ROLES}, section="tokens"
    )


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    principal: PagePrincipalDep,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    require(principal, Role.ADMIN, "The audit log")
    events = await run_in_threadpool(
        runtime_of(request).auth.audit_events, limit=AUDIT_PAGE, before_id=cursor
    )
    older = events[-1].id if len(events) == AUDIT_PAGE else None
    return render(
        request,
        principal,
        "audit.html",
        {"events": events, "older": older, "cursor": cursor},
        section="audit",
    )
