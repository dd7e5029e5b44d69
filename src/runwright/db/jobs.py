"""Jobs and their immutable package versions."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from runwright.db.engine import db_now, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import jobs, packages, runs
from runwright.errors import DatabaseConflict
from runwright.model.runs import Job, Package


def row_to_job(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        name=row.name,
        kind=row.kind,
        description=row.description,
        task_type=row.task_type,
        queue=row.queue,
        priority=row.priority,
        timeout=row.timeout,
        max_attempts=row.max_attempts,
        parameters=list(row.parameters or []),
        enabled=bool(row.enabled),
        archived=bool(row.archived),
        concurrency=row.concurrency,
        current_package_id=row.current_package_id,
        total_runs=row.total_runs,
        last_run_id=row.last_run_id,
        last_run_at=row.last_run_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def row_to_package(row: Row[Any]) -> Package:
    return Package(
        id=row.id,
        job_id=row.job_id,
        version=row.version,
        sha256=row.sha256,
        size=row.size,
        storage_key=row.storage_key,
        manifest=dict(row.manifest),
        created_at=row.created_at,
        created_by=row.created_by,
    )


JOB_FIELDS = (
    "kind",
    "description",
    "task_type",
    "queue",
    "priority",
    "timeout",
    "max_attempts",
    "parameters",
    "enabled",
    "archived",
    "concurrency",
)


class JobRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._now = db_now(engine)

    def get(self, name: str) -> Job | None:
        with translate_errors("read a job"), read(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.name == name)).first()
        return None if row is None else row_to_job(row)

    def get_by_id(self, job_id: int) -> Job | None:
        with translate_errors("read a job"), read(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else row_to_job(row)

    def list(self, *, kinds: tuple[str, ...] = (), archived: bool = False) -> builtins.list[Job]:
        statement = sa.select(jobs).where(jobs.c.archived == archived).order_by(jobs.c.name)
        if kinds:
            statement = statement.where(jobs.c.kind.in_(kinds))
        with translate_errors("list jobs"), read(self.engine) as conn:
            return [row_to_job(row) for row in conn.execute(statement)]

    def create(self, name: str, values: dict[str, Any]) -> Job | None:
        """Insert a job; None when the name is taken (the unique index decides)."""
        data = {key: values[key] for key in JOB_FIELDS if key in values}
        data.setdefault("parameters", [])
        statement = (
            sa.insert(jobs)
            .values(name=name, created_at=self._now, updated_at=self._now, **data)
            .returning(jobs)
        )
        try:
            with translate_errors("create a job"), write(self.engine) as conn:
                row = conn.execute(statement).one()
        except DatabaseConflict:  # the name is taken (translate_errors turned it into this)
            return None
        return row_to_job(row)

    def update(self, name: str, values: dict[str, Any]) -> Job | None:
        data = {key: values[key] for key in JOB_FIELDS if key in values}
        statement = (
            sa.update(jobs)
            .where(jobs.c.name == name)
            .values(updated_at=self._now, **data)
            .returning(jobs)
        )
        with translate_errors("update a job"), write(self.engine) as conn:
            row = conn.execute(statement).first()
        return None if row is None else row_to_job(row)

    # -- packages ----------------------------------------------------------------
    def add_package(
        self,
        job_id: int,
        *,
        sha256: str,
        size: int,
        storage_key: str,
        manifest: dict[str, Any],
        created_by: str | None,
        make_current: bool = True,
    ) -> tuple[Package, bool]:
        """Record a package version (or find the one with the same content).

        Returns ``(package, created)``; the job's current package is updated either way
        when ``make_current``.
        """
        with translate_errors("record a package"), write(self.engine) as conn:
            existing = conn.execute(
                sa.select(packages).where(packages.c.job_id == job_id, packages.c.sha256 == sha256)
            ).first()
            created = existing is None
            if existing is None:
                version = conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(packages.c.version), 0) + 1).where(
                        packages.c.job_id == job_id
                    )
                ).scalar_one()
                row = conn.execute(
                    sa.insert(packages)
                    .values(
                        job_id=job_id,
                        version=version,
                        sha256=sha256,
                        size=size,
                        storage_key=storage_key,
                        manifest=manifest,
                        created_at=self._now,
                        created_by=created_by,
                    )
                    .returning(packages)
                ).one()
            else:
                row = existing
            if make_current:
                self._set_current(conn, job_id, row.id)
        return row_to_package(row), created

    def _set_current(self, conn: Connection, job_id: int, package_id: int) -> None:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(current_package_id=package_id, updated_at=self._now)
        )

    def set_current(self, job_id: int, package_id: int) -> None:
        with translate_errors("change the current package"), write(self.engine) as conn:
            self._set_current(conn, job_id, package_id)

    def packages(self, job_id: int) -> builtins.list[Package]:
        statement = (
            sa.select(packages)
            .where(packages.c.job_id == job_id)
            .order_by(packages.c.version.desc())
        )
        with translate_errors("list packages"), read(self.engine) as conn:
            return [row_to_package(row) for row in conn.execute(statement)]

    def package(self, package_id: int) -> Package | None:
        with translate_errors("read a package"), read(self.engine) as conn:
            row = conn.execute(sa.select(packages).where(packages.c.id == package_id)).first()
        return None if row is None else row_to_package(row)

    def package_version(self, job_id: int, version: int) -> Package | None:
        with translate_errors("read a package"), read(self.engine) as conn:
            row = conn.execute(
                sa.select(packages).where(
                    packages.c.job_id == job_id, packages.c.version == version
                )
            ).first()
        return None if row is None else row_to_package(row)

    def record_run(self, job_id: int, run_id: int) -> None:
        """Count a run against its job (total runs, last run)."""
        with translate_errors("count a job's run"), write(self.engine) as conn:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    total_runs=jobs.c.total_runs + 1,
                    last_run_id=sa.func.greatest(sa.func.coalesce(jobs.c.last_run_id, 0), run_id)
                    if self.engine.dialect.name == "postgresql"
                    else sa.func.max(sa.func.coalesce(jobs.c.last_run_id, 0), run_id),
                    last_run_at=self._now,
                )
            )

    def by_ids(self, job_ids: builtins.list[int]) -> dict[int, Job]:
        with translate_errors("read jobs"), read(self.engine) as conn:
            rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(job_ids)))
            return {row.id: row_to_job(row) for row in rows}

    def record_runs(
        self, job_id: int, count: int, last_run_id: int, conn: sa.Connection | None = None
    ) -> None:
        """Count several new runs against their job at once (on ``conn``'s transaction
        when given)."""
        statement = (
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                total_runs=jobs.c.total_runs + count,
                last_run_id=self._higher(jobs.c.last_run_id, last_run_id),
                last_run_at=self._now,
            )
        )
        if conn is not None:
            conn.execute(statement)
            return
        with translate_errors("count a job's runs"), write(self.engine) as own:
            own.execute(statement)

    def _higher(self, column: Any, value: int) -> Any:
        current = sa.func.coalesce(column, 0)
        if self.engine.dialect.name == "postgresql":
            return sa.func.greatest(current, value)
        return sa.func.max(current, value)

    def active_run(self, job_id: int) -> int | None:
        """The oldest queued or running run of a job, if any."""
        query = (
            sa.select(sa.func.min(runs.c.id))
            .where(runs.c.job_id == job_id, runs.c.finished_at.is_(None))
            .where(runs.c.status.in_(["queued", "running"]))
        )
        with translate_errors("look for a job's active run"), read(self.engine) as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def last_runs(self, job_ids: builtins.list[int]) -> dict[int, tuple[str, str | None]]:
        """(status, outcome) of each job's last run."""
        if not job_ids:
            return {}
        latest = (
            sa.select(runs.c.job_id, sa.func.max(runs.c.id).label("id"))
            .where(runs.c.job_id.in_(job_ids))
            .group_by(runs.c.job_id)
            .subquery()
        )
        statement = sa.select(runs.c.job_id, runs.c.status, runs.c.outcome).join(
            latest, latest.c.id == runs.c.id
        )
        with translate_errors("read last runs"), read(self.engine) as conn:
            return {row.job_id: (row.status, row.outcome) for row in conn.execute(statement)}
