"""Recover runs whose lease expired and forget workers long gone."""

from __future__ import annotations

import logging
import random
import threading

from sqlalchemy.engine import Engine

from runwright.db.queue import RunQueue
from runwright.db.workers import WorkerRegistry
from runwright.errors import DatabaseError
from runwright.model.retry import RetryPolicy

log = logging.getLogger(__name__)

FORGET_WORKERS_AFTER = 3600.0


class Maintenance(threading.Thread):
    def __init__(self, engine: Engine, *, lease_timeout: float, policy: RetryPolicy) -> None:
        super().__init__(name="runwright-maintenance", daemon=True)
        self._queue = RunQueue(engine, lease_timeout=lease_timeout)
        self._workers = WorkerRegistry(engine)
        self._policy = policy
        self._interval = max(0.5, lease_timeout / 3)
        self._rng = random.Random()
        self._halt = threading.Event()

    def tick(self) -> None:
        report = self._queue.recover_expired(self._policy, self._rng)
        if report.requeued or report.failed:
            log.warning(
                "recovered runs of lost workers: requeued %s, failed (worker_lost) %s",
                list(report.requeued),
                list(report.failed),
            )
        self._workers.purge_dead(FORGET_WORKERS_AFTER)

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                self.tick()
            except DatabaseError as exc:
                log.warning("maintenance skipped: %s", exc.message)

    def stop(self) -> None:
        self._halt.set()
