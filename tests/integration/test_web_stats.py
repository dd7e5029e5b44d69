"""The dashboard's statistics (its own SQL) on SQLite and PostgreSQL: runs per hour by
outcome, duration percentiles and queue depth, and the page that shows them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runwright.db.tables import runs as runs_table
from runwright.services.runtime import Runtime
from runwright.web import stats
from tests.integration.test_web_pages import TestClient, client, runtime

__all__ = ["client", "runtime"]  # the fixtures of the pages' tests, on both databases here


# -- dashboard statistics ----------------------------------------------------------------------
def test_dashboard_statistics_per_hour_and_percentiles(
    client: TestClient, runtime: Runtime
) -> None:
    now = 1_900_000_000.0
    rows = [
        # (finished hours ago, duration, status, outcome)
        (0.5, 1.0, "succeeded", None),
        (0.5, 3.0, "succeeded", None),
        (0.6, 10.0, "failed", "timed_out"),
        (2.5, 2.0, "succeeded", "completed_success"),
        (30.0, 5.0, "failed", "error"),  # outside 24 h, inside 7 d
    ]
    with runtime.engine.begin() as conn:
        for index, (hours_ago, took, status, outcome) in enumerate(rows):
            finished = now - hours_ago * 3600
            conn.execute(
                sa.insert(runs_table).values(
                    type="echo",
                    status=status,
                    outcome=outcome,
                    payload=None,
                    created_at=finished - took - 1,
                    scheduled_at=finished - took - 1,
                    started_at=finished - took,
                    finished_at=finished,
                    idempotency_key=f"stats-{index}",
                )
            )
        conn.execute(
            sa.insert(runs_table).values(
                type="echo", status="queued", queue="reports", created_at=now, scheduled_at=now
            )
        )
    day = stats.runs_by_outcome(runtime.engine, window=86400, width=3600, now=now)
    assert len(day.starts) == 24
    assert day.counts["succeeded"][23] == 2
    assert day.counts["timed_out"][23] == 1
    assert day.counts["completed_success"][21] == 1
    assert "error" not in day.counts
    assert day.total == 4
    week = stats.runs_by_outcome(runtime.engine, window=7 * 86400, width=3600, now=now)
    assert week.total == 5
    assert len(week.starts) == 168
    timing = stats.duration_percentiles(runtime.engine, window=86400, width=3600, now=now)
    assert timing.count == 4
    assert timing.p50[23] == pytest.approx(3.0)
    assert timing.p95[23] == pytest.approx(9.3)
    assert timing.p50[0] is None
    assert timing.overall_p50 == pytest.approx(2.5)
    assert stats.queue_depth(runtime.engine) == {"reports": 1}
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="chart-data"' in page.text
    assert "reports" in page.text
