"""The worker: one loop thread claims and records, a pool executes, a heartbeat keeps leases.

Only the loop thread writes completions; executor threads hand their outcome over
through ``_settle``, which decides once per attempt who ends it: the task, its timeout,
a cancellation, or the discovery that another worker owns the run now.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from runwright.db.engine import is_postgres
from runwright.db.notify import PgListener, SqliteChangeWatcher, Waker
from runwright.db.queue import RunQueue
from runwright.db.workers import WorkerRegistry
from runwright.errors import DatabaseError, DatabaseUnavailable
from runwright.model.retry import RetryPolicy
from runwright.model.runs import ClaimedRun, Completion, ProgressUpdate
from runwright.worker import execute, process
from runwright.worker.context import TaskContext
from runwright.worker.registry import TaskRegistry

log = logging.getLogger(__name__)

# Runs requeued by a worker about to exit with their task threads still running become
# claimable this much later, so that no other worker starts them before the exit.
EXIT_MARGIN = 1.0
# Progress reports are written at most this long after they are made (batched).
PROGRESS_FLUSH_SECONDS = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 8
    heartbeat_interval: float = 5.0
    lease_timeout: float = 30.0
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    recover: bool = True  # also recover runs of dead workers (cheap, idempotent)
    stop_wait: float = 1.0  # how long canceled executions get to stop at shutdown
    end_grace: float = 7.0  # how long a timed-out or canceled task gets to stop


@dataclass(slots=True)
class _Held:
    run: ClaimedRun
    ctx: TaskContext
    deadline: float | None
    settled: bool = False
    releasing: bool = False  # the worker is stopping and will requeue this run
    # A timeout or a cancel decided how the attempt ends; it is recorded once the task
    # has stopped (so its output is complete), or at ``ending_by`` if it does not stop.
    ending: Completion | None = None
    ending_by: float | None = None
    returned: threading.Event = field(default_factory=threading.Event)  # the call is over


class Worker:
    def __init__(
        self,
        *,
        engine: Engine,
        database_url: str,
        registry: TaskRegistry,
        options: WorkerOptions,
        waker: Waker | None = None,
        exit_process: Callable[[], None] | None = None,
    ) -> None:
        """``exit_process`` ends the process; a stopping worker calls it right after
        requeueing runs whose task threads ignored cancellation (CLI processes pass it)."""
        self._exit_process = exit_process
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.options = options
        self.registry = registry
        self._engine = engine
        self._database_url = database_url
        self._queue = RunQueue(engine, lease_timeout=options.lease_timeout)
        self._workers = WorkerRegistry(engine)
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}
        self._done: collections.deque[Completion] = collections.deque()
        self._progress: dict[int, ProgressUpdate] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="runwright-task")
        self._loop_thread = threading.Thread(target=self._main, name="runwright-worker")
        self._beat_thread = threading.Thread(
            target=self._beat, name="runwright-heartbeat", daemon=True
        )
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._waker = waker
        self._waker_event: threading.Event | None = None
        self._listener: PgListener | SqliteChangeWatcher | None = None
        self.executed = 0
        self._limit_before_claim = 0  # free slots at the last claim
        self._grace_override: float | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self._workers.register(
            worker_id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.options.queues,
            concurrency=self.options.concurrency,
            types=self.registry.names(),
        )
        if self._waker is not None:
            self._waker_event = self._wake
            self._waker.subscribe_event(self._wake)
        self._listener = self._make_listener()
        if self._listener is not None:
            self._listener.start()
        self._beat_thread.start()
        self._loop_thread.start()
        log.info(
            "worker %s started: queues=%s concurrency=%d types=%s",
            self.id,
            ",".join(self.options.queues),
            self.options.concurrency,
            ",".join(self.registry.names()) or "(none)",
        )

    def _make_listener(self) -> PgListener | SqliteChangeWatcher | None:
        if is_postgres(self._engine):
            return PgListener(self._database_url, self._wake.set)
        database = self._engine.url.database
        if database and database != ":memory:":
            return SqliteChangeWatcher(database, self._wake.set, interval=0.002)
        return None

    def stop(self, *, grace: float | None = None) -> None:
        """Stop claiming, let running runs finish within ``grace``, requeue the rest."""
        if grace is not None:
            self._grace_override = grace
        self._stopping.set()
        self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def stop_and_wait(self, grace: float | None = None) -> None:
        """Stop, and return once no thread of this worker touches the database: the
        engine may be disposed right after."""
        self.stop(grace=grace)
        self._loop_thread.join()
        if self._beat_thread.is_alive():
            self._beat_thread.join()
        if self._listener is not None and self._listener.is_alive():
            self._listener.join(timeout=5)

    @property
    def running(self) -> int:
        with self._lock:
            return sum(1 for held in self._held.values() if not held.settled)

    # -- the loop ------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._loop()
            self._shutdown()
        except Exception:
            log.exception("worker %s loop crashed; its runs will be recovered by lease", self.id)
        finally:
            self._close()

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            self._expire_timeouts()
            try:
                claimed = self._exchange()
                backoff = 0.0
            except DatabaseError as exc:
                backoff = min(max(backoff * 2, 0.1), 2.0)
                log.warning("worker %s: %s", self.id, exc.message)
                self._stopping.wait(backoff)
                continue
            for run in claimed:
                self._dispatch(run)
            if claimed and len(claimed) == self._limit_before_claim:
                continue  # there may be more waiting: claim again once slots free up
            self._wake.wait(self._next_wait())

    def _exchange(self) -> list[ClaimedRun]:
        completions, progress = self._take_pending()
        free = self.options.concurrency - len(self._held) + len(completions)
        self._limit_before_claim = free
        if not completions and not progress and free <= 0:
            return []
        try:
            if completions or progress:
                claimed, refused = self._queue.exchange(
                    completions,
                    progress,
                    worker_id=self.id,
                    queues=self.options.queues,
                    limit=free,
                )
            else:
                claimed, refused = self._queue.claim(self.id, self.options.queues, free), []
        except DatabaseUnavailable:
            self._requeue_pending(completions, progress)
            raise
        except DatabaseError as exc:
            # The database refused the data itself: retrying the same batch would stop
            # this worker for good. Record what it accepts one by one instead.
            log.warning("worker %s: %s; recording runs one by one", self.id, exc.message)
            self._salvage(completions)
            return []
        self._forget(completions, refused)
        return claimed

    def _salvage(self, completions: Sequence[Completion]) -> None:
        for completion in completions:
            try:
                refused = self._queue.finish([completion])
            except DatabaseUnavailable:
                self._requeue_pending([completion], [])
                continue
            except DatabaseError as exc:
                replacement = execute.unstorable(completion, exc.message)
                try:
                    refused = self._queue.finish([replacement])
                except DatabaseError:
                    self._requeue_pending([completion], [])
                    continue
            self._forget([completion], refused)

    def _take_pending(self) -> tuple[list[Completion], list[ProgressUpdate]]:
        with self._lock:
            completions = list(self._done)
            self._done.clear()
            progress = list(self._progress.values())
            self._progress.clear()
        return completions, progress

    def _requeue_pending(
        self, completions: Sequence[Completion], progress: Sequence[ProgressUpdate]
    ) -> None:
        with self._lock:
            self._done.extendleft(reversed(completions))
            for update in progress:
                self._progress.setdefault(update.run_id, update)

    def _forget(self, completions: Sequence[Completion], refused: Sequence[int]) -> None:
        with self._lock:
            for completion in completions:
                self._held.pop(completion.run_id, None)
        self.executed += len(completions)
        for run_id in refused:
            log.warning(
                "run %d: this worker's result was not recorded because the run is no longer "
                "held by it (canceled, recovered after a lost lease, or claimed elsewhere)",
                run_id,
            )

    def _next_wait(self) -> float:
        wait = self.options.poll_interval
        now = time.monotonic()
        with self._lock:
            if self._progress:
                wait = min(wait, PROGRESS_FLUSH_SECONDS)
            for held in self._held.values():
                if held.settled:
                    continue
                if held.deadline is not None and held.ending is None:
                    wait = min(wait, max(0.0, held.deadline - now))
                if held.ending_by is not None:
                    wait = min(wait, max(0.0, held.ending_by - now))
        return wait

    def _expire_timeouts(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [
                held
                for held in self._held.values()
                if held.deadline is not None and held.deadline <= now and held.ending is None
            ]
            overdue = [
                held
                for held in self._held.values()
                if held.ending_by is not None and held.ending_by <= now and not held.settled
            ]
        for held in expired:
            self._end(held, execute.timed_out(held.run, self.options.retry, self._rng))
        for held in overdue:
            # The task ignored the request to stop: record the decision anyway.
            if held.ending is not None:
                self._settle(held, held.ending)

    def _end(self, held: _Held, ending: Completion) -> None:
        """Decide how the attempt ends (timeout, cancel) and ask the task to stop."""
        with self._lock:
            if held.settled or held.ending is not None:
                return
            held.ending = ending
            held.ending_by = time.monotonic() + self.options.end_grace
        held.ctx._request_cancel()
        self._wake.set()

    # -- executing -------------------------------------------------------------------
    def _dispatch(self, run: ClaimedRun) -> None:
        ctx = TaskContext(
            run_id=run.id,
            type=run.type,
            payload=run.payload,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            progress=functools.partial(self._report, run),
        )
        deadline = time.monotonic() + run.timeout if run.timeout else None
        held = _Held(run=run, ctx=ctx, deadline=deadline)
        with self._lock:
            self._held[run.id] = held
        spec = self.registry.get(run.type)
        if spec is None:
            error = LookupError(
                f"This worker has no task registered for type {run.type!r}; start a worker "
                f"with the module that defines it (--tasks). Known here: "
                f"{', '.join(self.registry.names()) or 'none'}"
            )
            self._settle(held, execute.failure(run, error, self.options.retry, self._rng))
            return
        if spec.is_async:
            future = asyncio.run_coroutine_threadsafe(spec.func(ctx), self._event_loop())
            future.add_done_callback(functools.partial(self._after_async, held))
        else:
            self._pool.submit(self._call, held, spec.func)

    def _call(self, held: _Held, func: Any) -> None:
        try:
            result = func(held.ctx)
        except BaseException as exc:  # the task's failure is data, not our crash
            completion = execute.failure(held.run, exc, self.options.retry, self._rng)
        else:
            completion = execute.success(held.run, result)
        held.returned.set()
        self._settle(held, completion)

    def _after_async(self, held: _Held, future: Future[Any]) -> None:
        held.returned.set()
        error = future.exception()
        if error is not None:
            self._settle(held, execute.failure(held.run, error, self.options.retry, self._rng))
        else:
            self._settle(held, execute.success(held.run, future.result()))

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._async_loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="runwright-async", daemon=True).start()
            self._async_loop = loop
        return self._async_loop

    def _settle(self, held: _Held, completion: Completion | None) -> bool:
        """End an attempt once: the first of task, timeout, cancel or loss wins."""
        with self._lock:
            if held.settled:
                return False
            if held.releasing and (completion is None or completion.kind != "succeeded"):
                return False  # the shutdown requeues it; only a success is worth keeping
            if held.ending is not None and completion is not None:
                completion = held.ending  # the timeout or cancel decided first
            held.settled = True
            if completion is None:
                self._held.pop(held.run.id, None)
            else:
                self._done.append(completion)
        self._wake.set()
        return True

    def _report(self, run: ClaimedRun, percent: float | None, message: str | None) -> None:
        update = ProgressUpdate(
            run_id=run.id, lease_token=run.lease_token, percent=percent, message=message
        )
        with self._lock:
            self._progress[run.id] = update

    # -- heartbeat -------------------------------------------------------------------
    def _beat(self) -> None:
        interval = self.options.heartbeat_interval
        recover_every = max(interval, self.options.lease_timeout / 3)
        next_recovery = time.monotonic() + recover_every
        while not self._stopped.wait(interval):
            try:
                self._heartbeat_once()
                if self.options.recover and time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + recover_every
                    report = self._queue.recover_expired(self.options.retry, self._rng)
                    if report.requeued or report.failed:
                        log.warning(
                            "recovered runs of lost workers: requeued %s, failed %s",
                            list(report.requeued),
                            list(report.failed),
                        )
            except DatabaseError as exc:
                log.warning("worker %s heartbeat failed: %s", self.id, exc.message)

    def _heartbeat_once(self) -> None:
        with self._lock:
            ids = [run_id for run_id, held in self._held.items()]
        reply = self._queue.heartbeat(self.id, ids)
        for run_id in ids:
            with self._lock:
                held = self._held.get(run_id)
            if held is None:
                continue
            if run_id not in reply.alive:
                if self._settle(held, None):
                    held.ctx._request_cancel()
                    log.warning(
                        "run %d is no longer held by worker %s (its lease expired and it was "
                        "recovered); this attempt's result will be discarded",
                        run_id,
                        self.id,
                    )
            elif run_id in reply.cancel:
                self._end(held, execute.canceled(held.run))

    # -- shutdown --------------------------------------------------------------------
    def _shutdown(self) -> None:
        grace = self._grace_override
        if grace is None:
            grace = self.options.shutdown_grace
        deadline = time.monotonic() + grace
        try:
            self._workers.mark_stopping(self.id)
        except DatabaseError as exc:
            log.warning("worker %s: %s", self.id, exc.message)
        while time.monotonic() < deadline and self.running:
            self._wake.clear()
            self._flush_quietly()
            self._wake.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        with self._lock:
            decided = [h for h in self._held.values() if not h.settled and h.ending is not None]
        for held in decided:  # timed out or canceled already: record that, do not requeue
            if held.ending is not None:
                self._settle(held, held.ending)
        with self._lock:
            leftover = [held for held in self._held.values() if not held.settled]
            for held in leftover:
                held.releasing = True
        for held in leftover:
            held.ctx._request_cancel()
        # A requeued run may be claimed elsewhere at once: first let the canceled
        # executions stop (a job's process group gets SIGTERM, then SIGKILL).
        stop_by = time.monotonic() + self.options.stop_wait
        for held in leftover:
            held.returned.wait(max(0.0, stop_by - time.monotonic()))
        with self._lock:
            leftover = [held for held in leftover if not held.settled]
            for held in leftover:
                held.settled = True
        if leftover:
            # Job processes still alive must be gone before their runs are requeued.
            process.kill_groups(h.run.id for h in leftover)
        self._flush_quietly()
        lingering = [h.run.id for h in leftover if not h.returned.is_set()]
        if lingering and self._exit_process is not None:
            # Threads cannot be killed: a task ignoring cancellation would go on while
            # another worker runs its requeued run. Requeue, then end the process at once.
            log.warning("runs %s ignored cancellation; requeueing them and exiting", lingering)
            self._deregister()
            self._release(leftover, delay=EXIT_MARGIN)
            self._exit_process()
        if lingering:
            log.warning(
                "runs %s ignored cancellation; their threads go on until they return", lingering
            )
        self._release(leftover)

    def _release(self, leftover: list[_Held], delay: float = 0.0) -> None:
        if not leftover:
            return
        try:
            count = self._queue.release(
                [(h.run.id, h.run.lease_token) for h in leftover], delay=delay
            )
            log.warning("worker %s requeued %d unfinished runs", self.id, count)
        except DatabaseError as exc:
            log.warning(
                "worker %s could not requeue its runs (%s); they will be "
                "recovered when their lease expires",
                self.id,
                exc.message,
            )

    def _flush_quietly(self) -> None:
        completions, progress = self._take_pending()
        if not completions and not progress:
            return
        try:
            refused = self._queue.finish(completions, progress)
        except DatabaseError as exc:
            self._requeue_pending(completions, progress)
            log.warning("worker %s: %s", self.id, exc.message)
            return
        self._forget(completions, refused)

    def _deregister(self) -> None:
        try:
            self._workers.deregister(self.id)
        except DatabaseError as exc:
            log.warning("worker %s could not deregister: %s", self.id, exc.message)

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        if self._waker is not None and self._waker_event is not None:
            self._waker.unsubscribe(self._waker_event)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._async_loop is not None:
            self._async_loop.call_soon_threadsafe(self._async_loop.stop)
        self._deregister()
        log.info("worker %s stopped after executing %d runs", self.id, self.executed)
        self._stopped.set()
