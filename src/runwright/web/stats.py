"""Read-only aggregates for the dashboard, in SQLAlchemy Core, on SQLite and PostgreSQL.

Timestamps are epoch seconds (floats), so a time bucket is integer arithmetic on
``finished_at``; only the rounding differs between the two databases.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runwright.db.tables import runs
from runwright.model.states import FINAL_STATUSES, RunStatus

FINAL = tuple(status.value for status in FINAL_STATUSES)
# Python-side percentiles (SQLite has no percentile aggregate) read at most this many
# durations per window: beyond that the newest ones stand for the rest.
MAX_DURATIONS = 200_000


@dataclass(frozen=True, slots=True)
class Series:
    """Counts per time bucket: ``starts`` are the buckets' start times (epoch seconds),
    ``counts[label][i]`` the runs with that outcome finished in bucket ``i``."""

    starts: list[float]
    counts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(sum(values) for values in self.counts.values())


@dataclass(frozen=True, slots=True)
class Percentiles:
    starts: list[float]
    p50: list[float | None]
    p95: list[float | None]
    overall_p50: float | None
    overall_p95: float | None
    count: int


def _window(since: float, now: float, width: float) -> list[float]:
    buckets = max(1, math.ceil((now - since) / width))
    return [since + i * width for i in range(buckets)]


def _bucket(engine: Engine, since: float, width: float) -> sa.ColumnElement[int]:
    offset = (runs.c.finished_at - sa.literal(since, sa.Float)) / sa.literal(width, sa.Float)
    if engine.dialect.name == "postgresql":
        return sa.cast(sa.func.floor(offset), sa.Integer)
    # SQLite's CAST truncates toward zero: the same as floor for the non-negative
    # offsets the WHERE clause keeps.
    return sa.cast(offset, sa.Integer)


def _finished_between(since: float, now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        runs.c.status.in_(FINAL),
        runs.c.finished_at >= since,
        runs.c.finished_at < now,
    )


def label_of(status: str, outcome: str | None) -> str:
    """What the chart groups by: the outcome when there is one, else the status."""
    if outcome and outcome != status:
        return outcome
    return status


def runs_by_outcome(
    engine: Engine, *, window: float, width: float, now: float | None = None
) -> Series:
    """Finished runs per bucket of ``width`` seconds over the last ``window`` seconds."""
    end = time.time() if now is None else now
    since = end - window
    starts = _window(since, end, width)
    bucket = _bucket(engine, since, width).label("bucket")
    statement = (
        sa.select(bucket, runs.c.status, runs.c.outcome, sa.func.count().label("n"))
        .where(_finished_between(since, end))
        .group_by(bucket, runs.c.status, runs.c.outcome)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    counts: dict[str, list[int]] = {}
    for row in rows:
        index = min(max(int(row.bucket), 0), len(starts) - 1)
        label = label_of(row.status, row.outcome)
        counts.setdefault(label, [0] * len(starts))[index] += int(row.n)
    return Series(starts=starts, counts=dict(sorted(counts.items())))


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, like PostgreSQL's percentile_cont."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return sorted_values[low]
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def duration_percentiles(
    engine: Engine, *, window: float, width: float, now: float | None = None
) -> Percentiles:
    """p50 and p95 of run durations (start to finish of the last attempt) per bucket
    and over the whole window."""
    end = time.time() if now is None else now
    since = end - window
    starts = _window(since, end, width)
    took = (runs.c.finished_at - runs.c.started_at).label("took")
    where = sa.and_(_finished_between(since, end), runs.c.started_at.is_not(None))
    if engine.dialect.name == "postgresql":
        return _percentiles_in_database(engine, starts, since, width, took, where)
    bucket = _bucket(engine, since, width).label("bucket")
    statement = (
        sa.select(bucket, took)
        .where(where)
        .order_by(runs.c.finished_at.desc())
        .limit(MAX_DURATIONS)
    )
    per_bucket: dict[int, list[float]] = defaultdict(list)
    every: list[float] = []
    with engine.connect() as conn:
        for row in conn.execute(statement):
            value = max(0.0, float(row.took))
            per_bucket[min(max(int(row.bucket), 0), len(starts) - 1)].append(value)
            every.append(value)
    p50: list[float | None] = []
    p95: list[float | None] = []
    for index in range(len(starts)):
        values = sorted(per_bucket.get(index, []))
        p50.append(_percentile(values, 0.5))
        p95.append(_percentile(values, 0.95))
    every.sort()
    return Percentiles(
        starts=starts,
        p50=p50,
        p95=p95,
        overall_p50=_percentile(every, 0.5),
        overall_p95=_percentile(every, 0.95),
        count=len(every),
    )


def _percentiles_in_database(
    engine: Engine,
    starts: list[float],
    since: float,
    width: float,
    took: sa.ColumnElement[float],
    where: sa.ColumnElement[bool],
) -> Percentiles:
    bucket = _bucket(engine, since, width).label("bucket")
    p50 = sa.func.percentile_cont(0.5).within_group(took)
    p95 = sa.func.percentile_cont(0.95).within_group(took)
    per_bucket = sa.select(bucket, p50.label("p50"), p95.label("p95")).where(where).group_by(bucket)
    overall = sa.select(p50.label("p50"), p95.label("p95"), sa.func.count().label("n")).where(where)
    with engine.connect() as conn:
        rows = conn.execute(per_bucket).all()
        total = conn.execute(overall).one()
    p50s: list[float | None] = [None] * len(starts)
    p95s: list[float | None] = [None] * len(starts)
    for row in rows:
        index = min(max(int(row.bucket), 0), len(starts) - 1)
        p50s[index] = float(row.p50)
        p95s[index] = float(row.p95)
    return Percentiles(
        starts=starts,
        p50=p50s,
        p95=p95s,
        overall_p50=None if total.p50 is None else float(total.p50),
        overall_p95=None if total.p95 is None else float(total.p95),
        count=int(total.n),
    )


def queue_depth(engine: Engine) -> dict[str, int]:
    """Queued runs per queue (held runs included: they wait too)."""
    statement = (
        sa.select(runs.c.queue, sa.func.count().label("n"))
        .where(runs.c.status == RunStatus.QUEUED.value)
        .group_by(runs.c.queue)
        .order_by(runs.c.queue)
    )
    with engine.connect() as conn:
        return {row.queue: int(row.n) for row in conn.execute(statement)}


def status_counts(engine: Engine, *, since: float) -> dict[str, int]:
    """Runs created since ``since`` per status: the dashboard's headline numbers."""
    statement = (
        sa.select(runs.c.status, sa.func.count().label("n"))
        .where(runs.c.created_at >= since)
        .group_by(runs.c.status)
    )
    with engine.connect() as conn:
        return {row.status: int(row.n) for row in conn.execute(statement)}
