"""Runs: the list with filters, and a run's page with its live parts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from runwright.api.auth import PagePrincipalDep
from runwright.api.routes.steps import run_context
from runwright.db.run_targets import RunTarget
from runwright.db.runs import RunFilter
from runwright.db.steps import RunStep
from runwright.errors import NotFound, RunwrightError
from runwright.model.auth import Principal
from runwright.model.runs import Run
from runwright.model.states import RunStatus
from runwright.web.pages.common import PageError, runtime_of
from runwright.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_TARGET_ROWS = 500  # the page lists this many targets; the API has them all
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Bar:
    """One row of the timeline: where its bar starts and how wide it is, in percent."""

    label: str
    status: str
    kind: str  # step or target
    left: float
    width: float
    title: str


def timeline(run: Run, steps: list[RunStep], targets: list[RunTarget]) -> list[Bar]:
    spans: list[tuple[str, str, str, float | None, float | None]] = [
        (s.step_id, s.status, "step", s.started_at, s.finished_at) for s in steps
    ]
    spans += [
        (
            f"{t.step_id + ' · ' if t.step_id else ''}{t.target}",
            t.status,
            "target",
            t.started_at,
            t.finished_at,
        )
        for t in targets[:MAX_TARGET_ROWS]
    ]
    started = [start for *_, start, _ in spans if start is not None]
    if not started:
        return []
    origin = min([*started, *([run.started_at] if run.started_at else [])])
    now = time.time()
    end = max([finish or now for *_, start, finish in spans if start is not None])
    end = max(end, run.finished_at or (now if not run.status.is_final else end))
    span = max(end - origin, 0.001)
    bars = []
    for label, status, kind, start, finish in spans:
        if start is None:
            bars.append(Bar(label, status, kind, 0.0, 0.0, f"{label}: not started"))
            continue
        stop = finish if finish is not None else now
        left = (start - origin) / span * 100
        width = max((stop - start) / span * 100, 0.6)
        took = f"{stop - start:.1f} s" + ("" if finish is not None else " so far")
        bars.append(
            Bar(label, status, kind, min(left, 99.4), min(width, 100 - left), f"{label}: {took}")
        )
    return bars


def load_run(request: Request, principal: Principal, run_id: str) -> Run:
    if not run_id.isdigit() or not 1 <= int(run_id) <= MAX_ID:
        raise PageError(
            principal,
            f"There is no run {run_id!r}: runs are numbered from 1. Find it in the list of runs.",
            back_url="/runs",
            back_label="the runs",
        )
    try:
        return runtime_of(request).runs.get(int(run_id))
    except NotFound as exc:
        raise PageError(
            principal,
            f"Run {run_id} does not exist (or was purged). Find it in the list of runs.",
            back_url="/runs",
            back_label="the runs",
        ) from exc


def live_context(request: Request, run: Run) -> dict[str, Any]:
    runtime = runtime_of(request)
    steps = runtime.steps.list(run.id)
    targets = runtime.run_targets.list(run.id)
    return {
        "run": run,
        "steps": steps,
        "targets": targets[:MAX_TARGET_ROWS],
        "targets_total": len(targets),
        "bars": timeline(run, steps, targets),
        "final": run.status.is_final,
        "can_cancel": not run.status.is_final,
        "can_retry": run.status in (RunStatus.FAILED, RunStatus.CANCELED),
        "can_resume": run.type == "steps" and run.status in (RunStatus.FAILED, RunStatus.CANCELED),
    }


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, principal: PagePrincipalDep) -> HTMLResponse:
    run = load_run(request, principal, run_id)
    context: Any = None
    context_note = ""
    if run.type == "steps":
        try:
            context = run_context(run.id, runtime_of(request))
        except RunwrightError as exc:
            context_note = exc.message
    return render(
        request,
        principal,
        "run.html",
        {**live_context(request, run), "context": context, "context_note": context_note},
        section="runs",
    )


@router.get("/runs/{run_id}/live", response_class=HTMLResponse)
def run_live(request: Request, run_id: str, principal: PagePrincipalDep) -> HTMLResponse:
    """The parts of the run page that change while it runs (htmx polls this)."""
    run = load_run(request, principal, run_id)
    return render(request, principal, "_run_live.html", live_context(request, run))


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    principal: PagePrincipalDep,
    status: Annotated[list[str] | None, Query()] = None,
    job: Annotated[str, Query(max_length=200)] = "",
    type_: Annotated[str, Query(alias="type", max_length=200)] = "",
    queue: Annotated[str, Query(max_length=100)] = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    known = {s.value for s in RunStatus}
    statuses = [RunStatus(s) for s in status or [] if s in known]
    runs = runtime_of(request).runs.list(
        RunFilter(
            statuses=statuses,
            jobs=[job] if job else [],
            types=[type_] if type_ else [],
            queues=[queue] if queue else [],
            before_id=before,
            limit=PAGE_SIZE,
        )
    )
    filters = {"status": [s.value for s in statuses], "job": job, "type": type_, "queue": queue}
    older = runs[-1].id if len(runs) == PAGE_SIZE else None
    return render(
        request,
        principal,
        "runs.html",
        {"runs": runs, "filters": filters, "older": older, "statuses": list(RunStatus)},
        section="runs",
    )
