"""Users, API tokens, sessions and audit events in the database. Secrets never arrive
here: tokens and sessions by their SHA-256, passwords as argon2 hashes."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runwright.db.engine import read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import api_tokens, audit_events, sessions, users
from runwright.model.auth import Role


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    password_hash: str | None
    disabled: bool
    created_at: float
    last_sign_in_at: float | None


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    role: Role
    prefix: str
    created_by: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    user: User
    kind: str
    csrf: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    address: str | None


def _user(row: Any, prefix: str = "") -> User:
    """A user from a row of ``users``, or from columns labelled ``prefix + name``."""

    def column(name: str) -> Any:
        return getattr(row, prefix + name)

    return User(
        id=column("id"),
        name=column("name"),
        role=Role(column("role")),
        password_hash=column("password_hash"),
        disabled=bool(column("disabled")),
        created_at=column("created_at"),
        last_sign_in_at=column("last_sign_in_at"),
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        prefix=row.prefix,
        created_by=row.created_by,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class AuthRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users ---------------------------------------------------------------------
    def create_user(self, name: str, role: Role, password_hash: str | None, now: float) -> User:
        statement = (
            sa.insert(users)
            .values(name=name, role=role.value, password_hash=password_hash, created_at=now)
            .returning(*users.c)
        )
        with translate_errors("add the user"), write(self.engine) as conn:
            return _user(conn.execute(statement).one())

    def user(self, name: str) -> User | None:
        with translate_errors("read the user"), read(self.engine) as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        return None if row is None else _user(row)

    def users(self) -> builtins.list[User]:
        with translate_errors("list users"), read(self.engine) as conn:
            return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]

    def count_admins(self) -> int:
        query = sa.select(sa.func.count()).where(
            users.c.role == Role.ADMIN.value, users.c.disabled.is_(False)
        )
        with translate_errors("count admins"), read(self.engine) as conn:
            return int(conn.execute(query).scalar_one())

    def update_user(self, name: str, values: Mapping[str, Any]) -> User | None:
        statement = (
            sa.update(users).where(users.c.name == name).values(**values).returning(*users.c)
        )
        with translate_errors("update the user"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _user(row)

    def delete_user(self, user_id: int) -> None:
        with translate_errors("delete the user"), write(self.engine) as conn:
            conn.execute(sa.delete(sessions).where(sessions.c.user_id == user_id))
            conn.execute(sa.delete(users).where(users.c.id == user_id))

    # -- tokens --------------------------------------------------------------------
    def create_token(
        self,
        name: str,
        role: Role,
        token_hash: str,
        prefix: str,
        created_by: str | None,
        now: float,
    ) -> ApiToken:
        statement = (
            sa.insert(api_tokens)
            .values(
                name=name,
                role=role.value,
                token_hash=token_hash,
                prefix=prefix,
                created_by=created_by,
                created_at=now,
            )
            .returning(*api_tokens.c)
        )
        with translate_errors("add the token"), write(self.engine) as conn:
            return _token(conn.execute(statement).one())

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        query = sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)
        with translate_errors("check the token"), read(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _token(row)

    def token(self, name: str) -> ApiToken | None:
        with translate_errors("read the token"), read(self.engine) as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.name == name)).first()
        return None if row is None else _token(row)

    def tokens(self) -> builtins.list[ApiToken]:
        query = sa.select(api_tokens).order_by(api_tokens.c.name)
        with translate_errors("list tokens"), read(self.engine) as conn:
            return [_token(r) for r in conn.execute(query)]

    def touch_tokens(self, used: Mapping[int, float]) -> None:
        statement = (
            sa.update(api_tokens)
            .where(api_tokens.c.id == sa.bindparam("tid"))
            .values(last_used_at=sa.bindparam("at"))
        )
        with translate_errors("record token use"), write(self.engine) as conn:
            conn.execute(statement, [{"tid": k, "at": v} for k, v in used.items()])

    def revoke_token(self, name: str, now: float) -> ApiToken | None:
        statement = (
            sa.update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(*api_tokens.c)
        )
        with translate_errors("revoke the token"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _token(row)

    # -- sessions and one-time links ----------------------------------------------------
    def create_session(
        self, token_hash: str, user_id: int, kind: str, csrf: str, now: float, expires: float
    ) -> None:
        with translate_errors("start the session"), write(self.engine) as conn:
            conn.execute(sa.delete(sessions).where(sessions.c.expires_at < now))
            conn.execute(
                sa.insert(sessions).values(
                    token_hash=token_hash,
                    user_id=user_id,
                    kind=kind,
                    csrf=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )

    def session(self, token_hash: str, kind: str, now: float) -> Session | None:
        query = (
            sa.select(sessions, *[c.label(f"u_{c.name}") for c in users.c])
            .join(users, users.c.id == sessions.c.user_id)
            .where(
                sessions.c.token_hash == token_hash,
                sessions.c.kind == kind,
                sessions.c.expires_at > now,
            )
        )
        with translate_errors("check the session"), read(self.engine) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        user = _user(row, prefix="u_")
        return Session(
            id=row.id, user=user, kind=row.kind, csrf=row.csrf, expires_at=row.expires_at
        )

    def take_link(self, token_hash: str, now: float) -> int | None:
        """A one-time link's user, and the link is gone (used once at most)."""
        statement = (
            sa.delete(sessions)
            .where(
                sessions.c.token_hash == token_hash,
                sessions.c.kind == "link",
                sessions.c.expires_at > now,
            )
            .returning(sessions.c.user_id)
        )
        with translate_errors("check the sign-in link"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else int(row.user_id)

    def end_session(self, token_hash: str) -> None:
        with translate_errors("end the session"), write(self.engine) as conn:
            conn.execute(sa.delete(sessions).where(sessions.c.token_hash == token_hash))

    # -- audit -----------------------------------------------------------------------
    def audit(self, event: Mapping[str, Any]) -> None:
        with translate_errors("record the audit event"), write(self.engine) as conn:
            conn.execute(sa.insert(audit_events).values(**event))

    def audit_events(
        self, *, limit: int, before_id: int | None = None
    ) -> builtins.list[AuditEvent]:
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        with translate_errors("list audit events"), read(self.engine) as conn:
            return [
                AuditEvent(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    subject=r.subject,
                    detail=dict(r.detail or {}),
                    address=r.address,
                )
                for r in conn.execute(query)
            ]
