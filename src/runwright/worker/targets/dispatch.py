"""Work on many targets: load them by tag, resolve their credentials in one batch, run
on those that have one, at most N at a time, and record what happened on each."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runwright.db.run_targets import RunTarget, RunTargetRepository
from runwright.errors import RunwrightError
from runwright.model.logs import Level, Stream
from runwright.model.targets import (
    Candidates,
    Credential,
    ErrorType,
    Resolution,
    Target,
    TargetSelector,
    TargetStatus,
    UnlockedCredential,
    Verdict,
    judge,
    resolve,
    summarize_output,
)
from runwright.worker.targets.ssh import Attempted, SshSettings, run_command

FLUSH_EVERY = 0.25  # seconds between two writes of targets that started
CONTEXT_OUTPUT = {"lines": 200, "chars": 16_000}  # of each target's output, in the step output


class Inventory(Protocol):
    def select(self, tags: Sequence[str]) -> list[Target]: ...

    def record_host_key(self, target_id: int, key: str) -> None: ...


class Keyring(Protocol):
    def candidates(self) -> list[Credential]: ...

    def unlock(self, ids: Sequence[int]) -> dict[int, UnlockedCredential]: ...

    def record_use(self, outcomes: Sequence[tuple[int, bool]]) -> None: ...


@dataclass(frozen=True, slots=True)
class TargetAccess:
    """What a worker needs to work on targets."""

    inventory: Inventory
    keyring: Keyring
    records: RunTargetRepository


class ResolutionFailed(Exception):
    """Loading the targets or their credentials failed: the run fails with
    ``failed_credential_resolution``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(kw_only=True)
class Dispatched:
    resolution: Resolution
    results: dict[str, Attempted] = field(default_factory=dict)
    verdict: Verdict | None = None

    def to_output(self) -> dict[str, Any]:
        """The step's output: per target, and the counts."""
        targets: dict[str, Any] = {}
        for candidates in self.resolution.resolved:
            name = candidates.target.name
            done = self.results.get(name)
            if done is None:
                continue
            targets[name] = {
                "status": done.status,
                "address": candidates.target.address,
                "credential": done.credential,
                "exit_status": done.exit_status,
                "stdout": summarize_output(done.stdout, **CONTEXT_OUTPUT),
                "stderr": summarize_output(done.stderr, **CONTEXT_OUTPUT),
                "error": done.error,
                "error_type": done.error_type,
                "duration": (done.finished_at or time.time()) - done.started_at,
            }
        for target in self.resolution.unresolved:
            targets[target.name] = {
                "status": TargetStatus.NO_CREDENTIALS.value,
                "address": target.address,
                "error": "no credential shares a tag with this target",
                "error_type": ErrorType.CREDENTIAL.value,
            }
        statuses = [item["status"] for item in targets.values()]
        return {
            "targets": targets,
            "matched": self.resolution.matched,
            "succeeded": statuses.count(TargetStatus.SUCCEEDED.value),
            "failed": len(statuses) - statuses.count(TargetStatus.SUCCEEDED.value),
            "outcome": self.verdict.outcome.value if self.verdict else None,
        }


LineOut = Callable[[Stream, str, str], None]  # stream, text, target
SystemOut = Callable[[str, Level, str | None], None]  # message, level, target


