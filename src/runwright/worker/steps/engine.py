"""Runs the steps of a multi-step job in order, saving the job context after each.

A step's inputs are rendered from the context, checked, and handed to its action;
its output (or error) goes back into the context, which is saved to the artifact
store before the next step starts. A later attempt of the same run (a retry, a
recovery after a lost worker, or ``runwright runs resume``) loads that context and
skips the steps that already succeeded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runwright.artifacts.base import ArtifactStore
from runwright.db.steps import RunStep, RunStepRepository
from runwright.errors import Cancelled, ExecutionFailed, InvalidRequest, NotFound, StoreError
from runwright.model.context import FileMetadata, JobContext, StepStatus, WebhookData
from runwright.model.logs import Level, Stream
from runwright.model.references import ReferenceError_, evaluate_condition, render_inputs
from runwright.model.states import Outcome, RunStatus
from runwright.model.steps import (
    FileInputs,
    HttpInputs,
    PythonInputs,
    SftpInputs,
    ShellInputs,
    SqlInputs,
    SshInputs,
    StepsDefinition,
    StepSpec,
    validate_inputs,
)
from runwright.model.targets import (
    Candidates,
    ErrorType,
    TargetSelector,
    TargetStatus,
    UnlockedCredential,
    Verdict,
    override,
)
from runwright.services.contexts import ContextStore, masked_json
from runwright.services.variables import ResolvedVariables
from runwright.worker.context import TaskContext
from runwright.worker.steps.common import StepEnv, StepFailed, StepTimedOut, json_safe, summary
from runwright.worker.steps.files import run_file
from runwright.worker.steps.http import run_http
from runwright.worker.steps.pyhost import HostSpec, PythonHost
from runwright.worker.steps.sftp import run_sftp
from runwright.worker.steps.shell import run_shell
from runwright.worker.steps.sql import run_sql
from runwright.worker.targets.dispatch import Dispatcher, ResolutionFailed
from runwright.worker.targets.ssh import Attempted

MAX_PYTHON_SLOTS = 8  # python processes working on targets at once, per step


class StepOutput:
    """Where the engine writes its lines: the run's output, tagged with the step."""

    step: str | None

    def line(self, stream: Stream, message: str, level: Level | None = None) -> None: ...

    def system(self, message: str, level: Level = Level.INFO) -> None: ...


@dataclass(kw_only=True)
class StepsRun:
    """Everything one attempt of a multi-step run needs."""

    ctx: TaskContext
    job: str
    job_id: int
    params: dict[str, Any]
    webhook: dict[str, Any] | None
    definition: StepsDefinition
    output: Any  # a StepOutput (the code executor's _Output)
    store: ArtifactStore
    contexts: ContextStore
    steps: RunStepRepository
    variables: ResolvedVariables
    process: HostSpec  # how shell and python steps start (sandbox, environment, limits)
    host_command: list[str]
    dispatcher: Dispatcher | None = None  # for steps on targets
    targets_override: dict[str, Any] | None = None  # the run's choice of targets


