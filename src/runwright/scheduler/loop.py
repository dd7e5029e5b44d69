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

FIRE_MARGIN = 0.002  # seconds after a fire time: the pass then finds it due


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
            self._halt.wait(self._pause(started))

    def _pause(self, started: float) -> float:
        """Until the next pass: the interval, or less when a schedule fires sooner, so
        that its runs start on their second rather than up to an interval late."""
        pause = max(0.0, self._interval - (time.monotonic() - started))
        try:
            due = self._runtime.schedules.next_due()
        except RunwrightError:
            return pause
        wait = None if due is None else due - time.time()
        # A fire time already past is one another scheduler holds or one that failed:
        # the regular interval, not a busy loop, until it is handled.
        if wait is not None and wait > 0:
            pause = min(pause, wait + FIRE_MARGIN)
        return pause

    def stop(self) -> None:
        self._halt.set()
