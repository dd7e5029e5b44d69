"""The scheduler's loop: fire due schedules, release runs waiting for their job's
previous run (concurrency ``queue``), and deliver notifications."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runwright.db.schedules import release_held
from runwright.errors import RunwrightError
from runwright.services.runtime import Runtime

log = logging.getLogger(__name__)


class SchedulerLoop(threading.Thread):
    def __init__(self, runtime: Runtime, *, interval: float | None = None) -> None:
        super().__init__(name="runwright-scheduler", daemon=True)
        self._runtime = runtime
        self._interval = interval or runtime.settings.scheduler_interval
        self._halt = threading.Event()
        self.ticks = 0

    def tick(self) -> None:
        now = time.time()
        tasks: list[tuple[str, Callable[[], object]]] = [
            ("fire schedules", lambda: self._runtime.schedules.tick(now)),
            ("release queued runs", lambda: release_held(self._runtime.engine, now)),
            ("notify", self._runtime.notifications.tick),
        ]
        for name, task in tasks:
            try:
                task()
            except RunwrightError as exc:
                log.warning("scheduler could not %s: %s", name, exc.message)
        self.ticks += 1

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("scheduler pass failed; trying again")
            self._halt.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._halt.set()
