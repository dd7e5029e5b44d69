"""Webhook calls stored by group commit.

A burst of calls must not cost a transaction each: one thread stores every call that
arrived while the previous transaction committed, with the runs of the accepted ones,
in a single transaction (the batch grows with the load, and an idle server stores a
lone call at once). The signature's unique index still refuses a replay, even one
sent to another server at the same moment: a batch that loses such a race is stored
again call by call, and only the replay is refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runwright.db.engine import write
from runwright.db.errors import translate_errors
from runwright.db.tables import webhook_calls
from runwright.errors import DatabaseConflict, DatabaseError, RunwrightError, Unauthorized
from runwright.model.runs import Run, SubmitRequest
from runwright.services.jobs import JobService

log = logging.getLogger(__name__)

MAX_BATCH = 500
KEEP_CALLS = 100  # calls kept per webhook, besides those young enough to catch a replay
PRUNE_EVERY = 200  # calls stored for a webhook between two prunes of its history
MAX_RECENT = 200_000  # signatures remembered in memory; older ones the database refuses
REPLAY = "This signed request was already received (a replay); sign each call anew."


@dataclass(slots=True, kw_only=True)
class PendingCall:
    """A call to record; with ``request``, the run it starts."""

    webhook_id: int
    received_at: float
    source: str | None
    method: str
    status_code: int
    error: str | None = None
    signature: str | None = None
    request: SubmitRequest | None = None
    replayed: bool = False
    outcome: Run | None = None
    error_raised: RunwrightError | None = None

    def row(self, run_id: int | None) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "received_at": self.received_at,
            "source": (self.source or "")[:100] or None,
            "method": self.method[:10],
            "status_code": self.status_code,
            "run_id": run_id,
            "error": (self.error or "")[:1000] or None,
            "signature": self.signature,
        }

    def refuse_as_replay(self) -> None:
        self.status_code = Unauthorized.status_code
        self.error = REPLAY
        self.signature = None
        self.request = None
        self.replayed = True


@dataclass(slots=True)
class _Waiting:
    call: PendingCall
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Run | None]


def _resolve(waiting: list[_Waiting]) -> None:
    for item in waiting:
        if item.future.done():
            continue  # the caller went away (client disconnected)
        if item.call.error_raised is not None:
            item.future.set_exception(item.call.error_raised)
        else:
            item.future.set_result(item.call.outcome)


class CallIntake:
    def __init__(self, *, engine: Engine, jobs: JobService, replay_window: float) -> None:
        self._engine = engine
        self._jobs = jobs
        self._replay_window = replay_window
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._since_prune: collections.Counter[int] = collections.Counter()
        self._recent: dict[str, float] = {}  # signatures stored lately -> when
        self._recent_lock = threading.Lock()

    async def store(self, call: PendingCall) -> Run | None:
        """Store the call with the next batch (and start its run); returns the run,
        None for a refused call, or raises (a replay: Unauthorized)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(call, loop, loop.create_future())
        self._ensure_thread()
        self._queue.put(waiting)
        return await waiting.future

    def store_now(self, call: PendingCall) -> Run | None:
        """``store`` for a caller on a thread of its own: a transaction of its own."""
        self._commit([call])
        if call.error_raised is not None:
            raise call.error_raised
        return call.outcome

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="runwright-webhook-intake", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            calls = [item.call for item in batch]
            try:
                self._commit(calls)
            except Exception:  # never leave a caller waiting
                log.exception("could not store %d webhook calls", len(calls))
                for call in calls:
                    if call.outcome is None and call.error_raised is None:
                        call.error_raised = DatabaseError(
                            "The call could not be recorded (see the server log); send it again."
                        )
            # One wake-up per event loop for the whole batch.
            by_loop: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}
            for item in batch:
                by_loop.setdefault(item.loop, []).append(item)
            for loop, items in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(_resolve, items)

    def _commit(self, batch: list[PendingCall]) -> None:
        try:
            runs = self._store(batch)
        except RunwrightError as exc:
            if len(batch) > 1:
                # One call (a replay raced with another server, say) must not sink the
                # others: store them one by one.
                for call in batch:
                    self._commit([call])
                return
            call = batch[0]
            if isinstance(exc, DatabaseConflict) and call.signature is not None:
                call.refuse_as_replay()
                self._commit([call])
                return
            call.error_raised = exc
            return
        self._remember(batch)
        if any(run is not None for run in runs):
            self._jobs.started()
        for call, run in zip(batch, runs, strict=True):
            if call.replayed:
                call.error_raised = Unauthorized(REPLAY)
            else:
                call.outcome = run

    def _store(self, batch: list[PendingCall]) -> list[Run | None]:
        with translate_errors("record webhook calls"), write(self._engine) as conn:
            self._refuse_replays(batch)
            requests = [call.request for call in batch if call.request is not None]
            stored = self._jobs.start_on(conn, requests)
            started = iter(stored)
            runs = [next(started) if call.request is not None else None for call in batch]
            conn.execute(
                sa.insert(webhook_calls),
                [call.row(run.id if run else None) for call, run in zip(batch, runs, strict=True)],
            )
            self._prune(conn, batch)
            self._jobs.count_on(conn, stored)
        return runs

    def _refuse_replays(self, batch: list[PendingCall]) -> None:
        """Refuse, without asking the database, a signature seen here lately or twice
        in the batch. One first sent to another server is refused by the unique
        index when the batch commits (and the batch is stored again call by call)."""
        cutoff = time.monotonic() - self._replay_window
        seen: set[str] = set()
        with self._recent_lock:  # store_now runs on its callers' threads
            while self._recent:
                oldest = next(iter(self._recent))
                if self._recent[oldest] >= cutoff and len(self._recent) <= MAX_RECENT:
                    break
                del self._recent[oldest]
            for call in batch:
                if call.signature is None:
                    continue
                if call.signature in self._recent or call.signature in seen:
                    call.refuse_as_replay()
                else:
                    seen.add(call.signature)

    def _remember(self, batch: list[PendingCall]) -> None:
        now = time.monotonic()
        with self._recent_lock:
            for call in batch:
                if call.signature is not None:
                    self._recent[call.signature] = now

    def _prune(self, conn: sa.Connection, batch: list[PendingCall]) -> None:
        """Keep a webhook's last KEEP_CALLS calls, and every call young enough that
        its signature must still be refused as a replay."""
        for call in batch:
            self._since_prune[call.webhook_id] += 1
        due = [w for w, count in self._since_prune.items() if count >= PRUNE_EVERY]
        for webhook_id in due:
            del self._since_prune[webhook_id]
            boundary = conn.execute(
                sa.select(webhook_calls.c.id)
                .where(webhook_calls.c.webhook_id == webhook_id)
                .order_by(webhook_calls.c.id.desc())
                .offset(KEEP_CALLS)
                .limit(1)
            ).scalar()
            if boundary is not None:
                oldest = max(call.received_at for call in batch) - self._replay_window
                conn.execute(
                    sa.delete(webhook_calls).where(
                        webhook_calls.c.webhook_id == webhook_id,
                        webhook_calls.c.id <= boundary,
                        webhook_calls.c.received_at < oldest,
                    )
                )
