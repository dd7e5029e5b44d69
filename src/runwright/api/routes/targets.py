"""/api/targets and /api/credentials: the inventory jobs run on, and who logs in there.

No answer here ever carries a credential's secret part, not even encrypted: request
bodies take it (as write-only fields), responses are built from ``Credential``, which
has no field for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr
from starlette.concurrency import run_in_threadpool

from runwright.api.auth import AuditDep
from runwright.api.deps import RuntimeDep
from runwright.api.routes.runs import ERRORS
from runwright.api.schemas import ErrorOut
from runwright.errors import InvalidRequest, TooLarge
from runwright.model.runs import to_datetime
from runwright.model.targets import Credential, SecretPart, Target
from runwright.services.targets import ImportReport

router = APIRouter()

MAX_IMPORT_BYTES = 5 * 1024 * 1024


class UnsupportedMediaType(InvalidRequest):
    status_code = 415


# -- targets -------------------------------------------------------------------------------
class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Letters, digits, '.', '_', '@', ':' and '-'.")
    address: str = Field(description="Host name or IP address.")
    port: int = Field(default=22, description="1 to 65535.")
    driver: str = Field(default="ssh", description="ssh (a remote host) or local (the worker).")
    tags: list[str] = Field(default_factory=list, description="Jobs select targets by tag.")
    vars: dict[str, Any] = Field(default_factory=dict, description="Free-form, for jobs.")
    enabled: bool = True
    host_key: str | None = Field(
        default=None, description="Pinned public host key, like 'ssh-ed25519 AAAA...'."
    )
    description: str = ""


class TargetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    port: int | None = None
    driver: str | None = None
    tags: list[str] | None = None
    vars: dict[str, Any] | None = None
    enabled: bool | None = None
    host_key: str | None = Field(default=None, description="Null removes the pin.")
    description: str | None = None


class TargetOut(BaseModel):
    id: int
    name: str
    address: str
    port: int
    driver: str
    tags: list[str]
    vars: dict[str, Any]
    enabled: bool
    host_key: str | None = Field(description="Pinned by an operator.")
    known_host_key: str | None = Field(description="Recorded on the first connection.")
    description: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, t: Target) -> TargetOut:
        return cls(
            id=t.id,
            name=t.name,
            address=t.address,
            port=t.port,
            driver=t.driver,
            tags=list(t.tags),
            vars=t.vars,
            enabled=t.enabled,
            host_key=t.host_key,
            known_host_key=t.known_host_key,
            description=t.description,
            created_at=to_datetime(t.created_at),
            updated_at=to_datetime(t.updated_at),
        )


class ImportRowOut(BaseModel):
    row: int = Field(description="CSV: the line the record starts on; JSON: the item, from 1.")
    name: str | None
    status: str = Field(description="created, updated or refused.")
    field: str | None = Field(description="The field that was refused.")
    error: str | None


class ImportOut(BaseModel):
    dry_run: bool
    created: int
    updated: int
    refused: int
    rows: list[ImportRowOut]

    @classmethod
    def of(cls, report: ImportReport) -> ImportOut:
        return cls(
            dry_run=report.dry_run,
            created=report.created,
            updated=report.updated,
            refused=report.refused,
            rows=[
                ImportRowOut(row=r.row, name=r.name, status=r.status, field=r.field, error=r.error)
                for r in report.rows
            ],
        )


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file: CSV with a header line, or a JSON list of targets.",
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "name,address,port,tags\nweb-1,10.0.0.5,22,web prod\n",
            },
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": [{"name": "web-1", "address": "10.0.0.5", "tags": ["web"]}],
            },
        },
    }
}
IMPORT_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    413: {"model": ErrorOut},
    415: {"model": ErrorOut},
}


def _import_kind(content_type: str) -> str:
    media = content_type.split(";")[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return "csv"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    raise UnsupportedMediaType(
        f"Send the file with Content-Type text/csv or application/json, not {media or 'none'}."
    )


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise TooLarge(
                f"The file is larger than {limit:,} bytes; split it and import the parts."
            )
    return bytes(body)


@router.get("/api/targets", responses=ERRORS, tags=["targets"])
def list_targets(
    runtime: RuntimeDep,
    tag: Annotated[str | None, Query(description="Only targets with this tag.")] = None,
) -> list[TargetOut]:
    return [TargetOut.of(t) for t in runtime.targets.list(tag)]


@router.post(
    "/api/targets", status_code=status.HTTP_201_CREATED, responses=ERRORS, tags=["targets"]
)
def create_target(body: TargetIn, runtime: RuntimeDep) -> TargetOut:
    """Add a target; 409 if the name is taken."""
    return TargetOut.of(runtime.targets.create(body.model_dump()))


@router.post(
    "/api/targets/import", responses=IMPORT_ERRORS, openapi_extra=IMPORT_BODY, tags=["targets"]
)
async def import_targets(
    request: Request,
    runtime: RuntimeDep,
    dry_run: Annotated[bool, Query(description="Check and report; store nothing.")] = False,
) -> ImportOut:
    """Create or update many targets from a CSV file (`Content-Type: text/csv`) or a JSON
    list (`application/json`). Each row is created, updated or refused with the reason;
    refused rows change nothing and do not stop the others."""
    kind = _import_kind(request.headers.get("content-type", ""))
    body = await _read_body(request, MAX_IMPORT_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"The file is not UTF-8 text (byte {exc.start}); save it as UTF-8 and import again."
        ) from exc
    report = await run_in_threadpool(runtime.targets.import_text, text, kind, dry_run=dry_run)
    return ImportOut.of(report)


@router.get("/api/targets/{name}", responses=ERRORS, tags=["targets"])
def get_target(name: str, runtime: RuntimeDep) -> TargetOut:
    return TargetOut.of(runtime.targets.get(name))


@router.patch("/api/targets/{name}", responses=ERRORS, tags=["targets"])
def update_target(name: str, body: TargetPatch, runtime: RuntimeDep) -> TargetOut:
    """Change the given fields."""
    return TargetOut.of(runtime.targets.update(name, body.model_dump(exclude_unset=True)))


@router.delete(
    "/api/targets/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
    tags=["targets"],
)
def delete_target(name: str, runtime: RuntimeDep) -> None:
    runtime.targets.delete(name)


@router.post("/api/targets/{name}/forget-host-key", responses=ERRORS, tags=["targets"])
def forget_host_key(name: str, runtime: RuntimeDep) -> TargetOut:
    """Forget the host key recorded on the first connection (after the host was
    rebuilt); the next successful connection records the new one. A pinned
    `host_key` is not changed."""
    return TargetOut.of(runtime.targets.forget_host_key(name))


# -- credentials ---------------------------------------------------------------------------
WRITE_ONLY: dict[str, JsonValue] = {"format": "password", "writeOnly": True}


class CredentialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Letters, digits, '.', '_', '@', ':' and '-'.")
    username: str
    password: SecretStr | None = Field(default=None, json_schema_extra=WRITE_ONLY)
    private_key: SecretStr | None = Field(
        default=None, description="The whole key file.", json_schema_extra=WRITE_ONLY
    )
    passphrase: SecretStr | None = Field(
        default=None, description="Of an encrypted private_key.", json_schema_extra=WRITE_ONLY
    )
    priority: int = Field(default=100, description="Lower is tried first.")
    tags: list[str] = Field(default_factory=list, description="Used on targets sharing a tag.")
    description: str = ""


class CredentialPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str | None = None
    password: SecretStr | None = Field(default=None, json_schema_extra=WRITE_ONLY)
    private_key: SecretStr | None = Field(default=None, json_schema_extra=WRITE_ONLY)
    passphrase: SecretStr | None = Field(default=None, json_schema_extra=WRITE_ONLY)
    priority: int | None = None
    tags: list[str] | None = None
    description: str | None = None

    def secret(self) -> SecretPart | None:
        if self.password is None and self.private_key is None and self.passphrase is None:
            return None
        return _secret(self.password, self.private_key, self.passphrase)


def _secret(
    password: SecretStr | None, private_key: SecretStr | None, passphrase: SecretStr | None
) -> SecretPart:
    def plain(value: SecretStr | None) -> str | None:
        return None if value is None else value.get_secret_value()

    return SecretPart(plain(password), plain(private_key), plain(passphrase))


class CredentialOut(BaseModel):
    """A credential without its secret part, which is never returned."""

    id: int
    name: str
    username: str
    kind: str = Field(description="password or key.")
    priority: int
    tags: list[str]
    description: str
    created_at: datetime | None
    updated_at: datetime | None
    last_used_at: datetime | None
    successes: int = Field(description="Logins that worked.")
    failures: int = Field(description="Logins refused.")
    success_rate: float | None = Field(description="successes / uses; null before the first.")

    @classmethod
    def of(cls, c: Credential) -> CredentialOut:
        return cls(
            id=c.id,
            name=c.name,
            username=c.username,
            kind=c.kind,
            priority=c.priority,
            tags=list(c.tags),
            description=c.description,
            created_at=to_datetime(c.created_at),
            updated_at=to_datetime(c.updated_at),
            last_used_at=to_datetime(c.last_used_at),
            successes=c.successes,
            failures=c.failures,
            success_rate=c.success_rate,
        )


@router.get("/api/credentials", responses=ERRORS, tags=["credentials"])
def list_credentials(runtime: RuntimeDep) -> list[CredentialOut]:
    return [CredentialOut.of(c) for c in runtime.credentials.list()]


@router.post(
    "/api/credentials",
    status_code=status.HTTP_201_CREATED,
    responses=ERRORS,
    tags=["credentials"],
)
def create_credential(body: CredentialIn, runtime: RuntimeDep, audit: AuditDep) -> CredentialOut:
    """Add a credential: a password, or a private key (with its passphrase if it is
    encrypted). The secret part is encrypted at rest and never returned."""
    created = runtime.credentials.create(
        body.name,
        username=body.username,
        secret=_secret(body.password, body.private_key, body.passphrase),
        priority=body.priority,
        tags=body.tags,
        description=body.description,
    )
    audit.record("credential.created", body.name, {"username": body.username})
    return CredentialOut.of(created)


@router.get("/api/credentials/{name}", responses=ERRORS, tags=["credentials"])
def get_credential(name: str, runtime: RuntimeDep) -> CredentialOut:
    return CredentialOut.of(runtime.credentials.get(name))


@router.patch("/api/credentials/{name}", responses=ERRORS, tags=["credentials"])
def update_credential(
    name: str, body: CredentialPatch, runtime: RuntimeDep, audit: AuditDep
) -> CredentialOut:
    """Change the given fields. A password or private_key replaces the secret part."""
    updated = runtime.credentials.update(
        name,
        username=body.username,
        secret=body.secret(),
        priority=body.priority,
        tags=body.tags,
        description=body.description,
    )
    changed = sorted(body.model_dump(exclude_unset=True))
    audit.record("credential.updated", name, {"changed": changed})
    return CredentialOut.of(updated)


@router.delete(
    "/api/credentials/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
    tags=["credentials"],
)
def delete_credential(name: str, runtime: RuntimeDep, audit: AuditDep) -> None:
    runtime.credentials.delete(name)
    audit.record("credential.deleted", name)
