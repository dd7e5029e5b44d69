"""Jobs: create and change them, deploy package versions, and start their runs."""

from __future__ import annotations

import builtins
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from sqlalchemy import Connection

from runwright.artifacts.base import ArtifactStore
from runwright.artifacts.keys import package_key
from runwright.artifacts.package import (
    BuiltPackage,
    build_from_files,
    inspect_package,
    read_package_files,
)
from runwright.db.jobs import JobRepository
from runwright.errors import Conflict, InvalidRequest, NotFound, RunwrightError
from runwright.model.manifest import MANIFEST_NAME, STEPS_NAME, check_environment
from runwright.model.params import ParameterSpec, parse_specs, validate_params
from runwright.model.runs import Job, Package, Run, SubmitRequest
from runwright.model.steps import parse_definition
from runwright.model.targets import override
from runwright.services.runs import RunService

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KINDS = ("task", "script", "package", "steps")
CONCURRENCY = ("allow", "skip", "queue")
CODE_KINDS = ("script", "package", "steps")


class Skipped(Conflict):
    """A trigger skipped by the job's concurrency policy (``skip``)."""

    def __init__(self, message: str, *, active_run: int) -> None:
        super().__init__(message)
        self.active_run = active_run


def kind_for(current: str, manifest: dict[str, Any]) -> str:
    """A package with a job.yaml makes a steps job; other code keeps script or package."""
    if manifest.get("steps") is not None:
        return "steps"
    return "script" if current == "script" else "package"


