"""Every value stored encrypted with the secret key: credentials' secret parts, sensitive
variables and webhook signing secrets. Read and rewritten together, in one transaction,
by a key rotation (services/secrets.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from runwright.db.engine import write
from runwright.db.errors import translate_errors
from runwright.db.tables import credentials, jobs, variables, webhooks


@dataclass(frozen=True, slots=True)
class Sealed:
    """One encrypted value: where it is, in words an operator recognises, and its token."""

    table: str  # credentials, variables or webhooks
    id: int  # the row's id in that table
    label: str  # "credential 'db-admin'", "variable 'token' of job 'export'", ...
    token: str


@dataclass(frozen=True, slots=True)
class Rewritten:
    credentials: int = 0
    variables: int = 0
    webhooks: int = 0

    @property
    def total(self) -> int:
        return self.credentials + self.variables + self.webhooks


_COLUMN = {"credentials": "secret", "variables": "value", "webhooks": "secret"}


def _load(conn: Connection) -> list[Sealed]:
    found: list[Sealed] = []
    locking = conn.dialect.name == "postgresql"  # SQLite's write transaction locks it all

    query = sa.select(credentials.c.id, credentials.c.name, credentials.c.secret).order_by(
        credentials.c.id
    )
    for row in conn.execute(query.with_for_update() if locking else query):
        found.append(Sealed("credentials", row.id, f"credential {row.name!r}", row.secret))

    query = (
        sa.select(variables.c.id, variables.c.name, variables.c.value, jobs.c.name.label("job"))
        .select_from(variables.outerjoin(jobs, jobs.c.id == variables.c.job_id))
        .where(variables.c.sensitive.is_(True))
        .order_by(variables.c.job_id, variables.c.name)
    )
    for var in conn.execute(query.with_for_update(of=variables) if locking else query):
        scope = f" of job {var.job!r}" if var.job else ""
        label = f"sensitive variable {var.name!r}{scope}"
        found.append(Sealed("variables", var.id, label, var.value))

    query = (
        sa.select(webhooks.c.id, webhooks.c.secret, jobs.c.name.label("job"))
        .select_from(webhooks.join(jobs, jobs.c.id == webhooks.c.job_id))
        .where(webhooks.c.secret.is_not(None))
        .order_by(webhooks.c.id)
    )
    for hook in conn.execute(query.with_for_update(of=webhooks) if locking else query):
        label = f"signing secret of webhook {hook.id} (job {hook.job!r})"
        found.append(Sealed("webhooks", hook.id, label, hook.secret))
    return found


def _store(conn: Connection, sealed: list[Sealed], tokens: list[str]) -> Rewritten:
    tables = {"credentials": credentials, "variables": variables, "webhooks": webhooks}
    counts: dict[str, int] = {}
    for name, table in tables.items():
        rows = [
            {"k_id": item.id, "v": token}
            for item, token in zip(sealed, tokens, strict=True)
            if item.table == name
        ]
        counts[name] = len(rows)
        if rows:
            conn.execute(
                sa.update(table)
                .where(table.c.id == sa.bindparam("k_id"))
                .values({table.c[_COLUMN[name]]: sa.bindparam("v")}),
                rows,
            )
    return Rewritten(**counts)


def rewrite_sealed(engine: Engine, transform: Callable[[list[Sealed]], list[str]]) -> Rewritten:
    """Read every encrypted value (locked against concurrent writers), hand them to
    ``transform`` and store the tokens it returns, one per value, in the same
    transaction. When ``transform`` raises, nothing is changed."""
    with translate_errors("re-encrypt the stored secrets"), write(engine) as conn:
        sealed = _load(conn)
        tokens = transform(sealed)
        return _store(conn, sealed, tokens)
