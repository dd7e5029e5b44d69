"""Authentication for the API and the pages: who is asking, and may they.

Interface (stable): ``current_principal`` for API routes (401 without credentials),
``page_principal`` for pages (sends the browser to /login instead), ``csrf_token`` for
templates. The browser's session cookie works on the API too; then every request that
changes something must carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runwright.model.auth import Principal, Role


class SignInRequired(Exception):
    """A page was asked for without a session: the browser goes to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


async def current_principal(request: Request) -> Principal:
    # Placeholder until users and tokens land: everyone is the local admin.
    return Principal(name="admin", role=Role.ADMIN, via="session")


async def page_principal(request: Request) -> Principal:
    return await current_principal(request)


def csrf_token(request: Request) -> str:
    return ""


PrincipalDep = Annotated[Principal, Depends(current_principal)]
PagePrincipalDep = Annotated[Principal, Depends(page_principal)]
