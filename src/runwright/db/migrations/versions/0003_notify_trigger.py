"""notify idle workers from the database; drop an index the queue does not need

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 15:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One NOTIFY per inserting statement, sent at commit: submits need no extra round trip.
NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION runwright_notify_new_runs() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('runwright_runs', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    # Heartbeats find a worker's runs by id; every status change would otherwise also
    # rewrite this index.
    op.drop_index("ix_runs_worker", table_name="runs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(
            "CREATE TRIGGER runs_notify_new AFTER INSERT ON runs "
            "FOR EACH STATEMENT EXECUTE FUNCTION runwright_notify_new_runs()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS runs_notify_new ON runs")
        op.execute("DROP FUNCTION IF EXISTS runwright_notify_new_runs()")
    op.create_index("ix_runs_worker", "runs", ["worker_id"])
