"""The inventory: targets, and credentials with their secret part sealed.

Rows never leave this module: targets become ``model.targets.Target`` and credentials
``model.targets.Credential``, which has no field for the secret. The sealed secret (a
Fernet token) is handed out only by ``CredentialRepository.sealed``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import credentials, targets
from runwright.model.targets import Credential, Target

TARGET_FIELDS = (
    "address",
    "port",
    "driver",
    "tags",
    "vars",
    "enabled",
    "host_key",
    "description",
)
TARGET_DEFAULTS: dict[str, Any] = {
    "port": 22,
    "driver": "ssh",
    "tags": [],
    "vars": {},
    "enabled": True,
    "host_key": None,
    "description": "",
}
CREDENTIAL_FIELDS = ("username", "kind", "secret", "priority", "tags", "description")

# Every column but the secret: what lists and shows read.
_CREDENTIAL_COLUMNS = [c for c in credentials.c if c.name != "secret"]


def _target(row: Any) -> Target:
    return Target(
        id=row.id,
        name=row.name,
        address=row.address,
        port=row.port,
        driver=row.driver,
        tags=tuple(row.tags or ()),
        vars=dict(row.vars or {}),
        enabled=bool(row.enabled),
        host_key=row.host_key,
        known_host_key=row.known_host_key,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _credential(row: Any) -> Credential:
    return Credential(
        id=row.id,
        name=row.name,
        username=row.username,
        kind=row.kind,
        priority=row.priority,
        tags=tuple(row.tags or ()),
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_used_at=row.last_used_at,
        successes=row.successes,
        failures=row.failures,
    )


def _pick(values: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {key: values[key] for key in fields if key in values}


class TargetRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    def create(self, name: str, values: Mapping[str, Any], now: float) -> Target | None:
        """Insert a target; None when the name is taken."""
        data = {**TARGET_DEFAULTS, **_pick(values, TARGET_FIELDS)}
        statement = (
            self._insert(targets)
            .values(name=name, created_at=now, updated_at=now, **data)
            .on_conflict_do_nothing(index_elements=[targets.c.name])
            .returning(*targets.c)
        )
        with translate_errors("add the target"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _target(row)

    def get(self, name: str) -> Target | None:
        with translate_errors("read the target"), read(self.engine) as conn:
            row = conn.execute(sa.select(targets).where(targets.c.name == name)).first()
        return None if row is None else _target(row)

    def list(self, *, enabled_only: bool = False) -> builtins.list[Target]:
        query = sa.select(targets).order_by(targets.c.name)
        if enabled_only:
            query = query.where(targets.c.enabled.is_(True))
        with translate_errors("list targets"), read(self.engine) as conn:
            return [_target(row) for row in conn.execute(query)]

    def update(self, name: str, values: Mapping[str, Any], now: float) -> Target | None:
        statement = (
            sa.update(targets)
            .where(targets.c.name == name)
            .values(updated_at=now, **_pick(values, TARGET_FIELDS))
            .returning(*targets.c)
        )
        with translate_errors("update the target"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _target(row)

    def delete(self, name: str) -> bool:
        with translate_errors("delete the target"), write(self.engine) as conn:
            result = conn.execute(sa.delete(targets).where(targets.c.name == name))
        return result.rowcount > 0

    def record_host_key(self, target_id: int, key: str) -> None:
        """Trust on first use: the first recorded key stays."""
        statement = (
            sa.update(targets)
            .where(targets.c.id == target_id, targets.c.known_host_key.is_(None))
            .values(known_host_key=key)
        )
        with translate_errors("record the target's host key"), write(self.engine) as conn:
            conn.execute(statement)

    def forget_host_key(self, name: str, now: float) -> Target | None:
        statement = (
            sa.update(targets)
            .where(targets.c.name == name)
            .values(known_host_key=None, updated_at=now)
            .returning(*targets.c)
        )
        with translate_errors("forget the target's host key"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _target(row)

    def existing(self, names: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with translate_errors("read targets"), read(self.engine) as conn:
            for start in range(0, len(names), 500):
                chunk = builtins.list(names[start : start + 500])
                query = sa.select(targets.c.name).where(targets.c.name.in_(chunk))
                found.update(conn.scalars(query))
        return found

    def put_many(self, rows: Sequence[tuple[str, Mapping[str, Any]]], now: float) -> set[str]:
        """Create or update targets by name, in one transaction. A new target takes the
        defaults for the fields a row leaves out; an existing one keeps them. Returns
        the names that were created."""
        existing: set[str] = set()
        with translate_errors("import the targets"), write(self.engine) as conn:
            names = [name for name, _ in rows]
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                query = sa.select(targets.c.name).where(targets.c.name.in_(chunk))
                existing.update(conn.scalars(query))
            for name, values in rows:
                given = _pick(values, TARGET_FIELDS)
                statement = (
                    self._insert(targets)
                    .values(
                        name=name, created_at=now, updated_at=now, **{**TARGET_DEFAULTS, **given}
                    )
                    .on_conflict_do_update(
                        index_elements=[targets.c.name], set_={**given, "updated_at": now}
                    )
                )
                conn.execute(statement)
        return {name for name, _ in rows} - existing


class CredentialRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    def create(self, name: str, values: Mapping[str, Any], now: float) -> Credential | None:
        """Insert a credential (``values`` holds the sealed ``secret``); None when the
        name is taken."""
        statement = (
            self._insert(credentials)
            .values(name=name, created_at=now, updated_at=now, **_pick(values, CREDENTIAL_FIELDS))
            .on_conflict_do_nothing(index_elements=[credentials.c.name])
            .returning(*_CREDENTIAL_COLUMNS)
        )
        with translate_errors("add the credential"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _credential(row)

    def get(self, name: str) -> Credential | None:
        query = sa.select(*_CREDENTIAL_COLUMNS).where(credentials.c.name == name)
        with translate_errors("read the credential"), read(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _credential(row)

    def list(self) -> builtins.list[Credential]:
        query = sa.select(*_CREDENTIAL_COLUMNS).order_by(credentials.c.name)
        with translate_errors("list credentials"), read(self.engine) as conn:
            return [_credential(row) for row in conn.execute(query)]

    def update(self, name: str, values: Mapping[str, Any], now: float) -> Credential | None:
        statement = (
            sa.update(credentials)
            .where(credentials.c.name == name)
            .values(updated_at=now, **_pick(values, CREDENTIAL_FIELDS))
            .returning(*_CREDENTIAL_COLUMNS)
        )
        with translate_errors("update the credential"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else _credential(row)

    def delete(self, name: str) -> bool:
        with translate_errors("delete the credential"), write(self.engine) as conn:
            result = conn.execute(sa.delete(credentials).where(credentials.c.name == name))
        return result.rowcount > 0

    def sealed(self, ids: Sequence[int]) -> builtins.list[tuple[Credential, str]]:
        """The credentials with these ids and their sealed secret, in one query."""
        if not ids:
            return []
        query = sa.select(*_CREDENTIAL_COLUMNS, credentials.c.secret).where(
            credentials.c.id.in_(builtins.list(ids))
        )
        with translate_errors("read credentials"), read(self.engine) as conn:
            return [(_credential(row), row.secret) for row in conn.execute(query)]

    def record_use(self, counts: Mapping[int, tuple[int, int]], now: float) -> None:
        """Add (successes, failures) to each credential and set its last use, in one
        transaction."""
        if not counts:
            return
        statement = (
            sa.update(credentials)
            .where(credentials.c.id == sa.bindparam("k_id"))
            .values(
                successes=credentials.c.successes + sa.bindparam("k_ok", type_=sa.Integer),
                failures=credentials.c.failures + sa.bindparam("k_failed", type_=sa.Integer),
                last_used_at=now,
            )
        )
        rows = [
            {"k_id": credential_id, "k_ok": ok, "k_failed": failed}
            for credential_id, (ok, failed) in sorted(counts.items())
        ]
        with translate_errors("record the use of credentials"), write(self.engine) as conn:
            conn.execute(statement, rows)
