"""/api/me, /api/users, /api/tokens and /api/audit: who may use runwright (admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.concurrency import run_in_threadpool

from runwright.api.auth import PrincipalDep, client_address
from runwright.api.deps import RuntimeDep
from runwright.api.routes.runs import ERRORS
from runwright.db.auth import ApiToken, AuditEvent, User
from runwright.model.runs import to_datetime

router = APIRouter()


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class MeOut(BaseModel):
    name: str
    role: str
    via: str = Field(description="token or session")


@router.get("/api/me", responses=ERRORS, tags=["users"])
def me(principal: PrincipalDep) -> MeOut:
    """Who this request acts as."""
    return MeOut(name=principal.name, role=principal.role.value, via=principal.via)


# -- users ---------------------------------------------------------------------------------
class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: str = Field(description="viewer, operator or admin")
    password: SecretStr | None = Field(
        default=None, description="At least 10 characters; left out: one is generated."
    )


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = None
    password: SecretStr | None = None
    disabled: bool | None = None


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    has_password: bool = Field(description="False: signs in with one-time links only.")
    created_at: datetime
    last_sign_in_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            name=user.name,
            role=user.role.value,
            disabled=user.disabled,
            has_password=user.password_hash is not None,
            created_at=_at(user.created_at),
            last_sign_in_at=to_datetime(user.last_sign_in_at),
        )


class UserCreatedOut(UserOut):
    generated_password: str | None = Field(
        default=None, description="Shown once, when no password was given."
    )


@router.get("/api/users", responses=ERRORS, tags=["users"])
def list_users(runtime: RuntimeDep) -> list[UserOut]:
    return [UserOut.of(u) for u in runtime.auth.users()]


@router.post("/api/users", status_code=status.HTTP_201_CREATED, responses=ERRORS, tags=["users"])
def create_user(
    body: UserIn, runtime: RuntimeDep, principal: PrincipalDep, request: Request
) -> UserCreatedOut:
    """Add a user. Without a password, one is generated and returned here, once."""
    user, generated = runtime.auth.create_user(
        body.name,
        body.role,
        body.password.get_secret_value() if body.password else None,
        actor=principal.name,
        address=client_address(request),
    )
    return UserCreatedOut(**UserOut.of(user).model_dump(), generated_password=generated)


@router.get("/api/users/{name}", responses=ERRORS, tags=["users"])
def get_user(name: str, runtime: RuntimeDep) -> UserOut:
    return UserOut.of(runtime.auth.user(name))


@router.patch("/api/users/{name}", responses=ERRORS, tags=["users"])
def update_user(
    name: str, body: UserPatch, runtime: RuntimeDep, principal: PrincipalDep, request: Request
) -> UserOut:
    """Change a user's role, password or disabled flag; the last admin stays admin."""
    return UserOut.of(
        runtime.auth.update_user(
            name,
            role=body.role,
            password=body.password.get_secret_value() if body.password else None,
            disabled=body.disabled,
            actor=principal.name,
            address=client_address(request),
        )
    )


@router.delete("/api/users/{name}", responses=ERRORS, tags=["users"])
def delete_user(
    name: str, runtime: RuntimeDep, principal: PrincipalDep, request: Request
) -> dict[str, str]:
    runtime.auth.delete_user(name, actor=principal.name, address=client_address(request))
    return {"deleted": name}


@router.post("/api/users/{name}/sign-in-link", responses=ERRORS, tags=["users"])
def sign_in_link(
    name: str, runtime: RuntimeDep, principal: PrincipalDep, request: Request
) -> dict[str, str]:
    """A link that signs the user in once, within 15 minutes (for a first sign-in or a
    forgotten password)."""
    secret = runtime.auth.sign_in_link(name, actor=principal.name)
    return {"url": str(request.base_url).rstrip("/") + f"/login/link?code={secret}"}


# -- tokens --------------------------------------------------------------------------------
class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: str = Field(description="viewer, operator or admin")


class TokenOut(BaseModel):
    name: str
    role: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart.")
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(
            name=token.name,
            role=token.role.value,
            prefix=token.prefix,
            created_by=token.created_by,
            created_at=_at(token.created_at),
            last_used_at=to_datetime(token.last_used_at),
            revoked=token.revoked_at is not None,
        )


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The secret: shown this once, never stored.")


@router.get("/api/tokens", responses=ERRORS, tags=["tokens"])
def list_tokens(runtime: RuntimeDep) -> list[TokenOut]:
    runtime.auth.flush()
    return [TokenOut.of(t) for t in runtime.auth.tokens()]


@router.post("/api/tokens", status_code=status.HTTP_201_CREATED, responses=ERRORS, tags=["tokens"])
def create_token(
    body: TokenIn, runtime: RuntimeDep, principal: PrincipalDep, request: Request
) -> TokenCreatedOut:
    """A new API token (`Authorization: Bearer TOKEN`); its secret is in this answer only."""
    token, secret = runtime.auth.create_token(
        body.name, body.role, actor=principal.name, address=client_address(request)
    )
    return TokenCreatedOut(**TokenOut.of(token).model_dump(), token=secret)


@router.delete("/api/tokens/{name}", responses=ERRORS, tags=["tokens"])
def revoke_token(
    name: str, runtime: RuntimeDep, principal: PrincipalDep, request: Request
) -> TokenOut:
    """Revoke a token: it stops working within seconds; its record stays."""
    return TokenOut.of(
        runtime.auth.revoke_token(name, actor=principal.name, address=client_address(request))
    )


# -- audit ---------------------------------------------------------------------------------
class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    address: str | None

    @classmethod
    def of(cls, event: AuditEvent) -> AuditOut:
        return cls(
            id=event.id,
            at=_at(event.at),
            actor=event.actor,
            action=event.action,
            subject=event.subject,
            detail=event.detail,
            address=event.address,
        )


class AuditPage(BaseModel):
    events: list[AuditOut]
    next_cursor: str | None


@router.get("/api/audit", responses=ERRORS, tags=["users"])
async def audit_log(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> AuditPage:
    """Security-relevant events, newest first: sign-ins, tokens, users, credentials,
    deployments and cancels."""
    events = await run_in_threadpool(runtime.auth.audit_events, limit=limit, before_id=cursor)
    return AuditPage(
        events=[AuditOut.of(e) for e in events],
        next_cursor=str(events[-1].id) if len(events) == limit else None,
    )
