"""``uses: sql``: a query with bound parameters over a named connection (a variable
holding a SQLAlchemy URL, usually sensitive)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from runwright.model.steps import SqlInputs
from runwright.worker.steps.common import StepEnv, StepFailed, json_safe

# The drivers this install has: plain scheme names map to them.
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def connection_url(name: str, env: StepEnv) -> str:
    value = env.variables.get(name)
    if value is None:
        raise StepFailed(
            f"There is no variable {name!r} with a database URL; set it with `runwright var set "
            f"{name} 'postgresql://user:password@host/db' --sensitive` (or --job {env.job}).",
            "config",
        )
    if not isinstance(value, str):
        raise StepFailed(f"Variable {name!r} must hold a database URL (a string).", "config")
    scheme, sep, rest = value.partition("://")
    return f"{_DRIVERS.get(scheme, scheme)}{sep}{rest}"


def run_sql(inputs: SqlInputs, env: StepEnv) -> dict[str, Any]:
    url = connection_url(inputs.connection, env)
    try:
        engine = sa.create_engine(url, poolclass=NullPool)
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
        raise StepFailed(
            f"Variable {inputs.connection!r} is not a usable database URL ({type(exc).__name__}); "
            "it should look like postgresql://user:password@host/db or sqlite:////path/file.db.",
            "config",
        ) from exc
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            # Bound parameters only: the query text is never formatted with values.
            result = conn.execute(sa.text(inputs.query), inputs.params)
            if result.returns_rows:
                fetched = result.fetchmany(inputs.max_rows + 1)
                truncated = len(fetched) > inputs.max_rows
                rows = [json_safe(dict(row._mapping)) for row in fetched[: inputs.max_rows]]
                output: dict[str, Any] = {
                    "rows": rows,
                    "row_count": len(rows),
                    "columns": list(result.keys()),
                }
                if truncated:
                    output["truncated"] = True
                    env.warn(f"Kept the first {inputs.max_rows:,} rows (max_rows).")
            else:
                output = {"rows": [], "row_count": max(result.rowcount, 0), "columns": []}
    except sa.exc.SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
        raise StepFailed(
            f"The query failed on connection {inputs.connection!r}: "
            f"{type(original).__name__}: {first_line}",
            "sql",
        ) from exc
    finally:
        engine.dispose()
    took = (time.monotonic() - started) * 1000
    env.info(f"Query on {inputs.connection!r}: {output['row_count']} rows in {took:.0f} ms")
    return output
