"""Table definitions. Timestamps are UTC epoch seconds (double precision) so that the
same SQL compares them with the database clock on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Epoch = sa.Float(precision=53)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("job", sa.String(200), nullable=True),
    sa.Column("trigger", sa.String(20), nullable=False, server_default="api"),
    sa.Column("payload", Json, nullable=True),
    sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("outcome", sa.String(40), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("timeout", sa.Float, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    sa.Column("progress_percent", sa.Float, nullable=True),
    sa.Column("progress_message", sa.Text, nullable=True),
    sa.Column("result", Json, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker_id", sa.String(120), nullable=True),
    sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lease_expires_at", Epoch, nullable=True),
    sa.Column("heartbeat_at", Epoch, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("retry_of", BigId, nullable=True),
    sa.Column("job_id", BigId, nullable=True),
    sa.Column("package_id", BigId, nullable=True),
    sa.Column("environment", sa.String(50), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("log_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("trigger_id", BigId, nullable=True),  # the schedule or webhook that started it
    sa.Column("fired_at", Epoch, nullable=True),  # a schedule's fire time
    # Queued but not claimable yet: a `queue`-concurrency job's run waiting for the one
    # before it (its scheduled_at is far in the future until it is released).
    sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("scheduled_at", Epoch, nullable=False),
    sa.Column("started_at", Epoch, nullable=True),
    sa.Column("finished_at", Epoch, nullable=True),
    sa.CheckConstraint(
        "status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')", name="status"
    ),
)

# The claim reads only queued rows in claim order; a partial index keeps it small.
sa.Index(
    "ix_runs_claim",
    runs.c.queue,
    runs.c.priority.desc(),
    runs.c.scheduled_at,
    runs.c.id,
    postgresql_where=runs.c.status == "queued",
    sqlite_where=runs.c.status == "queued",
)
sa.Index(
    "ix_runs_lease",
    runs.c.lease_expires_at,
    postgresql_where=runs.c.status == "running",
    sqlite_where=runs.c.status == "running",
)
sa.Index("ix_runs_status_id", runs.c.status, runs.c.id)
sa.Index("ix_runs_type_id", runs.c.type, runs.c.id)
sa.Index("ix_runs_job_id", runs.c.job, runs.c.id)
# Notifications and concurrency policies look up a job's latest and active runs.
sa.Index("ix_runs_job_finished", runs.c.job_id, runs.c.finished_at)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(120), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", Json, nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("task_types", Json, nullable=False),
    sa.Column("started_at", Epoch, nullable=False),
    sa.Column("heartbeat_at", Epoch, nullable=False),
    sa.Column("stopping", sa.Boolean, nullable=False, server_default=sa.false()),
)

task_types = sa.Table(
    "task_types",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("last_seen_at", Epoch, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("task_type", sa.String(200), nullable=True),
    sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("timeout", sa.Float, nullable=True),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("parameters", Json, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("current_package_id", BigId, nullable=True),
    sa.Column("concurrency", sa.String(10), nullable=False, server_default="allow"),
    sa.Column("total_runs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_run_id", BigId, nullable=True),
    sa.Column("last_run_at", Epoch, nullable=True),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.CheckConstraint("kind IN ('task', 'script', 'package', 'steps')", name="kind"),
)

packages = sa.Table(
    "packages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("storage_key", sa.String(1024), nullable=False),
    sa.Column("manifest", Json, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.UniqueConstraint("job_id", "sha256"),
    sa.UniqueConstraint("job_id", "version"),
)

log_lines = sa.Table(
    "log_lines",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", BigId, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("ts", Epoch, nullable=False),
    sa.Column("stream", sa.String(10), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("step", sa.String(200), nullable=True),
    sa.Column("target", sa.String(200), nullable=True),
    sa.UniqueConstraint("run_id", "seq"),
)

# One row per step of a multi-step run: its latest state (a resumed run updates the
# rows of the steps it executes again and keeps those it skips).
run_steps = sa.Table(
    "run_steps",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", BigId, nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("uses", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),  # the run attempt that last ran it
    sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", Epoch, nullable=True),
    sa.Column("finished_at", Epoch, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(40), nullable=True),
    sa.Column("output_summary", sa.Text, nullable=True),
    sa.UniqueConstraint("run_id", "step_id"),
)

# Variables for references (``{{ variables.base_url }}``): global (job_id 0) or of one
# job. Sensitive values are stored encrypted (Fernet) in ``value``.
variables = sa.Table(
    "variables",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, nullable=False, server_default="0"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("sensitive", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.UniqueConstraint("job_id", "name"),
)


schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("start_at", Epoch, nullable=True),
    sa.Column("end_at", Epoch, nullable=True),
    sa.Column("params", Json, nullable=False),
    sa.Column("environment", sa.String(50), nullable=True),
    sa.Column("misfire", sa.String(10), nullable=False, server_default="skip"),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("next_fire_at", Epoch, nullable=True),  # None: no fire time left (ended)
    sa.Column("last_fire_at", Epoch, nullable=True),
    sa.Column("last_run_id", BigId, nullable=True),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
)
sa.Index(
    "ix_schedules_due",
    schedules.c.next_fire_at,
    postgresql_where=schedules.c.enabled,
    sqlite_where=schedules.c.enabled,
)

# One row per schedule and fire time: the unique constraint is what makes a fire time
# start at most one run, whatever the number of scheduler processes.
schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "schedule_id", BigId, sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("fire_time", Epoch, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # started, skipped, failed
    sa.Column("run_id", BigId, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", Epoch, nullable=False),
    sa.UniqueConstraint("schedule_id", "fire_time"),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("token_hint", sa.String(12), nullable=False),
    sa.Column("secret", sa.Text, nullable=True),  # signing secret, Fernet-encrypted
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("rate_limit", sa.Integer, nullable=False, server_default="60"),  # per minute
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("last_called_at", Epoch, nullable=True),
)

webhook_calls = sa.Table(
    "webhook_calls",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "webhook_id", BigId, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("received_at", Epoch, nullable=False),
    sa.Column("source", sa.String(100), nullable=True),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("run_id", BigId, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # sha256 of an accepted signature: the same signed request is refused the second time
    sa.Column("signature", sa.String(64), nullable=True, unique=True),
)
sa.Index("ix_webhook_calls_webhook_id", webhook_calls.c.webhook_id, webhook_calls.c.id)

notification_rules = sa.Table(
    "notification_rules",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.String(30), nullable=False),  # failure, success, recovery, failures
    sa.Column("threshold", sa.Integer, nullable=False, server_default="1"),
    sa.Column("channel", sa.String(10), nullable=False),  # webhook, email
    sa.Column("target", sa.Text, nullable=False),  # URL or address
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", Epoch, nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "rule_id",
        BigId,
        sa.ForeignKey("notification_rules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("run_id", BigId, nullable=False),
    sa.Column("event", sa.String(30), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending, sent, failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Epoch, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("sent_at", Epoch, nullable=True),
    sa.UniqueConstraint("rule_id", "run_id"),
)
sa.Index("ix_notifications_pending", notifications.c.status, notifications.c.next_attempt_at)

# Progress markers of background loops that must survive restarts (e.g. up to which
# finish time runs were checked for notifications).
cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", Epoch, nullable=False),
)

# The inventory: hosts a job may run its work on, selected by tag.
targets = sa.Table(
    "targets",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False, server_default="22"),
    sa.Column("driver", sa.String(20), nullable=False, server_default="ssh"),
    sa.Column("tags", Json, nullable=False),  # a list of strings
    sa.Column("vars", Json, nullable=False),  # free-form object
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    # host_key: pinned by the operator; known_host_key: recorded on the first successful
    # connection (trust on first use) and checked on every later one.
    sa.Column("host_key", sa.Text, nullable=True),
    sa.Column("known_host_key", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
)

# Credentials for targets: the secret part (password, or private key and passphrase) is
# one Fernet token of a JSON object in ``secret``; the rest is readable.
credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # password or key
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="100"),
    sa.Column("tags", Json, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("last_used_at", Epoch, nullable=True),
    sa.Column("successes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
)

# One row per target of a run (and step, '' for a script or package): what happened
# there. Names are copied: the row outlives changes to the inventory.
run_targets = sa.Table(
    "run_targets",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", BigId, nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("target_id", BigId, nullable=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("credential", sa.String(200), nullable=True),
    sa.Column("credentials_tried", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", Epoch, nullable=True),
    sa.Column("finished_at", Epoch, nullable=True),
    sa.Column("exit_status", sa.Integer, nullable=True),
    sa.Column("output", sa.Text, nullable=True),  # a summary: the last lines
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(40), nullable=True),
    sa.UniqueConstraint("run_id", "step_id", "target"),
)

# People who sign in to the web UI. ``password_hash`` is argon2id; NULL means the user
# signs in only with a one-time link (the local admin made on first start).
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("last_sign_in_at", Epoch, nullable=True),
)

# API tokens: only the SHA-256 of the token is kept (a token is 256 random bits, so a
# fast hash is enough); ``prefix`` is its first characters, to tell tokens apart.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=True),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("last_used_at", Epoch, nullable=True),
    sa.Column("revoked_at", Epoch, nullable=True),
)

# Browser sessions and one-time sign-in links, by the SHA-256 of their secret.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", BigId, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # session or link
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("expires_at", Epoch, nullable=False),
)

# Security-relevant actions, kept for admins: who did what to what, and when.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Epoch, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False, server_default=""),
    sa.Column("detail", Json, nullable=False),
    sa.Column("address", sa.String(100), nullable=True),
)
