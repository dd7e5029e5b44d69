"""Schema versions: apply Alembic migrations and refuse an outdated database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from runwright.db.errors import translate_errors
from runwright.errors import SchemaOutdated

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str
    empty: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def inspect_schema(engine: Engine) -> SchemaState:
    with translate_errors("read the schema version"), engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        empty = not sa.inspect(conn).get_table_names()
    return SchemaState(current=current, head=head_revision(), empty=empty)


def upgrade(engine: Engine) -> SchemaState:
    """Apply every pending migration; returns the new state."""
    config = _config()
    with translate_errors("apply migrations"), engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return inspect_schema(engine)


def ensure_schema(engine: Engine, *, create_if_empty: bool) -> SchemaState:
    """Create the schema in an empty database; refuse one that is behind or ahead."""
    state = inspect_schema(engine)
    if state.up_to_date:
        return state
    if state.empty and state.current is None and create_if_empty:
        return upgrade(engine)
    if state.empty:
        raise SchemaOutdated(
            "The database has no runwright tables yet. Run `runwright db upgrade` (with the "
            "same RUNWRIGHT_DATABASE_URL), or start `runwright server` once, which creates them."
        )
    if state.current is None:
        raise SchemaOutdated(
            "The database has tables but no runwright schema version. Point "
            "RUNWRIGHT_DATABASE_URL at an empty database, or run `runwright db upgrade` "
            "if this is a runwright database."
        )
    raise SchemaOutdated(
        f"The database schema is at revision {state.current} but this runwright needs "
        f"{state.head}. Run `runwright db upgrade` (with the same RUNWRIGHT_DATABASE_URL), "
        "then start again."
    )
