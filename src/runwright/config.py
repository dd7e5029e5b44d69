"""Typed settings: the only place runwright reads its environment.

Every value comes from a ``RUNWRIGHT_*`` environment variable or its default;
the CLI overrides individual values with ``Settings.with_overrides``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_FIELDS = frozenset({"secret_key", "s3_secret_access_key", "smtp_password"})


def _default_home() -> Path:
    return Path.home() / ".runwright"


class Settings(BaseSettings):
    """Effective configuration of one runwright process."""

    model_config = SettingsConfigDict(env_prefix="RUNWRIGHT_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data folder.")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means a SQLite file in the home folder."
    )
    storage_url: str = Field(
        default="", description="Artifact store; empty means the 'artifacts' folder in the home."
    )
    tasks: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Python modules imported at start to register @task types."
    )
    heartbeat_interval: float = Field(default=5.0, gt=0, description="Seconds between heartbeats.")
    lease_timeout: float = Field(
        default=30.0, gt=0, description="Seconds without a heartbeat before a run is recovered."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="Longest wait between two claims when no wake-up arrives."
    )
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds a stopping worker lets running runs finish."
    )
    target_connect_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds to connect and log in to a target before it counts as timed out.",
    )
    target_connect_retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Connection attempts repeated after a refused or unreachable target "
        "(not after a refused credential: the next candidate is tried instead).",
    )
    scheduler_interval: float = Field(
        default=0.25, gt=0, le=60, description="Seconds between two passes of the scheduler."
    )
    schedule_misfire_grace: float = Field(
        default=60.0,
        ge=0,
        description="Seconds a fire time may be late and still run; older ones are misfires.",
    )
    webhook_max_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest webhook request body."
    )
    notify_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Hosts or networks outgoing notifications may reach although private.",
    )
    smtp_host: str = Field(default="", description="SMTP server for e-mail notifications.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.")
    smtp_username: str = Field(default="", description="SMTP user (empty: no login).")
    smtp_password: str = Field(default="", description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Use STARTTLS.")
    smtp_from: str = Field(default="runwright@localhost", description="Sender address.")
    retry_base: float = Field(default=1.0, ge=0, description="First retry delay in seconds.")
    retry_cap: float = Field(default=300.0, ge=0, description="Longest retry delay in seconds.")
    url: str = Field(default="", description="Server address used by the CLI and Client.")
    token: str = Field(default="", description="API token used by the CLI and Client.")
    secret_key: str = Field(default="", description="Key for secrets at rest.")
    s3_endpoint_url: str = Field(
        default="", description="S3 API address (MinIO, ...); empty means AWS S3."
    )
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_access_key_id: str = Field(
        default="", description="S3 access key id; empty means boto3's credential chain."
    )
    s3_secret_access_key: str = Field(default="", description="S3 secret key.")
    script_max_bytes: int = Field(
        default=5 * 1024 * 1024, gt=0, description="Largest script upload, in bytes."
    )
    script_name_pattern: str = Field(
        default="", description="Regular expression uploaded script file names must match."
    )
    job_memory_mb: int = Field(
        default=2048, ge=0, description="Address-space limit of a job's process (0: none)."
    )
    job_cpu_seconds: int = Field(default=0, ge=0, description="CPU-time limit (0: none).")
    job_file_mb: int = Field(
        default=1024, ge=0, description="Largest file a job may write, in MB (0: none)."
    )
    job_processes: int = Field(
        default=256, ge=0, description="Processes a job may start (0: no limit)."
    )
    job_kill_grace: float = Field(
        default=5.0, ge=0, description="Seconds between SIGTERM and SIGKILL when stopping a job."
    )
    job_env_passthrough: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE"),
        description="Host environment variables a job's process inherits.",
    )
    find_links: str = Field(
        default="", description="Extra folder or URL of wheels for job requirements (uv)."
    )
    offline: bool = Field(
        default=False, description="Install job requirements without contacting an index."
    )

    @field_validator("tasks", "job_env_passthrough", "notify_allow", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'runwright.db'}"

    @property
    def effective_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.home / "artifacts").as_uri()

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the given non-None values replaced (CLI options)."""
        changes = {key: value for key, value in values.items() if value is not None}
        data = self.model_dump()
        data.update(changes)
        return Settings.model_validate(data)

    def describe(self) -> dict[str, str]:
        """Effective values for display, secrets masked."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                value = mask_url_password(self.effective_database_url)
            elif name == "storage_url":
                value = self.effective_storage_url
            elif name in SECRET_FIELDS or name == "token":
                value = "****" if value else "(not set)"
            elif isinstance(value, tuple):
                value = ",".join(value)
            shown[name] = str(value)
        return shown


def mask_url_password(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:****@h/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    if ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:****@{host}"
