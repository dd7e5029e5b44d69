"""The executor of script and package jobs: fetch the package by hash, extract it
safely, prepare its environment, run its entry point in a sandboxed subprocess, and
capture every output line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwright.artifacts.base import ArtifactStore
from runwright.artifacts.keys import log_key
from runwright.artifacts.package import safe_extract, sha256_of
from runwright.config import Settings
from runwright.db.logs import LogRepository
from runwright.db.steps import RunStepRepository
from runwright.errors import Cancelled, ExecutionFailed, InvalidRequest, StoreError
from runwright.model.context import mask_values
from runwright.model.logs import Level, LevelTracker, Masker, Stream
from runwright.model.manifest import Manifest, host_overrides, merge_config, secret_values
from runwright.model.runs import LogLine, clean_text
from runwright.model.states import Outcome, RunStatus
from runwright.model.steps import StepsDefinition
from runwright.model.targets import TargetSelector, override
from runwright.services.contexts import ContextStore
from runwright.services.variables import ResolvedVariables
from runwright.worker import process, venvs
from runwright.worker.context import TaskContext
from runwright.worker.execute import Finished
from runwright.worker.logsink import LogSink
from runwright.worker.steps.engine import StepsEngine, StepsRun
from runwright.worker.steps.pyhost import HostSpec
from runwright.worker.targets.dispatch import Dispatcher, ResolutionFailed, TargetAccess
from runwright.worker.targets.scripts import ProcessSpec, run_on_targets
from runwright.worker.targets.ssh import SshSettings

CODE_TYPES = ("script", "package", "steps")
SDK_SOURCE = Path(__file__).resolve().parent.parent / "sdk"
ERROR_TAIL = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRun:
    """What a script or package run's payload carries."""

    job: str
    job_id: int
    package_id: int
    version: int
    sha256: str
    storage_key: str
    manifest: Manifest
    params: dict[str, Any]
    args: list[str]
    environment: str | None
    webhook: dict[str, Any] | None = None
    targets: dict[str, Any] | None = None  # the run's choice of targets over the job's

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CodeRun:
        return cls(
            job=payload["job"],
            job_id=payload["job_id"],
            package_id=payload["package_id"],
            version=payload["version"],
            sha256=payload["sha256"],
            storage_key=payload["storage_key"],
            manifest=Manifest.from_json(payload["manifest"]),
            params=dict(payload.get("params") or {}),
            args=[str(a) for a in payload.get("args") or []],
            environment=payload.get("environment"),
            webhook=payload.get("webhook"),
            targets=payload.get("targets"),
        )


class _Output:
    """Numbered, classified, masked lines of one run, to the database and a file."""

    def __init__(
        self, run_id: int, sink: LogSink, masker: Masker, file: Path, first_seq: int = 0
    ) -> None:
        self.run_id = run_id
        self.seq = first_seq
        self.step: str | None = None  # the step of a multi-step run whose lines these are
        self._sink = sink
        self._mask: Callable[[str], str] = masker
        self._file = file.open("a", encoding="utf-8")
        self._levels = {Stream.STDOUT: LevelTracker(), Stream.STDERR: LevelTracker()}
        self.error_tail: list[str] = []
        self._lock = threading.Lock()  # stdout and stderr are read by two threads

    def line(
        self, stream: Stream, message: str, level: Level | None = None, target: str | None = None
    ) -> None:
        message = self._mask(clean_text(message))
        if level is None:
            level = self._levels[stream].level(message) if stream in self._levels else Level.INFO
        with self._lock:
            self._record(stream, message, level, target)

    def mask_also(self, secrets: Iterable[str]) -> None:
        """Mask these values too from now on (credentials unlocked during the run)."""
        extra = Masker(secrets)
        earlier = self._mask
        self._mask = lambda text: extra(earlier(text))

    def _record(self, stream: Stream, message: str, level: Level, target: str | None) -> None:
        self.seq += 1
        now = time.time()
        step = self.step
        self._sink.emit(
            LogLine(self.run_id, self.seq, now, stream.value, level.value, message, step, target)
        )
        where = "".join(f"[{part}] " for part in (step, target) if part)
        self._file.write(f"{now:.3f} {stream.value} {level.value} {where}{message}\n")
        if stream is Stream.STDERR or level is Level.ERROR:
            self.error_tail.append(message)
            if len(self.error_tail) > ERROR_TAIL:
                del self.error_tail[0]

    def system(self, message: str, level: Level = Level.INFO) -> None:
        self.line(Stream.SYSTEM, message, level)

    def close(self) -> None:
        self._file.close()


