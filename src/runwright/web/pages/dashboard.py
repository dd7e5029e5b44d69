"""The dashboard: what runs now, what failed, what comes next, and the trends."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from runwright.api.auth import PagePrincipalDep
from runwright.db.runs import RunFilter
from runwright.model.states import RunStatus
from runwright.services.runtime import Runtime
from runwright.web import stats
from runwright.web.badges import badge
from runwright.web.pages.common import runtime_of
from runwright.web.templating import render

router = APIRouter(include_in_schema=False)

HOUR = 3600.0
RANGES = {"24h": (24 * HOUR, HOUR), "7d": (7 * 24 * HOUR, HOUR)}


def live_parts(runtime: Runtime) -> dict[str, Any]:
    """What the dashboard refreshes every few seconds."""
    running = runtime.runs.list(RunFilter(statuses=[RunStatus.RUNNING], limit=20))
    return {
        "running": running,
        "queues": stats.queue_depth(runtime.engine),
        "workers": runtime.runs.workers(),
    }


def chart_data(runtime: Runtime, window: float, width: float, now: float) -> dict[str, Any]:
    series = stats.runs_by_outcome(runtime.engine, window=window, width=width, now=now)
    timing = stats.duration_percentiles(runtime.engine, window=window, width=width, now=now)
    datasets = []
    for label, counts in series.counts.items():
        look = badge(label, "outcome")
        assert look is not None
        datasets.append({"key": label, "label": look.label, "tone": look.tone, "data": counts})
    return {
        "starts": series.starts,
        "outcomes": datasets,
        "total": series.total,
        "p50": timing.p50,
        "p95": timing.p95,
        "overall_p50": timing.overall_p50,
        "overall_p95": timing.overall_p95,
        "timed": timing.count,
    }


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request,
    principal: PagePrincipalDep,
    range_: Annotated[str, Query(alias="range", max_length=5)] = "24h",
    fragment: Annotated[str, Query(max_length=10)] = "",
) -> HTMLResponse:
    runtime = runtime_of(request)
    if fragment == "live":
        return render(request, principal, "_dashboard_live.html", live_parts(runtime))
    range_ = range_ if range_ in RANGES else "24h"
    window, width = RANGES[range_]
    now = time.time()
    schedules = [s for s in runtime.schedules.list() if s.enabled and s.next_fire_at]
    schedules.sort(key=lambda s: s.next_fire_at or 0)
    context = {
        **live_parts(runtime),
        "range": range_,
        "charts": chart_data(runtime, window, width, now),
        "counts": stats.status_counts(runtime.engine, since=now - window),
        "failures": runtime.runs.list(RunFilter(statuses=[RunStatus.FAILED], limit=8)),
        "upcoming": schedules[:8],
    }
    return render(request, principal, "dashboard.html", context, section="dashboard")