class Dispatcher:
    def __init__(
        self,
        *,
        run_id: int,
        inventory: Inventory,
        keyring: Keyring,
        records: RunTargetRepository,
        settings: SshSettings,
        line: LineOut,
        system: SystemOut,
        secrets: Callable[[Iterable[str]], None],
    ) -> None:
        self._run_id = run_id
        self._inventory = inventory
        self._keyring = keyring
        self._records = records
        self._settings = settings
        self._line = line
        self._system = system
        self._add_secrets = secrets
        self.secrets_seen: set[str] = set()  # of the credentials unlocked so far

    def resolve(self, selector: TargetSelector) -> tuple[Resolution, dict[int, UnlockedCredential]]:
        """Targets by tag and the credentials of all of them, decrypted in one batch."""
        try:
            targets = self._inventory.select(selector.tags)
            resolution = resolve(targets, self._keyring.candidates())
            ids = sorted({c.id for r in resolution.resolved for c in r.credentials})
            unlocked = self._keyring.unlock(ids) if ids else {}
        except RunwrightError as exc:
            raise ResolutionFailed(
                f"Could not resolve the targets' credentials: {exc.message}"
            ) from exc
        values = {v for c in unlocked.values() for v in c.secret.values()}
        self.secrets_seen |= values
        self._add_secrets(values)
        self._system(resolution.summary(), Level.INFO, None)
        for target in resolution.unresolved:
            self._system(
                "no credential shares a tag with this target; it is skipped "
                f"(its tags: {', '.join(target.tags)})",
                Level.WARNING,
                target.name,
            )
        return resolution, unlocked

    def ssh(
        self,
        step_id: str,
        selector: TargetSelector,
        command: str,
        *,
        deadline: float | None,
        cancelled: Callable[[], bool],
    ) -> Dispatched:
        resolution, unlocked = self.resolve(selector)
        dispatched = Dispatched(resolution=resolution)
        self._records.record(
            [self._row(step_id, c.target, TargetStatus.PENDING) for c in resolution.resolved]
            + [
                self._row(
                    step_id,
                    t,
                    TargetStatus.NO_CREDENTIALS,
                    error="no credential shares a tag with this target",
                    error_type=ErrorType.CREDENTIAL.value,
                )
                for t in resolution.unresolved
            ]
        )
        if resolution.resolved:
            asyncio.run(
                self._run_all(
                    step_id, selector, resolution, unlocked, command, deadline, cancelled,
                    dispatched,
                )
            )  # fmt: skip
        self._after(dispatched)
        dispatched.verdict = judge(resolution, [r.status for r in dispatched.results.values()])
        level = (
            Level.INFO if dispatched.verdict.outcome.value == "completed_success" else (Level.ERROR)
        )
        self._system(dispatched.verdict.message, level, None)
        return dispatched

    async def _run_all(
        self,
        step_id: str,
        selector: TargetSelector,
        resolution: Resolution,
        unlocked: dict[int, UnlockedCredential],
        command: str,
        deadline: float | None,
        cancelled: Callable[[], bool],
        dispatched: Dispatched,
    ) -> None:
        gate = asyncio.Semaphore(selector.max_parallel)
        started: list[RunTarget] = []

        async def one(candidates: Candidates) -> None:
            target = candidates.target
            async with gate:
                if cancelled():
                    return
                started.append(self._row(step_id, target, TargetStatus.RUNNING, at=time.time()))
                self._system(f"started: {command}", Level.INFO, target.name)

                def on_line(stream: Stream, text: str) -> None:
                    self._line(stream, text, target.name)

                try:
                    done = await run_command(
                        candidates,
                        unlocked,
                        command,
                        settings=self._settings,
                        deadline=deadline,
                        on_line=on_line,
                    )
                except Exception as exc:  # one target's surprise must not sink the others
                    done = Attempted().fail(ErrorType.UNEXPECTED, f"{type(exc).__name__}: {exc}")
                done.finished_at = time.time()
                dispatched.results[target.name] = done
                self._report(target, done)

        stop = asyncio.Event()

        async def flush_started() -> None:
            # Stopped by the event, never cancelled: a write in flight must land before
            # the final rows, or a finished target would read "running".
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), FLUSH_EVERY)
                await self._flush(started)

        async def watch_cancel(tasks: list[asyncio.Task[None]]) -> None:
            while not cancelled():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()

        tasks = [asyncio.ensure_future(one(c)) for c in resolution.resolved]
        flusher = asyncio.ensure_future(flush_started())
        watcher = asyncio.ensure_future(watch_cancel(tasks))
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            watcher.cancel()
            stop.set()
            await asyncio.gather(watcher, flusher, return_exceptions=True)
        for candidates in resolution.resolved:
            name = candidates.target.name
            if name not in dispatched.results:
                canceled = Attempted(status=TargetStatus.CANCELED)
                canceled.error, canceled.error_type = "the run was canceled", "canceled"
                canceled.finished_at = time.time()
                dispatched.results[name] = canceled
        # Rows of targets that finished carry their start time: no "running" write left.
        started.clear()
        self._records.record(
            [
                self._finished_row(step_id, c.target, dispatched.results[c.target.name])
                for c in resolution.resolved
            ]
        )

    async def _flush(self, started: list[RunTarget]) -> None:
        if not started:
            return
        batch = list(started)
        started.clear()
        await asyncio.to_thread(self._records.record, batch)

    def _report(self, target: Target, done: Attempted) -> None:
        took = (done.finished_at or time.time()) - done.started_at
        if done.status == TargetStatus.SUCCEEDED:
            via = f" as {done.credential}" if done.credential else ""
            self._system(f"succeeded in {took:.2f}s{via}", Level.INFO, target.name)
        else:
            self._system(
                f"failed ({done.error_type}) after {took:.2f}s: {done.error}",
                Level.ERROR,
                target.name,
            )

    def _after(self, dispatched: Dispatched) -> None:
        """Credential statistics and host keys learned on first use."""
        uses = [pair for done in dispatched.results.values() for pair in done.tried]
        if uses:
            try:
                self._keyring.record_use(uses)
            except RunwrightError as exc:
                self._system(f"could not record credential use: {exc.message}", Level.WARNING, None)
        for candidates in dispatched.resolution.resolved:
            done = dispatched.results.get(candidates.target.name)
            if done is None or done.recorded_host_key is None:
                continue
            try:
                self._inventory.record_host_key(candidates.target.id, done.recorded_host_key)
            except RunwrightError as exc:
                self._system(
                    f"could not record the host key: {exc.message}",
                    Level.WARNING,
                    candidates.target.name,
                )
                continue
            self._system(
                "host key recorded on first use; later connections must present it",
                Level.INFO,
                candidates.target.name,
            )

    def _row(
        self,
        step_id: str,
        target: Target,
        status: str,
        *,
        at: float | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> RunTarget:
        return RunTarget(
            run_id=self._run_id,
            step_id=step_id,
            target=target.name,
            target_id=target.id,
            address=f"{target.address}:{target.port}",
            status=status,
            started_at=at,
            error=error,
            error_type=error_type,
        )

    def _finished_row(self, step_id: str, target: Target, done: Attempted) -> RunTarget:
        return RunTarget(
            run_id=self._run_id,
            step_id=step_id,
            target=target.name,
            target_id=target.id,
            address=f"{target.address}:{target.port}",
            status=done.status,
            credential=done.credential,
            credentials_tried=len(done.tried),
            started_at=done.started_at,
            finished_at=done.finished_at,
            exit_status=done.exit_status,
            output=done.summary or None,
            error=done.error,
            error_type=done.error_type,
        )
