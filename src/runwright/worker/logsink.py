"""Batches log lines from every running job of a worker into few database writes.

Lines are appended from reader threads; one writer thread stores them when 2,000
have gathered or 50 ms have passed, whichever comes first (the log-capture hot path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from runwright.db.logs import LogRepository
from runwright.errors import DatabaseError, DatabaseUnavailable
from runwright.model.runs import LogLine

log = logging.getLogger(__name__)

BATCH_LINES = 2000
BATCH_SECONDS = 0.05


class LogSink:
    def __init__(self, logs: LogRepository) -> None:
        self._logs = logs
        self._pending: deque[LogLine] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._stored: dict[int, int] = {}  # run id -> highest seq stored
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runwright-logs", daemon=True)
        self._thread.start()

    def emit(self, line: LogLine) -> None:
        self._pending.append(line)
        if len(self._pending) >= BATCH_LINES and not self._wake.is_set():
            self._wake.set()

    def wait_stored(self, run_id: int, seq: int, timeout: float = 60.0) -> bool:
        """Block until the run's lines up to ``seq`` are in the database."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._written:
            while self._stored.get(run_id, 0) < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._written.wait(left)
            self._stored.pop(run_id, None)
        return True

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set() or self._pending:
            self._wake.wait(BATCH_SECONDS)
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            batch: list[LogLine] = []
            while self._pending and len(batch) < BATCH_LINES * 5:
                batch.append(self._pending.popleft())
            try:
                self._logs.append(batch)
            except DatabaseUnavailable as exc:
                log.warning("could not store %d log lines, retrying: %s", len(batch), exc.message)
                self._pending.extendleft(reversed(batch))
                self._stop.wait(0.5)
                return
            except DatabaseError:
                # The database refuses something in this batch, which mixes every run of
                # the worker: store it run by run, then line by line, losing only what
                # is refused.
                self._store_apart(batch)
            self._mark_stored(batch)

    def _store_apart(self, batch: list[LogLine]) -> None:
        by_run: dict[int, list[LogLine]] = {}
        for line in batch:
            by_run.setdefault(line.run_id, []).append(line)
        for lines in by_run.values():
            try:
                self._logs.append(lines)
                continue
            except DatabaseError:
                pass
            for line in lines:
                try:
                    self._logs.append([line])
                except DatabaseError as exc:
                    log.error(
                        "dropped line %d of run %d, which the database refused: %s",
                        line.seq,
                        line.run_id,
                        exc.message,
                    )

    def _mark_stored(self, batch: list[LogLine]) -> None:
        """Lines stored (or refused for good): nobody needs to wait for them any more."""
        with self._written:
            for line in batch:
                if line.seq > self._stored.get(line.run_id, 0):
                    self._stored[line.run_id] = line.seq
            self._written.notify_all()
