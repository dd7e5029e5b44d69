"""What every page module needs: the runtime, and pages for "not found" and "not allowed"."""

from __future__ import annotations

from fastapi import Request

from runwright.model.auth import Principal, Role
from runwright.services.runtime import Runtime


class PageError(Exception):
    """Rendered as an error page (not the API's JSON) by the handler web.install adds."""

    def __init__(
        self,
        principal: Principal,
        message: str,
        *,
        status_code: int = 404,
        title: str = "Not found",
        back_url: str = "/",
        back_label: str = "the dashboard",
    ) -> None:
        super().__init__(message)
        self.principal = principal
        self.message = message
        self.status_code = status_code
        self.title = title
        self.back_url = back_url
        self.back_label = back_label


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def forbidden(principal: Principal, what: str, needed: Role = Role.OPERATOR) -> PageError:
    who = "admins" if needed is Role.ADMIN else "operators and admins"
    return PageError(
        principal,
        f"{what} is for {who}; you are signed in as {principal.name} "
        f"({principal.role}). "
        "Ask an admin if you need it.",
        status_code=403,
        title="Not allowed",
    )


def require(principal: Principal, needed: Role, what: str) -> None:
    if not principal.can(needed):
        raise forbidden(principal, what, needed)
