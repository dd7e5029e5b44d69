"""Authentication for the API and the pages: who is asking, and may they.

Interface (stable): ``current_principal`` for API routes (401 without credentials),
``page_principal`` for pages (sends the browser to /login instead), ``csrf_token`` for
templates. The browser's session cookie works on the API too; then every request that
changes something must carry the session's CSRF token in ``X-CSRF-Token``.

``authorize`` guards every route: it needs the role that ``api.access`` names for the
route (401 without credentials, 403 with too small a role).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from runwright.api.access import SAFE_METHODS, required_role
from runwright.errors import Forbidden, Unauthorized
from runwright.model.auth import Principal
from runwright.services.runtime import Runtime

SESSION_COOKIE = "rw_session"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """A page was asked for without a session: the browser goes to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _from_session(request: Request, runtime: Runtime) -> Principal | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    session = await run_in_threadpool(runtime.auth.session, secret)
    if session is None:
        return None
    request.state.csrf = session.csrf
    return Principal(
        name=session.user.name, role=session.user.role, via="session", user_id=session.user.id
    )


async def current_principal(request: Request) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    runtime: Runtime = request.app.state.runtime
    header = request.headers.get("authorization")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized(
                "The Authorization header must be `Bearer TOKEN`; create a token with "
                "`runwright token create --name NAME --role ROLE`."
            )
        principal = await run_in_threadpool(runtime.auth.authenticate_token, secret.strip())
        if principal is None:
            raise Unauthorized(
                "This API token is not valid or was revoked; ask an admin for a new one "
                "(`runwright token create`)."
            )
    else:
        found = await _from_session(request, runtime)
        if found is None:
            raise Unauthorized(
                "Sign in first: send `Authorization: Bearer TOKEN` (the local CLI reads "
                "RUNWRIGHT_HOME/token) or sign in at /login."
            )
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or sent != getattr(request.state, "csrf", None):
                raise Forbidden(
                    f"This request changes something but lacks the session's {CSRF_HEADER} "
                    "header; reload the page and try again."
                )
        principal = found
    request.state.principal = principal
    return principal


async def authorize(request: Request) -> None:
    """Every guarded route: the caller needs the route's role."""
    route = request.scope.get("route")
    needed = required_role(request.method, getattr(route, "path", request.url.path))
    if needed is None:
        return
    principal = await current_principal(request)
    if not principal.can(needed):
        raise Forbidden(
            f"{request.method} {getattr(route, 'path', request.url.path)} needs the "
            f"{needed.value} role; {principal.name} is {principal.role.value}. Ask an admin."
        )


async def page_principal(request: Request) -> Principal:
    runtime: Runtime = request.app.state.runtime
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    found = await _from_session(request, runtime)
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    request.state.principal = found
    return found


def csrf_token(request: Request) -> str:
    token: str = getattr(request.state, "csrf", "")
    return token


PrincipalDep = Annotated[Principal, Depends(current_principal)]
PagePrincipalDep = Annotated[Principal, Depends(page_principal)]


class Auditor:
    """Records a security-relevant action of the request's principal."""

    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def actor(self) -> str | None:
        principal: Principal | None = getattr(self._request.state, "principal", None)
        return principal.name if principal else None

    def record(self, action: str, subject: str, detail: dict[str, object] | None = None) -> None:
        principal: Principal | None = getattr(self._request.state, "principal", None)
        runtime: Runtime = self._request.app.state.runtime
        runtime.auth.audit(
            principal.name if principal else "anonymous",
            action,
            subject,
            dict(detail or {}),
            client_address(self._request),
        )


async def auditor(request: Request) -> Auditor:
    return Auditor(request)


AuditDep = Annotated[Auditor, Depends(auditor)]