def check_job_name(name: str) -> str:
    if not JOB_NAME.match(name):
        raise InvalidRequest(
            f"Job name {name!r} is not valid: use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSettings:
    """Fields of a job a caller may set; None means 'leave as is' (or the default)."""

    kind: str | None = None
    description: str | None = None
    task_type: str | None = None
    queue: str | None = None
    priority: int | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    parameters: list[dict[str, Any]] | None = None
    enabled: bool | None = None
    concurrency: str | None = None

    def values(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    params: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    environment: str | None = None
    queue: str | None = None
    priority: int | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    scheduled_at: float | None = None
    trigger: str = "api"
    trigger_id: int | None = None
    fired_at: float | None = None
    webhook: dict[str, Any] | None = None  # payload, query_params, headers of the call
    targets: dict[str, Any] | None = None  # tags / max_parallel over the job's own


@dataclass(frozen=True, slots=True)
class Deployed:
    job: Job
    package: Package
    created: bool  # a new version (False: this content was deployed before)
    uploaded: bool  # bytes sent to the artifact store (False: already there)


class JobService:
    def __init__(self, *, jobs: JobRepository, runs: RunService, store: ArtifactStore) -> None:
        self._jobs = jobs
        self._runs = runs
        self._store = store
        # Bumped by every change to a job in this process: callers that cache jobs
        # (webhook calls) compare it to know their copy is stale.
        self.generation = 0

    # -- jobs ----------------------------------------------------------------------
    def get(self, name: str) -> Job:
        job = self._jobs.get(name)
        if job is None:
            raise NotFound(f"Job {name!r} does not exist; list jobs with `runwright job list`.")
        return job

    def list(self, *, kinds: tuple[str, ...] = (), archived: bool = False) -> builtins.list[Job]:
        return self._jobs.list(kinds=kinds, archived=archived)

    def last_statuses(self, jobs: builtins.list[Job]) -> dict[int, tuple[str, str | None]]:
        return self._jobs.last_runs([job.id for job in jobs])

    def create(self, name: str, settings: JobSettings) -> Job:
        check_job_name(name)
        values = settings.values()
        kind = values.setdefault("kind", "package")
        self._check(values)
        if kind == "task" and not values.get("task_type"):
            raise InvalidRequest("A task job needs task_type: the registered @task type it runs.")
        job = self._jobs.create(name, values)
        if job is None:
            raise Conflict(f"Job {name!r} already exists; change it with `runwright job update`.")
        return job

    def update(self, name: str, settings: JobSettings) -> Job:
        values = settings.values()
        current = self.get(name)
        if "kind" in values and values["kind"] != current.kind:
            raise Conflict(
                f"Job {name!r} is a {current.kind} job; its kind cannot change. Create a new job."
            )
        self._check(values)
        job = self._jobs.update(name, values)
        self.generation += 1
        if job is None:
            raise NotFound(f"Job {name!r} does not exist.")
        return job

    def archive(self, name: str) -> Job:
        """Hide a job from lists and triggers; its runs and packages stay."""
        self.get(name)
        job = self._jobs.update(name, {"archived": True})
        self.generation += 1
        assert job is not None
        return job

    def _check(self, values: dict[str, Any]) -> None:
        if "kind" in values and values["kind"] not in KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}.")
        if "max_attempts" in values and not 1 <= values["max_attempts"] <= 1000:
            raise InvalidRequest("max_attempts must be between 1 and 1000.")
        if "timeout" in values and values["timeout"] <= 0:
            raise InvalidRequest("timeout must be a positive number of seconds.")
        if "queue" in values and not 1 <= len(values["queue"]) <= 100:
            raise InvalidRequest("queue must be 1 to 100 characters.")
        if "concurrency" in values and values["concurrency"] not in CONCURRENCY:
            raise InvalidRequest(
                f"concurrency must be one of {', '.join(CONCURRENCY)}: allow (runs overlap), "
                "skip (a trigger while a run is active is skipped) or queue (it waits)."
            )
        if "parameters" in values:
            specs = parse_specs(values["parameters"])
            values["parameters"] = [s.model_dump(exclude_none=True) for s in specs]

    # -- packages ------------------------------------------------------------------
    def deploy(
        self,
        name: str,
        data: bytes,
        *,
        kind: str = "package",
        description: str | None = None,
        created_by: str | None = None,
    ) -> Deployed:
        """Validate a package zip, store it once by content, and make it current."""
        check_job_name(name)
        manifest = inspect_package(data)
        sha256 = hashlib.sha256(data).hexdigest()
        job = self._jobs.get(name)
        if job is None:
            job = self._jobs.create(
                name,
                {
                    "kind": kind,
                    "description": description or manifest.description,
                    "parameters": [],
                },
            ) or self.get(name)
        if job.kind not in CODE_KINDS:
            raise Conflict(f"Job {name!r} is a {job.kind} job; it does not take packages.")
        if job.kind == "script" and manifest.is_steps:
            raise Conflict(
                f"Job {name!r} is a script job; deploy the multi-step package under another name."
            )
        if job.archived:
            raise Conflict(f"Job {name!r} is archived; create a job with another name.")
        key = package_key(job.id, sha256)
        uploaded = False
        if not self._store.exists(key):
            self._store.put(key, data)
            uploaded = True
        package, created = self._jobs.add_package(
            job.id,
            sha256=sha256,
            size=len(data),
            storage_key=key,
            manifest=manifest.to_json(),
            created_by=created_by,
        )
        changes: dict[str, Any] = {}
        if description is not None and description != job.description:
            changes["description"] = description
        if created and kind_for(job.kind, package.manifest) != job.kind:
            changes["kind"] = kind_for(job.kind, package.manifest)
        if changes:
            self._jobs.update(name, changes)
        self.generation += 1
        return Deployed(job=self.get(name), package=package, created=created, uploaded=uploaded)

    def deploy_built(
        self, name: str, built: BuiltPackage, *, created_by: str | None = None
    ) -> Deployed:
        return self.deploy(name, built.data, created_by=created_by)

    def packages(self, name: str) -> builtins.list[Package]:
        return self._jobs.packages(self.get(name).id)

    def current_package(self, job: Job) -> Package | None:
        if job.current_package_id is None:
            return None
        return self._jobs.package(job.current_package_id)

    def activate(self, name: str, version: int) -> Job:
        """Make an earlier (or later) version current again."""
        job = self.get(name)
        package = self._jobs.package_version(job.id, version)
        if package is None:
            known = ", ".join(f"v{p.version}" for p in self._jobs.packages(job.id)) or "none"
            raise NotFound(f"Job {name!r} has no version v{version}; versions: {known}.")
        self._jobs.set_current(job.id, package.id)
        self.generation += 1
        if kind_for(job.kind, package.manifest) != job.kind:
            self._jobs.update(name, {"kind": kind_for(job.kind, package.manifest)})
        return self.get(name)

    def deploy_steps(
        self, name: str, definition: dict[str, Any], *, created_by: str | None = None
    ) -> Deployed:
        """A steps definition given as JSON: it becomes the job.yaml of a new version.
        The other files of the current version (python modules for python steps, a
        runwright.toml with requirements) are kept."""
        check_job_name(name)
        parse_definition(definition, source="the definition")
        files: dict[str, tuple[bytes, bool]] = {}
        job = self._jobs.get(name)
        current = self.current_package(job) if job is not None else None
        if current is not None and job is not None and job.kind in ("steps", "package"):
            files = read_package_files(self._store.get(current.storage_key))
        text = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True)
        files[STEPS_NAME] = (text.encode("utf-8"), False)
        toml = files.get(MANIFEST_NAME)
        if toml is not None and b"entrypoint" in toml[0]:
            del files[MANIFEST_NAME]  # the old package's entry point gives way to the steps
        built = build_from_files([(path, data, ex) for path, (data, ex) in files.items()])
        return self.deploy(name, built.data, kind="steps", created_by=created_by)

    # -- runs ----------------------------------------------------------------------
    def run(self, name: str, options: RunOptions) -> Run:
        """Start a run; None-free: raises Skipped when the job's concurrency policy
        is ``skip`` and a run of it is active."""
        job = self.get(name)
        if job.archived:
            raise Conflict(f"Job {name!r} is archived; it cannot run.")
        if not job.enabled:
            raise Conflict(f"Job {name!r} is disabled; enable it with `runwright job update`.")
        if options.idempotency_key:
            # A repeated trigger gets its first run back, whatever the policies say now.
            existing = self._runs.by_idempotency_key(options.idempotency_key)
            if existing is not None:
                return existing
        request = self.prepare(job, options)
        if job.concurrency != "allow":
            active = self._jobs.active_run(job.id)
            if active is not None and job.concurrency == "skip":
                raise Skipped(
                    f"Job {name!r} already has run {active} active and its concurrency is "
                    f"'skip'; this trigger was skipped. Set concurrency to 'queue' or 'allow' "
                    "to change that.",
                    active_run=active,
                )
            request = replace(request, held=job.concurrency == "queue")
        submitted = self._runs.submit(request, check_type=False)
        if submitted.created:
            self._jobs.record_run(job.id, submitted.run.id)
        return submitted.run

    def by_ids(self, job_ids: builtins.list[int]) -> dict[int, Job]:
        return self._jobs.by_ids(job_ids)

    def run_batch(
        self, job: Job, batch: builtins.list[RunOptions]
    ) -> builtins.list[int | RunwrightError]:
        """Start many runs of one job in one transaction: for triggers that fire
        together (a scheduler pass). Every option needs an idempotency key; the job's
        concurrency must be ``allow``. Returns, per option, the run id or the error."""
        if job.concurrency != "allow" or not job.enabled or job.archived:
            raise Conflict(f"Job {job.name!r} cannot take a batch of runs now.")
        outcomes: builtins.list[int | RunwrightError] = []
        requests: builtins.list[SubmitRequest] = []
        where: builtins.list[int] = []
        specs = parse_specs(job.parameters)
        package = self.current_package(job) if job.kind != "task" else None
        for options in batch:
            try:
                requests.append(self.prepare(job, options, package=package, specs=specs))
                where.append(len(outcomes))
                outcomes.append(0)
            except RunwrightError as exc:
                outcomes.append(exc)
        if not requests:
            return outcomes
        submitted = self._runs.submit_keyed(requests)
        created = [run_id for run_id, new in submitted.values() if new]
        for index, request in zip(where, requests, strict=True):
            assert request.idempotency_key is not None
            outcomes[index] = submitted[request.idempotency_key][0]
        if created:
            self._jobs.record_runs(job.id, len(created), max(created))
        return outcomes

    def prepare(
        self,
        job: Job,
        options: RunOptions,
        *,
        package: Package | None = None,
        specs: builtins.list[ParameterSpec] | None = None,
    ) -> SubmitRequest:
        """The run a trigger asks for, checked (environment, parameters, code) but not
        yet stored. ``package`` and ``specs`` may come from a caller's cache."""
        environment = check_environment(options.environment) if options.environment else None
        if specs is None:
            specs = parse_specs(job.parameters)
        params = validate_params(specs, options.params, job=job.name)
        options = replace(options, params=params)
        payload, package = self._payload(job, options, environment, package)
        kind = kind_for(job.kind, package.manifest) if package is not None else job.kind
        request = SubmitRequest(
            type=job.task_type if job.kind == "task" and job.task_type else kind,
            payload=payload,
            queue=options.queue or job.queue,
            priority=options.priority if options.priority is not None else job.priority,
            max_attempts=options.max_attempts or job.max_attempts,
            timeout=options.timeout or job.timeout,
            idempotency_key=options.idempotency_key,
            scheduled_at=options.scheduled_at,
            job=job.name,
            job_id=job.id,
            package_id=package.id if package else None,
            environment=environment,
            trigger=options.trigger,
            trigger_id=options.trigger_id,
            fired_at=options.fired_at,
        )
        return self._runs.checked(request, check_type=job.kind == "task")

    def start_on(
        self, conn: Connection, requests: builtins.list[SubmitRequest]
    ) -> builtins.list[Run]:
        """Store ``prepare``d runs on the caller's transaction; then ``count_on`` them,
        last (it locks their jobs' rows until the commit), and call ``started`` once
        the transaction has committed."""
        return self._runs.insert_on(conn, requests)

    def count_on(self, conn: Connection, stored: builtins.list[Run]) -> None:
        """Count runs stored by ``start_on`` against their jobs."""
        per_job: dict[int, builtins.list[int]] = {}
        for run in stored:
            if run.job_id is not None:
                per_job.setdefault(run.job_id, []).append(run.id)
        for job_id in sorted(per_job):  # one order for every transaction: no deadlock
            ids = per_job[job_id]
            self._jobs.record_runs(job_id, len(ids), max(ids), conn)

    def started(self) -> None:
        """Wake this process's workers for runs stored by ``start_on``."""
        self._runs.wake()

    def _payload(
        self,
        job: Job,
        options: RunOptions,
        environment: str | None,
        package: Package | None = None,
    ) -> tuple[Any, Package | None]:
        if job.kind == "task":
            return options.params, None
        package = package or self.current_package(job)
        if package is None:
            raise Conflict(
                f"Job {job.name!r} has no code yet; deploy it with `runwright deploy DIR "
                f"--job {job.name}` or upload a script."
            )
        declared = package.manifest.get("environments") or []
        if environment and declared and environment not in declared:
            raise InvalidRequest(
                f"Job {job.name!r} v{package.version} has no configuration for environment "
                f"{environment!r}; it has: {', '.join(declared)} (config.<env>.json files)."
            )
        payload = {
            "job": job.name,
            "job_id": job.id,
            "package_id": package.id,
            "version": package.version,
            "sha256": package.sha256,
            "storage_key": package.storage_key,
            "manifest": package.manifest,
            "params": options.params,
            "args": options.args,
            "environment": environment,
        }
        if options.webhook is not None:
            payload["webhook"] = options.webhook
        if options.targets:
            payload["targets"] = self._targets_override(job, package, options.targets)
        return payload, package

    def _targets_override(
        self, job: Job, package: Package, given: dict[str, Any]
    ) -> dict[str, Any]:
        steps = (package.manifest.get("steps") or {}).get("steps") or []
        on_targets = package.manifest.get("targets") is not None or any(
            isinstance(s, dict) and s.get("targets") for s in steps
        )
        if not on_targets:
            raise InvalidRequest(
                f"Job {job.name!r} v{package.version} does not run on targets: declare "
                "`targets = {tags = [...]}` in its runwright.toml (a script: in "
                "[tool.runwright] of its `# /// script` block), or `targets:` on a step."
            )
        try:
            override(None, {"tags": ["placeholder"], **given})
        except ValueError as exc:
            raise InvalidRequest(f"targets are not valid: {exc}") from exc
        return dict(given)
