"""Everything a process needs, built once from settings and passed explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from runwright.artifacts import open_store
from runwright.artifacts.base import ArtifactStore
from runwright.config import Settings
from runwright.db.auth import AuthRepository
from runwright.db.engine import create_engine
from runwright.db.jobs import JobRepository
from runwright.db.logs import LogRepository
from runwright.db.notify import Waker
from runwright.db.run_targets import RunTargetRepository
from runwright.db.runs import RunRepository
from runwright.db.schedules import ScheduleRepository
from runwright.db.schema import ensure_schema
from runwright.db.steps import RunStepRepository
from runwright.db.targets import CredentialRepository, TargetRepository
from runwright.db.variables import VariableRepository
from runwright.db.workers import WorkerRegistry
from runwright.model.retry import RetryPolicy
from runwright.services.auth import AuthService
from runwright.services.contexts import ContextStore
from runwright.services.credentials import CredentialService
from runwright.services.jobs import JobService
from runwright.services.notifications import NotificationService
from runwright.services.runs import RunService
from runwright.services.schedules import ScheduleService
from runwright.services.scripts import ScriptService
from runwright.services.secrets import SecretBox
from runwright.services.targets import TargetService
from runwright.services.variables import VariableService
from runwright.services.webhooks import WebhookService
from runwright.worker.logsink import LogSink
from runwright.worker.registry import (
    TaskRegistry,
    TaskSpec,
    default_registry,
    import_task_modules,
)
from runwright.worker.worker import Worker, WorkerOptions


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    registry: TaskRegistry
    waker: Waker
    runs: RunService
    store: ArtifactStore
    jobs: JobService
    scripts: ScriptService
    logs: LogRepository
    variables: VariableService
    steps: RunStepRepository
    run_targets: RunTargetRepository
    contexts: ContextStore
    schedules: ScheduleService
    webhooks: WebhookService
    notifications: NotificationService
    targets: TargetService
    credentials: CredentialService
    auth: AuthService
    _sinks: list[LogSink] = field(default_factory=list)
    _engines: list[Engine] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        create_schema: bool = False,
        registry: TaskRegistry | None = None,
    ) -> Runtime:
        settings.home.mkdir(parents=True, exist_ok=True)
        registry = registry or default_registry
        import_task_modules(settings.tasks)
        store = open_store(settings)
        engine = create_engine(settings.effective_database_url)
        try:
            ensure_schema(engine, create_if_empty=create_schema)
        except Exception:
            engine.dispose()
            raise
        waker = Waker()
        workers = WorkerRegistry(engine)
        if registry.names():
            workers.record_task_types(registry.names())
        runs = RunService(
            runs=RunRepository(engine),
            workers=workers,
            registry=registry,
            waker=waker,
            lease_timeout=settings.lease_timeout,
        )
        job_repository = JobRepository(engine)
        jobs = JobService(jobs=job_repository, runs=runs, store=store)
        box = SecretBox.from_settings(settings)
        variables = VariableService(
            variables=VariableRepository(engine), jobs=job_repository, box=box
        )
        return cls(
            settings=settings,
            engine=engine,
            registry=registry,
            waker=waker,
            runs=runs,
            store=store,
            jobs=jobs,
            scripts=ScriptService(jobs=jobs, settings=settings),
            logs=LogRepository(engine),
            variables=variables,
            steps=RunStepRepository(engine),
            run_targets=RunTargetRepository(engine),
            contexts=ContextStore(store),
            schedules=ScheduleService(
                schedules=ScheduleRepository(engine),
                jobs=jobs,
                misfire_grace=settings.schedule_misfire_grace,
            ),
            webhooks=WebhookService(
                engine=engine, jobs=jobs, box=box, max_body=settings.webhook_max_bytes
            ),
            notifications=NotificationService(engine=engine, jobs=jobs, settings=settings),
            targets=TargetService(targets=TargetRepository(engine)),
            credentials=CredentialService(credentials=CredentialRepository(engine), box=box),
            auth=AuthService(repository=AuthRepository(engine)),
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(base=self.settings.retry_base, cap=self.settings.retry_cap)

    def worker(
        self,
        *,
        concurrency: int,
        queues: tuple[str, ...] = ("default",),
        in_process: bool = False,
        exit_process: Callable[[], None] | None = None,
    ) -> Worker:
        from runwright.worker.code import CODE_TYPES, CodeExecutor
        from runwright.worker.targets.dispatch import TargetAccess

        s = self.settings
        options = WorkerOptions(
            queues=queues,
            concurrency=concurrency,
            heartbeat_interval=s.heartbeat_interval,
            lease_timeout=s.lease_timeout,
            poll_interval=s.poll_interval,
            shutdown_grace=s.shutdown_grace,
            retry=self.retry_policy(),
            # A job's process gets SIGTERM, then SIGKILL after the kill grace.
            end_grace=s.job_kill_grace + 2.0,
        )
        sink = LogSink(self.logs)
        self._sinks.append(sink)
        executor = CodeExecutor(
            settings=s,
            store=self.store,
            logs=self.logs,
            sink=sink,
            steps=self.steps,
            variables=self.variables.resolve,
            targets=TargetAccess(
                inventory=self.targets, keyring=self.credentials, records=self.run_targets
            ),
        )
        builtins = [
            TaskSpec(name=name, func=executor, description=f"{name} jobs") for name in CODE_TYPES
        ]
        return Worker(
            engine=self._worker_engine(),
            database_url=s.effective_database_url,
            registry=self.registry.with_builtins(builtins),
            options=options,
            waker=self.waker if in_process else None,
            exit_process=exit_process,
        )

    def _worker_engine(self) -> Engine:
        """The queue's hot path gets its own connections (asynchronous commit on
        PostgreSQL); SQLite has one writer anyway and shares the engine."""
        if self.engine.dialect.name != "postgresql":
            return self.engine
        engine = create_engine(self.settings.effective_database_url, worker=True)
        self._engines.append(engine)
        return engine

    def close(self) -> None:
        self.webhooks.close()
        for sink in self._sinks:
            sink.close()
        for engine in self._engines:
            engine.dispose()
        self.engine.dispose()