class StepsEngine:
    def __init__(self, run: StepsRun) -> None:
        self.run = run
        self.ctx = run.ctx
        self.out = run.output
        self._secrets = run.variables.secrets()
        self._host_spec = HostSpec(
            command=run.host_command,
            cwd=run.process.cwd,
            env=run.process.env,
            limits=run.process.limits,
            kill_grace=run.process.kill_grace,
            run_id=run.process.run_id,
        )
        self._target_hosts: list[PythonHost] = []  # python steps on targets, one per slot
        self._host = PythonHost(
            self._host_spec,
            on_line=self._process_line,
            on_progress=lambda m: self.ctx.progress(m.get("percent"), m.get("message")),
            cancelled=lambda: self.ctx.cancelled,
        )
        self.context_saves = 0
        self.context_save_seconds = 0.0
        # The verdict of the last step on targets: the run's outcome when it ends.
        self.verdict: Verdict | None = None

    # -- the run -------------------------------------------------------------------
    def execute(self) -> Any:
        context, resumed = self._start_context()
        steps = self.run.definition.steps
        last_output: Any = None
        try:
            for position, spec in enumerate(steps):
                self.ctx.raise_if_cancelled()
                state = context.step(spec.id)
                if resumed and state.status in StepStatus.DONE:
                    self.out.system(
                        f"Step {spec.id}: {state.status} in attempt {state.attempt}; not run again"
                    )
                    if state.status == StepStatus.SUCCEEDED:
                        last_output = state.output
                    continue
                self.ctx.progress(
                    100.0 * position / len(steps),
                    f"step {position + 1} of {len(steps)}: {spec.id}",
                )
                self._run_step(position, spec, context)
                state = context.steps[spec.id]
                if state.status == StepStatus.SUCCEEDED:
                    last_output = state.output
                elif state.status not in (StepStatus.SKIPPED,) and not spec.continue_on_error:
                    raise ExecutionFailed(
                        f"Step {spec.id} ({spec.uses}) {_words(state.status)}: "
                        f"{(state.error or '').rstrip('.')}. Fix the cause, then "
                        f"`runwright runs resume {self.ctx.run_id}` to continue from this step.",
                        outcome=self._failure_outcome(state).value,
                    )
                elif state.status != StepStatus.SKIPPED:
                    self.out.system(
                        f"Step {spec.id} failed; continuing (continue_on_error)", Level.WARNING
                    )
        finally:
            self._host.close()
            for host in self._target_hosts:
                host.close()
        self.ctx.progress(100.0, f"{len(steps)} steps done")
        done = sum(1 for s in context.steps.values() if s.status == StepStatus.SUCCEEDED)
        self.out.system(f"All {len(steps)} steps ended ({done} succeeded)")
        return last_output

    def _failure_outcome(self, state: Any) -> Outcome:
        if state.error_type == "credential":  # loading targets or credentials failed
            return Outcome.FAILED_CREDENTIAL_RESOLUTION
        if state.error_type == "targets" and self.verdict is not None:
            return self.verdict.outcome
        if state.error_type == "unexpected":
            return Outcome.FAILED_UNEXPECTED
        return Outcome.TIMED_OUT if state.status == StepStatus.TIMED_OUT else Outcome.ERROR

    def _start_context(self) -> tuple[JobContext, bool]:
        run = self.run
        resumed = False
        context: JobContext | None = None
        if self.ctx.attempt > 1:
            try:
                context = run.contexts.load(run.job_id, self.ctx.run_id, job=run.job)
                resumed = True
            except NotFound as exc:
                if run.steps.list(self.ctx.run_id):
                    raise ExecutionFailed(exc.message, outcome=Outcome.ERROR.value) from exc
            except InvalidRequest as exc:
                raise ExecutionFailed(
                    f"{exc.message} Start a new run instead of resuming this one.",
                    outcome=Outcome.ERROR.value,
                ) from exc
            except StoreError as exc:
                raise ExecutionFailed(
                    f"Could not load the saved context of run {self.ctx.run_id} of job "
                    f"{run.job}: {exc.message}",
                    outcome=Outcome.ERROR.value,
                ) from exc
        if context is None:
            context = JobContext.new(
                self.ctx.run_id,
                run.job_id,
                job=run.job,
                params=dict(run.params),
                webhook=WebhookData.from_json(run.webhook),
            )
        # Variables are read fresh for every attempt (a resume after fixing one sees it).
        context.variables = dict(run.variables.values)
        if resumed:
            done = [s.step_id for s in context.steps.values() if s.status in StepStatus.DONE]
            self.out.system(
                f"Resuming from the saved context: {len(done)} of "
                f"{len(run.definition.steps)} steps already done"
                + (f" ({', '.join(done)})" if done else "")
            )
        self._save(context)
        return context, resumed

    # -- one step ----------------------------------------------------------------------
    def _run_step(self, position: int, spec: StepSpec, context: JobContext) -> None:
        state = context.step(spec.id)
        state.status = StepStatus.RUNNING
        state.error = None
        state.error_type = None
        state.output = None
        state.started_at = time.time()
        state.completed_at = None
        state.attempt = self.ctx.attempt
        self.out.step = spec.id
        tries = 0
        try:
            if spec.when is not None:
                try:
                    go = self._condition(spec, context)
                except ReferenceError_ as exc:
                    self._fail(state, StepStatus.FAILED, exc.message, "reference")
                    return
            if spec.when is not None and not go:
                state.status = StepStatus.SKIPPED
                self.out.system(f"Step {spec.id} skipped: `when: {spec.when}` is false")
                return
            self._record(position, spec, state, tries)
            self.out.system(f"Step {spec.id} ({spec.uses}) started")
            while True:
                tries += 1
                try:
                    value = self._attempt(spec, context)
                except (ReferenceError_, InvalidRequest) as exc:
                    # Inputs are wrong: trying again cannot help.
                    kind = "reference" if isinstance(exc, ReferenceError_) else "input"
                    self._fail(state, StepStatus.FAILED, exc.message, kind)
                    return
                except StepFailed as exc:
                    timed_out = isinstance(exc, StepTimedOut)
                    status = StepStatus.TIMED_OUT if timed_out else StepStatus.FAILED
                    if tries <= spec.retries.count:
                        delay = spec.retries.delay(tries)
                        self.out.system(
                            f"Step {spec.id} {_words(status)}: {self._mask(exc.message)}; try "
                            f"{tries + 1} of {spec.retries.count + 1} in {delay:g}s",
                            Level.WARNING,
                        )
                        self._record(position, spec, state, tries)
                        self.ctx.sleep(delay)
                        continue
                    self._fail(state, status, exc.message, exc.error_type)
                    if exc.output is not None:
                        state.output = self._mask(json_safe(exc.output))
                    return
                state.status = StepStatus.SUCCEEDED
                state.output = self._mask(json_safe(value))
                took = time.time() - (state.started_at or time.time())
                self.out.system(f"Step {spec.id} succeeded in {took:.2f}s")
                return
        except Cancelled:
            state.status = StepStatus.CANCELED
            state.error = "the run was canceled or timed out"
            state.error_type = "canceled"
            self.out.system(
                f"Step {spec.id} stopped: the run was canceled or timed out", Level.WARNING
            )
            raise
        finally:
            state.completed_at = time.time()
            self.out.step = None
            # The context is saved before the step's row says it ended: a step never
            # counts as done without its saved output.
            try:
                self._save(context)
            except ExecutionFailed:
                if state.status == StepStatus.SUCCEEDED:
                    state.status = StepStatus.FAILED
                    state.error = "its output could not be saved to the artifact store"
                    state.error_type = "store"
                self._record(position, spec, state, tries)
                raise
            self._record(position, spec, state, tries)

    def _fail(self, state: Any, status: str, message: str, error_type: str) -> None:
        state.status = status
        state.error = self._mask(message)
        state.error_type = error_type
        self.out.system(f"Step {state.step_id} {_words(status)}: {state.error}", Level.ERROR)

    def _condition(self, spec: StepSpec, context: JobContext) -> bool:
        assert spec.when is not None
        return evaluate_condition(spec.when, context.references())

    def _attempt(self, spec: StepSpec, context: JobContext) -> Any:
        rendered = render_inputs(spec.with_, context.references())
        inputs = validate_inputs(spec.uses, rendered, spec.id)
        deadline = time.monotonic() + spec.timeout if spec.timeout else None
        env = self._env(spec, context, deadline)
        if isinstance(inputs, PythonInputs) and spec.targets is not None:
            return self._python_on_targets(spec, inputs, context, deadline)
        if isinstance(inputs, PythonInputs):
            return self._host.call(
                spec.id,
                inputs.function,
                inputs.inputs,
                context.references(),
                deadline,
            )
        if isinstance(inputs, SshInputs):
            return self._on_targets(spec, inputs, deadline)
        if isinstance(inputs, ShellInputs):
            return run_shell(
                inputs, env, self.run.process, self._process_line, lambda: self.ctx.cancelled
            )
        action: Callable[[], Any]
        if isinstance(inputs, HttpInputs):
            action = lambda: run_http(inputs, env)  # noqa: E731
        elif isinstance(inputs, SqlInputs):
            action = lambda: run_sql(inputs, env)  # noqa: E731
        elif isinstance(inputs, FileInputs):
            action = lambda: run_file(inputs, env)  # noqa: E731
        elif isinstance(inputs, SftpInputs):
            action = lambda: run_sftp(inputs, env)  # noqa: E731
        else:  # pragma: no cover - the definition model admits no other action
            raise StepFailed(f"unknown action {spec.uses}")
        try:
            return self._in_thread(action, deadline, spec)
        finally:
            for metadata in env.recorded:
                context.add_file_metadata(metadata)

    def _selector(self, spec: StepSpec) -> tuple[Dispatcher, TargetSelector]:
        dispatcher = self.run.dispatcher
        if dispatcher is None:
            raise StepFailed("this worker cannot reach the target inventory", "unexpected")
        try:
            selector = override(spec.targets, self.run.targets_override)
        except ValueError as exc:
            raise StepFailed(f"the run's targets are not valid: {exc}", "input") from exc
        assert selector is not None  # only steps with targets come here
        return dispatcher, selector

    def _on_targets(self, spec: StepSpec, inputs: SshInputs, deadline: float | None) -> Any:
        dispatcher, selector = self._selector(spec)

        def stopped() -> bool:
            return self.ctx.cancelled or (deadline is not None and time.monotonic() >= deadline)

        def action() -> Any:
            return dispatcher.ssh(
                spec.id, selector, inputs.command, deadline=deadline, cancelled=stopped
            )

        return self._dispatched(spec, dispatcher, lambda: self._in_thread(action, deadline, spec))

    def _python_on_targets(
        self, spec: StepSpec, inputs: PythonInputs, context: JobContext, deadline: float | None
    ) -> Any:
        """The step's function once per target, with the target and a credential in
        ``sdk.target`` / ``sdk.credential``, in up to MAX_PYTHON_SLOTS processes."""
        dispatcher, selector = self._selector(spec)
        references = context.references()
        current: dict[int, str] = {}

        def work(slot: int, candidates: Candidates, credential: UnlockedCredential) -> Attempted:
            target = candidates.target
            current[slot] = target.name
            host = self._target_host(slot, current)
            self._secrets |= set(credential.secret.values())  # errors below may quote them
            extra = {"target": target.public(), "credential": credential.for_job()}
            try:
                value = host.call(
                    spec.id, inputs.function, inputs.inputs, references, deadline, extra
                )
            except Cancelled:
                canceled = Attempted(status=TargetStatus.CANCELED)
                canceled.error, canceled.error_type = "the run was canceled", "canceled"
                return canceled
            except StepTimedOut as exc:
                return Attempted().fail(ErrorType.TIMEOUT, self._mask(exc.message))
            except StepFailed as exc:
                kind = ErrorType.AUTH if exc.error_type == "auth" else ErrorType.COMMAND
                return Attempted().fail(kind, self._mask(exc.message))
            done = Attempted(status=TargetStatus.SUCCEEDED)
            done.value = json_safe(value)
            return done

        slots = min(selector.max_parallel, MAX_PYTHON_SLOTS)
        return self._dispatched(
            spec,
            dispatcher,
            lambda: dispatcher.each(
                spec.id, selector, work, slots=slots, cancelled=lambda: self.ctx.cancelled
            ),
        )

    def _target_host(self, slot: int, current: dict[int, str]) -> PythonHost:
        while len(self._target_hosts) <= slot:
            index = len(self._target_hosts)

            def on_line(stream: Stream, text: str, index: int = index) -> None:
                self.out.line(stream, text, target=current.get(index))

            self._target_hosts.append(
                PythonHost(
                    self._host_spec,
                    on_line=on_line,
                    on_progress=lambda m: None,  # per target: the run's bar shows steps
                    cancelled=lambda: self.ctx.cancelled,
                )
            )
        return self._target_hosts[slot]

    def _dispatched(self, spec: StepSpec, dispatcher: Dispatcher, go: Callable[[], Any]) -> Any:
        try:
            dispatched = go()
        except ResolutionFailed as exc:
            self.out.system(exc.message, Level.ERROR)
            raise StepFailed(exc.message, "credential") from exc
        except (StepFailed, Cancelled):
            raise
        except Exception as exc:
            raise StepFailed(f"{type(exc).__name__}: {exc}", "unexpected") from exc
        if self.ctx.cancelled:
            raise Cancelled("canceled")  # targets stopped by the cancel are no failure
        self.verdict = dispatched.verdict
        self._secrets |= dispatcher.secrets_seen
        output = dispatched.to_output()
        if self.verdict is not None and self.verdict.status != RunStatus.SUCCEEDED:
            raise StepFailed(self.verdict.message, "targets", output=output)
        return output

    def _in_thread(self, action: Callable[[], Any], deadline: float | None, spec: StepSpec) -> Any:
        """Run an in-process action where a timeout or cancel can leave it behind (its
        own timeouts end it soon after)."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = action()
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"step-{spec.id}", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.05)
            if self.ctx.cancelled and thread.is_alive():
                raise Cancelled("canceled")
            if deadline is not None and time.monotonic() >= deadline and thread.is_alive():
                raise StepTimedOut(
                    f"the step did not finish within its timeout of {spec.timeout:g}s"
                )
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _env(self, spec: StepSpec, context: JobContext, deadline: float | None) -> StepEnv:
        def remaining() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        def should_stop() -> bool:
            left = remaining()
            return self.ctx.cancelled or (left is not None and left <= 0)

        return StepEnv(
            run_id=self.ctx.run_id,
            job_id=self.run.job_id,
            job=self.run.job,
            step_id=spec.id,
            folder=self.run.process.cwd,
            store=self.run.store,
            variables=dict(context.variables),
            files=list(context.files),
            log=lambda message, level: self.out.system(self._mask(message), level),
            should_stop=should_stop,
            remaining=remaining,
        )

    # -- records -----------------------------------------------------------------------
    def _process_line(self, stream: Stream, text: str) -> None:
        self.out.line(stream, text)

    def _mask(self, value: Any) -> Any:
        from runwright.model.context import mask_values

        return mask_values(value, self._secrets)

    def _record(self, position: int, spec: StepSpec, state: Any, tries: int) -> None:
        self.run.steps.record(
            RunStep(
                run_id=self.ctx.run_id,
                step_id=spec.id,
                position=position,
                uses=spec.uses,
                status=state.status,
                attempt=self.ctx.attempt,
                tries=tries,
                started_at=state.started_at,
                finished_at=state.completed_at,
                error=state.error,
                error_type=state.error_type,
                output_summary=None if state.output is None else summary(state.output),
            )
        )

    def _save(self, context: JobContext) -> None:
        started = time.perf_counter()
        try:
            self.run.contexts.save(
                context, sensitive_names=self.run.variables.sensitive, secrets=self._secrets
            )
        except StoreError as exc:
            # A step must never count as done without its saved context: stop the run.
            raise ExecutionFailed(
                f"Could not save the job context of run {self.ctx.run_id} to the artifact "
                f"store: {exc.message}. Resume the run when the store is back.",
                outcome=Outcome.ERROR.value,
            ) from exc
        self.context_saves += 1
        self.context_save_seconds += time.perf_counter() - started

    def masked_context(self, context: JobContext) -> dict[str, Any]:
        return masked_json(context, self.run.variables.sensitive, self._secrets)


def _words(status: str) -> str:
    return status.replace("_", " ")


__all__ = ["FileMetadata", "StepOutput", "StepsEngine", "StepsRun"]
