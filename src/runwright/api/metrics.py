"""Prometheus metrics computed from the database at scrape time, so that every server
reports the whole fleet's runs, whichever worker executed them."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from runwright.db.runs import RunRepository
from runwright.db.workers import WorkerRegistry
from runwright.model.states import RunStatus

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class RunCollector(Collector):
    def __init__(self, runs: RunRepository, workers: WorkerRegistry, live_age: float) -> None:
        self._runs = runs
        self._workers = workers
        self._live_age = live_age

    def collect(self) -> Iterable[Metric]:
        counts = self._runs.counts()
        by_status = GaugeMetricFamily(
            "runwright_runs", "Runs by queue and status", labels=["queue", "status"]
        )
        depth = GaugeMetricFamily(
            "runwright_queue_depth", "Queued runs per queue", labels=["queue"]
        )
        for queue, status, count in counts:
            by_status.add_metric([queue, status], count)
            if status == RunStatus.QUEUED.value:
                depth.add_metric([queue], count)
        yield by_status
        yield depth
        cumulative: list[int]
        cumulative, total, total_sum = self._runs.duration_buckets(DURATION_BUCKETS)
        buckets = [(str(b), float(c)) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", float(total)))
        histogram = HistogramMetricFamily(
            "runwright_run_duration_seconds", "Duration of finished runs (last attempt)"
        )
        histogram.add_metric([], buckets, total_sum)
        yield histogram
        alive = GaugeMetricFamily("runwright_workers_alive", "Workers with a recent heartbeat")
        alive.add_metric([], len(self._workers.live(self._live_age)))
        yield alive
