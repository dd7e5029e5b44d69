"""Work on many targets: load them by tag, resolve their credentials in one batch, run
on those that have one, at most N at a time, and record what happened on each."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runwright.db.run_targets import RunTarget, RunTargetRepository
from runwright.errors import RunwrightError
from runwright.model.logs import Level, Masker, Stream
from runwright.model.states import RunStatus
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
                "duration": None
                if done.started_at is None
                else (done.finished_at or time.time()) - done.started_at,
            }
            if done.value is not None:
                targets[name]["value"] = done.value
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
        self._mask: Callable[[str], str] = lambda text: text

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
        self._mask = Masker(self.secrets_seen)
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
        """``command`` on every target with a credential, over SSH."""
        dispatched, unlocked = self._begin(step_id, selector)
        if dispatched.resolution.resolved:
            asyncio.run(
                self._run_all(
                    step_id, selector, dispatched.resolution, unlocked, command, deadline,
                    cancelled, dispatched,
                )
            )  # fmt: skip
        return self._end(dispatched)

    def each(
        self,
        step_id: str,
        selector: TargetSelector,
        work: Callable[[int, Candidates, UnlockedCredential], Attempted],
        *,
        slots: int,
        cancelled: Callable[[], bool],
        on_resolved: Callable[[int], None] | None = None,
    ) -> Dispatched:
        """``work(slot, candidates, credential)`` for every target with a credential, on
        ``slots`` threads (a slot is the index of the thread: its own python process).
        A result with error type ``auth`` moves on to the target's next credential.
        ``on_resolved`` learns how many targets will be worked on."""
        dispatched, unlocked = self._begin(step_id, selector)
        if on_resolved is not None:
            on_resolved(len(dispatched.resolution.resolved))
        pending: queue.SimpleQueue[Candidates] = queue.SimpleQueue()
        for candidates in dispatched.resolution.resolved:
            pending.put(candidates)

        def serve(slot: int) -> None:
            while not cancelled():
                try:
                    candidates = pending.get_nowait()
                except queue.Empty:
                    return
                self._one(step_id, slot, candidates, unlocked, work, dispatched)

        threads = [
            threading.Thread(target=serve, args=(slot,), name=f"targets-{slot}", daemon=True)
            for slot in range(max(1, min(slots, len(dispatched.resolution.resolved))))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ended = set(dispatched.results)
        self._mark_canceled(dispatched, {})
        self._records.record(
            [
                self._finished_row(step_id, c.target, dispatched.results[c.target.name])
                for c in dispatched.resolution.resolved
                if c.target.name not in ended
            ]
        )
        return self._end(dispatched)

    def _one(
        self,
        step_id: str,
        slot: int,
        candidates: Candidates,
        unlocked: dict[int, UnlockedCredential],
        work: Callable[[int, Candidates, UnlockedCredential], Attempted],
        dispatched: Dispatched,
    ) -> None:
        target = candidates.target
        started = time.time()
        self._records.record([self._row(step_id, target, TargetStatus.RUNNING, at=started)])
        self._system("started", Level.INFO, target.name)
        done = Attempted().fail(ErrorType.CREDENTIAL, "no usable credential")
        tried: list[tuple[int, bool]] = []
        for info in candidates.credentials:
            credential = unlocked.get(info.id)
            if credential is None:
                continue
            try:
                done = work(slot, candidates, credential)
            except Exception as exc:  # one target's surprise must not sink the others
                done = Attempted().fail(ErrorType.UNEXPECTED, f"{type(exc).__name__}: {exc}")
            refused = done.error_type == ErrorType.AUTH
            tried.append((info.id, not refused))
            if not refused:
                done.credential, done.credential_id = info.name, info.id
                break
            self._system(
                f"credential {info.name} refused: {done.error}", Level.WARNING, target.name
            )
        done.tried = tried
        done.started_at = started
        done.finished_at = time.time()
        dispatched.results[target.name] = done
        self._report(target, done)
        self._records.record([self._finished_row(step_id, target, done)])

    def _begin(
        self, step_id: str, selector: TargetSelector
    ) -> tuple[Dispatched, dict[int, UnlockedCredential]]:
        resolution, unlocked = self.resolve(selector)
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
        return Dispatched(resolution=resolution), unlocked

    def _end(self, dispatched: Dispatched) -> Dispatched:
        self._after(dispatched)
        statuses = [r.status for r in dispatched.results.values()]
        verdict = judge(dispatched.resolution, statuses)
        dispatched.verdict = verdict
        canceled = statuses.count(TargetStatus.CANCELED)
        if canceled:
            ok = statuses.count(TargetStatus.SUCCEEDED)
            self._system(
                f"Canceled: {ok} target(s) succeeded, {len(statuses) - ok - canceled} failed, "
                f"{canceled} stopped or not started.",
                Level.WARNING,
                None,
            )
            return dispatched
        failed = verdict.status != RunStatus.SUCCEEDED
        self._system(verdict.message, Level.ERROR if failed else Level.INFO, None)
        return dispatched

    def _mark_canceled(
        self, dispatched: Dispatched, started_at: dict[str, float] | None = None
    ) -> None:
        """Targets without a result were stopped by a cancel (or never started)."""
        for candidates in dispatched.resolution.resolved:
            name = candidates.target.name
            if name not in dispatched.results:
                canceled = Attempted(status=TargetStatus.CANCELED)
                canceled.started_at = (started_at or {}).get(name)
                canceled.error, canceled.error_type = "the run was canceled", "canceled"
                canceled.finished_at = time.time()
                dispatched.results[name] = canceled

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
        changes: list[RunTarget] = []  # rows to write, in order: running, then finished
        started_at: dict[str, float] = {}

        async def one(candidates: Candidates) -> None:
            target = candidates.target
            async with gate:
                if cancelled():
                    return
                started_at[target.name] = time.time()
                changes.append(
                    self._row(step_id, target, TargetStatus.RUNNING, at=started_at[target.name])
                )
                self._system(f"started: {command}", Level.INFO, target.name)

                def on_line(stream: Stream, text: str) -> None:
                    self._line(stream, text, target.name)

                def on_refused(credential: str, why: str) -> None:
                    self._system(
                        f"credential {credential} refused; trying the next one ({why})",
                        Level.WARNING,
                        target.name,
                    )

                try:
                    done = await run_command(
                        candidates,
                        unlocked,
                        command,
                        settings=self._settings,
                        deadline=deadline,
                        on_line=on_line,
                        on_refused=on_refused,
                    )
                except Exception as exc:  # one target's surprise must not sink the others
                    done = Attempted().fail(ErrorType.UNEXPECTED, f"{type(exc).__name__}: {exc}")
                done.started_at = started_at[target.name]
                done.finished_at = time.time()
                dispatched.results[target.name] = done
                changes.append(self._finished_row(step_id, target, done))
                self._report(target, done)

        stop = asyncio.Event()

        async def flush_changes() -> None:
            # Stopped by the event, never cancelled: a write in flight must land before
            # the last rows, or a finished target could read "running".
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), FLUSH_EVERY)
                await self._flush(changes)

        async def watch_cancel(tasks: list[asyncio.Task[None]]) -> None:
            while not cancelled():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()

        tasks = [asyncio.ensure_future(one(c)) for c in resolution.resolved]
        flusher = asyncio.ensure_future(flush_changes())
        watcher = asyncio.ensure_future(watch_cancel(tasks))
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            watcher.cancel()
            stop.set()
            await asyncio.gather(watcher, flusher, return_exceptions=True)
        ended = set(dispatched.results)
        self._mark_canceled(dispatched, started_at)
        changes.extend(
            self._finished_row(step_id, c.target, dispatched.results[c.target.name])
            for c in resolution.resolved
            if c.target.name not in ended
        )
        self._records.record(changes)

    async def _flush(self, started: list[RunTarget]) -> None:
        if not started:
            return
        batch = list(started)
        started.clear()
        await asyncio.to_thread(self._records.record, batch)

    def _report(self, target: Target, done: Attempted) -> None:
        took = (done.finished_at or time.time()) - (done.started_at or time.time())
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
            # What a host printed may hold a password it was given: masked as in the log.
            output=self._mask(done.summary) or None,
            error=None if done.error is None else self._mask(done.error),
            error_type=done.error_type,
        )