class CodeExecutor:
    """Registered for the task types ``script`` and ``package``."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: ArtifactStore,
        logs: LogRepository,
        sink: LogSink,
        steps: RunStepRepository,
        variables: Callable[[int], ResolvedVariables],
        targets: TargetAccess | None = None,
    ) -> None:
        self._settings = settings
        self._steps = steps
        self._variables = variables
        self._targets = targets
        self._contexts = ContextStore(store)
        self._store = store
        self._logs = logs
        self._sink = sink
        self._cache = settings.home / "cache"
        self._runs = settings.home / "runs"

    def __call__(self, ctx: TaskContext) -> Any:
        try:
            run = CodeRun.from_payload(ctx.payload)
        except (KeyError, TypeError) as exc:
            raise ExecutionFailed(
                f"Run {ctx.run_id} is not a job run (payload lacks {exc}); submit it with "
                "`runwright run JOB`.",
                outcome=Outcome.ERROR.value,
            ) from exc
        folder = self._runs / f"{ctx.run_id}-{ctx.attempt}"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            self._unpack(run, folder)
            private = folder / ".runwright"
            private.mkdir()
            config = self._config(run, folder)
            variables = self._variables(run.job_id) if run.manifest.is_steps else None
            secrets = secret_values(config) | (variables.secrets() if variables else set())
            masker = Masker(secrets)
            # A retried run's attempts share one log: number on from the last line, and
            # the full log saved at the end starts with the earlier attempts' lines.
            first = self._logs.last_seq(ctx.run_id)
            log_file = private / "log.txt"
            self._write_earlier_lines(ctx.run_id, first, log_file)
            output = _Output(ctx.run_id, self._sink, masker, log_file, first)
            state: dict[str, Any] = {}
            try:
                return self._execute(ctx, run, folder, config, output, state, variables)
            finally:
                output.close()
                self._finish(ctx, run, output, private / "log.txt", state.get("exit_code"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- steps ---------------------------------------------------------------------
    def _execute(
        self,
        ctx: TaskContext,
        run: CodeRun,
        folder: Path,
        config: dict[str, Any],
        output: _Output,
        state: dict[str, Any],
        variables: ResolvedVariables | None = None,
    ) -> Any:
        output.system(
            f"Job {run.job} v{run.version} ({run.sha256[:12]}), attempt {ctx.attempt} of "
            f"{ctx.max_attempts}" + (f", environment {run.environment}" if run.environment else "")
        )
        ctx.raise_if_cancelled()
        interpreter, built = venvs.ensure_venv(
            self._cache,
            run.manifest.requirements,
            run.manifest.python,
            log=output.system,
            find_links=self._settings.find_links,
            offline=self._settings.offline,
            passthrough=self._settings.job_env_passthrough,
        )
        output.system("Built the job environment" if built else "Using the cached job environment")
        ctx.raise_if_cancelled()
        context_file = folder / ".runwright" / "context.json"
        sdk_context = {
            "run_id": ctx.run_id,
            "job": run.job,
            "environment": run.environment,
            "params": run.params,
            "args": run.args,
            "webhook": run.webhook,
            "config": config,
        }
        context_file.write_text(json.dumps(sdk_context))
        sdk_path = self._prepare_sdk(folder / ".runwright" / "sdk")
        limits = process.ResourceLimits(
            memory_mb=self._settings.job_memory_mb,
            cpu_seconds=self._settings.job_cpu_seconds,
            file_mb=self._settings.job_file_mb,
            processes=self._settings.job_processes,
        )
        if run.manifest.steps is not None:
            env = self._job_environment(ctx, run, folder, sdk_path, context_file)
            # Shell steps find the job environment's python and tools first.
            env["PATH"] = f"{interpreter.parent}:{env['PATH']}"
            engine = StepsEngine(
                StepsRun(
                    ctx=ctx,
                    job=run.job,
                    job_id=run.job_id,
                    params=run.params,
                    webhook=run.webhook,
                    definition=StepsDefinition.model_validate(run.manifest.steps),
                    output=output,
                    store=self._store,
                    contexts=self._contexts,
                    steps=self._steps,
                    variables=variables or ResolvedVariables({}, frozenset()),
                    process=HostSpec(
                        command=[],
                        cwd=folder,
                        env=env,
                        limits=limits,
                        kill_grace=self._settings.job_kill_grace,
                        run_id=ctx.run_id,
                    ),
                    host_command=[str(interpreter), str(sdk_path / "_runwright_steps.py")],
                    dispatcher=self._dispatcher(ctx, output),
                    targets_override=run.targets,
                )
            )
            value = engine.execute()
            return value if engine.verdict is None else Finished(value, engine.verdict.outcome)
        command = [
            str(interpreter),
            str(sdk_path / "_runwright_entry.py"),
            run.manifest.entrypoint,
            *run.args,
        ]
        selector = self._selector(run)
        if selector is not None:
            return self._on_targets(
                ctx,
                selector,
                ProcessSpec(
                    command=command,
                    cwd=folder,
                    env=self._job_environment(ctx, run, folder, sdk_path, context_file),
                    limits=limits,
                    kill_grace=self._settings.job_kill_grace,
                    run_id=ctx.run_id,
                    context=sdk_context,
                ),
                output,
            )
        output.system(f"Starting {run.manifest.entrypoint} {' '.join(run.args)}".rstrip())
        result: dict[str, Any] = {}

        def on_message(message: dict[str, Any]) -> None:
            if message.get("type") == "progress":
                ctx.progress(message.get("percent"), message.get("message"))
            elif message.get("type") == "result":
                result["value"] = message.get("value")

        outcome = process.run_process(
            command,
            cwd=folder,
            env=self._job_environment(ctx, run, folder, sdk_path, context_file),
            limits=limits,
            on_line=output.line,
            on_message=on_message,
            should_stop=lambda: ctx.cancelled,
            run_id=ctx.run_id,
            kill_grace=self._settings.job_kill_grace,
        )
        state["exit_code"] = outcome.exit_code
        return self._judge(ctx, outcome, output, result)

    def _judge(
        self,
        ctx: TaskContext,
        outcome: process.ProcessOutcome,
        output: _Output,
        result: dict[str, Any],
    ) -> Any:
        took = f"after {outcome.runtime:.2f}s"
        if outcome.stopped:
            output.system(f"Stopped by runwright {took}", Level.WARNING)
            raise Cancelled("stopped")
        tail = "\n".join(output.error_tail[-10:])
        if outcome.signal is not None:
            name = signal.Signals(outcome.signal).name
            oom = outcome.signal == signal.SIGKILL
            output.system(f"Killed by {name} {took}", Level.ERROR)
            raise ExecutionFailed(
                f"The job's process was killed by {name} {took}"
                + (" (possibly out of memory)" if oom else "")
                + (f":\n{tail}" if tail else ""),
                outcome=Outcome.KILLED.value,
            )
        if outcome.exit_code:
            out_of_memory = "MemoryError" in tail
            output.system(f"Exited with code {outcome.exit_code} {took}", Level.ERROR)
            raise ExecutionFailed(
                (
                    f"The job ran out of memory (limit {self._settings.job_memory_mb} MB) and "
                    f"exited with code {outcome.exit_code}"
                    if out_of_memory
                    else f"The job exited with code {outcome.exit_code} {took}"
                )
                + (f":\n{tail}" if tail else ""),
                outcome=(Outcome.OUT_OF_MEMORY if out_of_memory else Outcome.ERROR).value,
                exit_code=outcome.exit_code,
            )
        output.system(f"Exited with code 0 {took}")
        return result.get("value")

    def _selector(self, run: CodeRun) -> TargetSelector | None:
        declared = run.manifest.targets
        try:
            return override(
                TargetSelector.model_validate(declared) if declared else None, run.targets
            )
        except ValueError as exc:
            raise ExecutionFailed(
                f"The run's targets are not valid: {exc}", outcome=Outcome.ERROR.value
            ) from exc

    def _on_targets(
        self, ctx: TaskContext, selector: TargetSelector, spec: ProcessSpec, output: _Output
    ) -> Finished:
        """The entry point once per target; the run's result lists every target."""
        dispatcher = self._dispatcher(ctx, output)
        if dispatcher is None:
            raise ExecutionFailed(
                "This worker cannot reach the target inventory; run the job on a worker "
                "started with `runwright worker`.",
                outcome=Outcome.FAILED_UNEXPECTED.value,
            )
        output.system(
            f"Starting {' '.join(spec.command[2:])} on targets tagged "
            f"{', '.join(selector.tags)}, at most {selector.max_parallel} at a time"
        )
        try:
            dispatched = run_on_targets(
                dispatcher,
                selector,
                spec,
                line=lambda stream, text, target: output.line(stream, text, target=target),
                progress=ctx.progress,
                cancelled=lambda: ctx.cancelled,
            )
        except ResolutionFailed as exc:
            output.system(exc.message, Level.ERROR)
            raise ExecutionFailed(
                exc.message, outcome=Outcome.FAILED_CREDENTIAL_RESOLUTION.value
            ) from exc
        if ctx.cancelled:
            raise Cancelled("stopped")
        verdict = dispatched.verdict
        assert verdict is not None
        if verdict.status != RunStatus.SUCCEEDED:
            raise ExecutionFailed(verdict.message, outcome=verdict.outcome.value)
        value = mask_values(dispatched.to_output(), dispatcher.secrets_seen)
        return Finished(value, verdict.outcome)

    def _dispatcher(self, ctx: TaskContext, output: _Output) -> Dispatcher | None:
        if self._targets is None:
            return None
        return Dispatcher(
            run_id=ctx.run_id,
            inventory=self._targets.inventory,
            keyring=self._targets.keyring,
            records=self._targets.records,
            settings=SshSettings(
                connect_timeout=self._settings.target_connect_timeout,
                connect_retries=self._settings.target_connect_retries,
            ),
            line=lambda stream, text, target: output.line(stream, text, target=target),
            system=lambda message, level, target: output.line(
                Stream.SYSTEM, message, level, target=target
            ),
            secrets=output.mask_also,
        )

    def _finish(
        self, ctx: TaskContext, run: CodeRun, output: _Output, log_file: Path, exit_code: int | None
    ) -> None:
        self._sink.wait_stored(ctx.run_id, output.seq)
        self._logs.set_count(ctx.run_id, output.seq, exit_code)
        try:
            self._store.put_file(log_key(run.job_id, ctx.run_id), log_file)
        except StoreError as exc:
            self._logs.append(
                [
                    LogLine(
                        run_id=ctx.run_id,
                        seq=output.seq + 1,
                        ts=time.time(),
                        stream=Stream.SYSTEM.value,
                        level=Level.WARNING.value,
                        message=f"Could not save the full log to the artifact store: {exc.message}",
                    )
                ]
            )

    # -- helpers -------------------------------------------------------------------
    def _write_earlier_lines(self, run_id: int, last: int, log_file: Path) -> None:
        with log_file.open("w", encoding="utf-8") as handle:
            after = 0
            while after < last:
                lines = self._logs.page(run_id, after=after, limit=10_000)
                if not lines:
                    break
                handle.writelines(f"{x.ts:.3f} {x.stream} {x.level} {x.message}\n" for x in lines)
                after = lines[-1].seq

    def _fetch(self, run: CodeRun) -> Path:
        """The package zip from the local cache, else the store (verified by hash)."""
        cached = self._cache / "packages" / f"{run.sha256}.zip"
        if cached.exists():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.part")
        try:
            self._store.download(run.storage_key, partial)
        except StoreError as exc:
            raise ExecutionFailed(
                f"Could not fetch package v{run.version} of job {run.job} from the artifact "
                f"store: {exc.message}",
                outcome=Outcome.ERROR.value,
            ) from exc
        actual = sha256_of(partial)
        if actual != run.sha256:
            partial.unlink(missing_ok=True)
            raise ExecutionFailed(
                f"Package v{run.version} of job {run.job} is corrupt in the artifact store "
                f"(sha256 {actual[:12]}, expected {run.sha256[:12]}); deploy it again.",
                outcome=Outcome.ERROR.value,
            )
        os.replace(partial, cached)
        return cached

    def _unpack(self, run: CodeRun, folder: Path) -> None:
        archive = self._fetch(run)
        try:
            safe_extract(archive, folder)
        except InvalidRequest as exc:
            raise ExecutionFailed(
                f"Package v{run.version} of job {run.job} was refused: {exc.message}",
                outcome=Outcome.ERROR.value,
            ) from exc
        if (folder / ".runwright").exists():
            raise ExecutionFailed(
                f"Package v{run.version} of job {run.job} contains .runwright/, a name "
                "reserved for runwright; rename it.",
                outcome=Outcome.ERROR.value,
            )

    def _config(self, run: CodeRun, folder: Path) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name in ("config.json", f"config.{run.environment}.json" if run.environment else ""):
            path = folder / name if name else None
            if path is not None and path.is_file():
                config = merge_config(config, json.loads(path.read_text(encoding="utf-8")))
        return merge_config(config, host_overrides(dict(os.environ)))

    def _prepare_sdk(self, target: Path) -> Path:
        (target / "runwright" / "sdk").mkdir(parents=True)
        (target / "runwright" / "__init__.py").write_text(
            '"""runwright inside a job: only the SDK is here."""\n'
        )
        shutil.copyfile(SDK_SOURCE / "__init__.py", target / "runwright" / "sdk" / "__init__.py")
        shutil.copyfile(SDK_SOURCE / "_entry.py", target / "_runwright_entry.py")
        shutil.copyfile(SDK_SOURCE / "_steps_host.py", target / "_runwright_steps.py")
        return target

    def _job_environment(
        self, ctx: TaskContext, run: CodeRun, folder: Path, sdk_path: Path, context_file: Path
    ) -> dict[str, str]:
        """A fresh environment: nothing of the worker's settings or secrets leaks in."""
        tmp = folder / ".runwright" / "tmp"
        tmp.mkdir()
        env = {
            name: os.environ[name]
            for name in self._settings.job_env_passthrough
            if name in os.environ
        }
        env.update(
            PATH="/usr/local/bin:/usr/bin:/bin",
            HOME=str(folder),
            TMPDIR=str(tmp),
            LANG="C.UTF-8",
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONPATH=str(sdk_path),
            RUNWRIGHT_SDK_CONTEXT=str(context_file),
            RUNWRIGHT_RUN_ID=str(ctx.run_id),
            RUNWRIGHT_JOB=run.job,
            RUNWRIGHT_ATTEMPT=str(ctx.attempt),
        )
        if run.environment:
            env["RUNWRIGHT_ENVIRONMENT"] = run.environment
        return env
