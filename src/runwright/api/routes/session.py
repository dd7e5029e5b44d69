"""Signing in to the web UI: /login (form), /login/link (one-time link), /logout.

The sign-in form has its own CSRF protection (a random value in a cookie and in the
form, which must match) since there is no session yet to hold one.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool

from runwright.api.auth import SESSION_COOKIE, client_address
from runwright.api.deps import RuntimeDep
from runwright.errors import RateLimited
from runwright.services.auth import SESSION_SECONDS, SignedIn

router = APIRouter(include_in_schema=False)

LOGIN_COOKIE = "rw_login"
_templates = Environment(autoescape=select_autoescape(default=True))
_LOGIN = _templates.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · runwright</title>
<style>
:root { color-scheme: light dark; --fg: #1d232b; --bg: #f6f7f9; --card: #fff; --accent: #2458d6;
  --bad: #b42318; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --bg: #13161b; --card: #1c2027;
  --accent: #7aa2ff; --bad: #ff8a80; } }
body { font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg);
  display: grid; place-items: center; min-height: 100vh; margin: 0; }
form { background: var(--card); padding: 2rem; border-radius: 12px; width: min(22rem, 90vw);
  box-shadow: 0 2px 12px #0002; }
label { display: block; margin-top: 1rem; font-weight: 600; }
input { width: 100%; box-sizing: border-box; padding: .6rem; font: inherit; margin-top: .3rem;
  border-radius: 6px; border: 1px solid #8888; background: transparent; color: inherit; }
button { margin-top: 1.5rem; width: 100%; padding: .7rem; font: inherit; font-weight: 600;
  color: #fff; background: var(--accent); border: 0; border-radius: 6px; cursor: pointer; }
.error { color: var(--bad); margin: 1rem 0 0; }
</style></head>
<body><form method="post" action="/login">
<h1>runwright</h1>
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<label for="name">User</label>
<input id="name" name="name" autocomplete="username" required value="{{ name }}" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<button type="submit">Sign in</button>
</form></body></html>
"""
)


def _safe_next(value: str) -> str:
    """Only a path on this server: never an address elsewhere (open redirect)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _login_page(next_url: str, name: str = "", error: str = "", status: int = 200) -> Response:
    csrf = secrets.token_urlsafe(24)
    page = _LOGIN.render(csrf=csrf, next=_safe_next(next_url), name=name, error=error)
    response = HTMLResponse(page, status_code=status)
    response.set_cookie(LOGIN_COOKIE, csrf, httponly=True, samesite="strict", max_age=3600)
    return response


def _signed_in(request: Request, signed: SignedIn, next_url: str) -> Response:
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        signed.secret,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=SESSION_SECONDS,
    )
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.get("/login")
def login_form(next: Annotated[str, Query()] = "/") -> Response:
    return _login_page(next)


@router.post("/login")
async def login(
    request: Request,
    runtime: RuntimeDep,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not csrf or not hmac.compare_digest(csrf, expected):
        return _login_page(next, name, "The form expired; sign in again.", status=403)
    try:
        signed = await run_in_threadpool(
            runtime.auth.sign_in, name, password, client_address(request)
        )
    except RateLimited as exc:
        return _login_page(next, name, exc.message, status=429)
    if signed is None:
        return _login_page(
            next, name, "Unknown user or wrong password. Ask an admin to reset it.", status=401
        )
    return _signed_in(request, signed, next)


@router.get("/login/link")
async def login_link(request: Request, runtime: RuntimeDep, code: str = "") -> Response:
    signed = (
        await run_in_threadpool(runtime.auth.use_link, code, client_address(request))
        if code
        else None
    )
    if signed is None:
        return _login_page(
            "/",
            error="This sign-in link was used already or has expired; ask for a new one "
            "(`runwright user link NAME`).",
            status=401,
        )
    return _signed_in(request, signed, "/")


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await run_in_threadpool(runtime.auth.sign_out, secret, client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def sign_in_redirect(next_url: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_url, safe='/')}", status_code=303)
