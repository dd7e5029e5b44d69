"""Wake-ups for idle workers.

* In one process (the all-in-one server) a submit wakes the embedded worker directly.
* On PostgreSQL a submit sends ``NOTIFY``; ``PgListener`` holds a ``LISTEN`` connection
  and reconnects by itself after the database restarts.
* On SQLite a separate worker process watches ``PRAGMA data_version``, which changes
  whenever another connection commits: a cheap local check instead of a claim query.
Polling every ``poll_interval`` remains the fallback in every case.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

import psycopg
import sqlalchemy as sa

from runwright.db.queue import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Waker:
    """In-process wake-up: any number of waiting workers, any number of wakers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[threading.Event] = []

    def subscribe_event(self, event: threading.Event) -> None:
        with self._lock:
            self._events.append(event)

    def unsubscribe(self, event: threading.Event) -> None:
        with self._lock:
            if event in self._events:
                self._events.remove(event)

    def wake(self) -> None:
        with self._lock:
            events = list(self._events)
        for event in events:
            event.set()


class PgListener(threading.Thread):
    """LISTENs for new runs and calls ``on_notify``; reconnects after failures."""

    def __init__(self, url: str, on_notify: Callable[[], None]) -> None:
        super().__init__(name="runwright-listen", daemon=True)
        self._dsn = _psycopg_dsn(url)
        self._on_notify = on_notify
        self._halt = threading.Event()
        self.connected = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        delay = 0.2
        while not self._halt.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.connected.set()
                    delay = 0.2
                    # A missed notification during a reconnect is covered by this wake-up.
                    self._on_notify()
                    while not self._halt.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._on_notify()
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
                self._halt.wait(delay)
                delay = min(delay * 2, 5.0)


class SqliteChangeWatcher(threading.Thread):
    """Calls ``on_change`` soon after another connection commits to the SQLite file."""

    def __init__(self, path: str, on_change: Callable[[], None], interval: float = 0.002) -> None:
        super().__init__(name="runwright-sqlite-watch", daemon=True)
        self._path = path
        self._on_change = on_change
        self._interval = interval
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._halt.wait(self._interval):
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current != last:
                    last = current
                    self._on_change()
        except sqlite3.Error as exc:
            log.warning("stopped watching the SQLite file for changes: %s", exc)
        finally:
            conn.close()


def _psycopg_dsn(url: str) -> str:
    parsed = sa.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
