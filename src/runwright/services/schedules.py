"""Schedules: manage them, and fire the due ones (the scheduler's main work)."""

from __future__ import annotations

import builtins
import logging
import time
from dataclasses import dataclass
from typing import Any

from runwright.db.schedules import Fire, Schedule, ScheduleRepository
from runwright.errors import Conflict, InvalidRequest, NotFound, RunwrightError
from runwright.model.manifest import check_environment
from runwright.model.params import parse_specs, validate_params
from runwright.model.runs import Job
from runwright.model.schedule import MISFIRE_POLICIES, Timing, check_cron, check_timezone, plan
from runwright.services.jobs import JobService, RunOptions, Skipped

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    cron: str
    timezone: str = "UTC"
    start_at: float | None = None
    end_at: float | None = None
    params: dict[str, Any] | None = None
    environment: str | None = None
    misfire: str = "skip"
    enabled: bool = True
    description: str = ""


TICK_CHUNK = 500  # schedules fired per transaction: workers start the first while the rest fire


@dataclass(frozen=True, slots=True)
class TickReport:
    started: int = 0
    skipped: int = 0
    failed: int = 0
    missed: int = 0


def timing_of(schedule: Schedule) -> Timing:
    return Timing(
        cron=schedule.cron,
        timezone=schedule.timezone,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )


class ScheduleService:
    def __init__(
        self, *, schedules: ScheduleRepository, jobs: JobService, misfire_grace: float = 60.0
    ) -> None:
        self._schedules = schedules
        self._jobs = jobs
        self._grace = misfire_grace

    # -- management --------------------------------------------------------------------
    def create(self, job: str, spec: ScheduleSpec) -> Schedule:
        found = self._jobs.get(job)
        values = self._checked(found.name, found.parameters, spec)
        now = time.time()
        timing = Timing(
            cron=values["cron"],
            timezone=values["timezone"],
            start_at=spec.start_at,
            end_at=spec.end_at,
        )
        return self._schedules.create(
            {
                **values,
                "job_id": found.id,
                "next_fire_at": timing.next_after(now),
                "created_at": now,
                "updated_at": now,
            }
        )

    def _checked(
        self, job: str, parameters: list[dict[str, Any]], spec: ScheduleSpec
    ) -> dict[str, Any]:
        cron = check_cron(spec.cron)
        check_timezone(spec.timezone)
        if spec.misfire not in MISFIRE_POLICIES:
            raise InvalidRequest(
                f"misfire must be skip (missed fire times are dropped) or catch_up (one run "
                f"for the missed window), not {spec.misfire!r}."
            )
        if spec.start_at is not None and spec.end_at is not None and spec.end_at <= spec.start_at:
            raise InvalidRequest("end must be later than start.")
        params = validate_params(parse_specs(parameters), spec.params or {}, job=job)
        return {
            "cron": cron,
            "timezone": spec.timezone,
            "start_at": spec.start_at,
            "end_at": spec.end_at,
            "params": params,
            "environment": check_environment(spec.environment) if spec.environment else None,
            "misfire": spec.misfire,
            "enabled": spec.enabled,
            "description": spec.description,
        }

    def get(self, schedule_id: int) -> Schedule:
        found = self._schedules.get(schedule_id)
        if found is None:
            raise NotFound(
                f"Schedule {schedule_id} does not exist; list them with `runwright schedule list`."
            )
        return found

    def list(self, job: str | None = None) -> builtins.list[Schedule]:
        job_id = self._jobs.get(job).id if job else None
        return self._schedules.list(job_id)

    def set_enabled(self, schedule_id: int, enabled: bool) -> Schedule:
        schedule = self.get(schedule_id)
        values: dict[str, Any] = {"enabled": enabled, "updated_at": time.time()}
        if enabled:
            # Enabling starts from now: the time it was off is not a misfire.
            values["next_fire_at"] = timing_of(schedule).next_after(time.time())
        self._schedules.update(schedule_id, values)
        return self.get(schedule_id)

    def delete(self, schedule_id: int) -> None:
        if not self._schedules.delete(schedule_id):
            raise NotFound(f"Schedule {schedule_id} does not exist.")

    def upcoming(self, schedule_id: int, count: int = 5) -> builtins.list[float]:
        schedule = self.get(schedule_id)
        return timing_of(schedule).upcoming(time.time(), count)

    def fires(self, schedule_id: int, limit: int = 20) -> builtins.list[Fire]:
        self.get(schedule_id)
        return self._schedules.fires(schedule_id, limit)

    # -- firing ------------------------------------------------------------------------
    def next_due(self) -> float | None:
        """When the next schedule fires (epoch seconds), if any is enabled."""
        return self._schedules.next_due()

    def tick(
        self, now: float | None = None, limit: int = 2000, chunk: int = TICK_CHUNK
    ) -> TickReport:
        """Fire every due schedule once (at most ``limit``); safe to run in several
        processes at once.

        Due schedules are taken ``chunk`` at a time, a transaction each: the runs of
        the first ones are committed, and workers start them, while the next are being
        fired. Within a chunk, the fires of a job that allows overlapping runs are
        started together (a thousand schedules due in the same second cost a few
        statements); jobs with a concurrency policy go one fire at a time, in order."""
        now = time.time() if now is None else now
        total = TickReport()
        for _ in range(max(1, -(-limit // chunk))):
            report, taken = self._tick_chunk(now, min(chunk, limit))
            total = TickReport(
                started=total.started + report.started,
                skipped=total.skipped + report.skipped,
                failed=total.failed + report.failed,
                missed=total.missed + report.missed,
            )
            if taken < chunk:
                break
        return total

    def _tick_chunk(self, now: float, limit: int) -> tuple[TickReport, int]:
        counts = {"started": 0, "skipped": 0, "failed": 0}
        missed = 0
        with self._schedules.due(now, limit) as (conn, due):
            if not due:
                return TickReport(), 0
            jobs = self._jobs.by_ids(sorted({s.job_id for s in due}))
            plans = {}
            batches: dict[int, builtins.list[tuple[Schedule, float]]] = {}
            fires: builtins.list[Fire] = []
            for schedule in due:
                assert schedule.next_fire_at is not None
                decided = plan(
                    timing_of(schedule), schedule.next_fire_at, now, schedule.misfire, self._grace
                )
                plans[schedule.id] = decided
                if decided.missed:
                    missed += len(decided.missed)
                    log.warning(
                        "schedule %s of job %s missed %d fire time(s) (policy %s)",
                        schedule.id,
                        schedule.job,
                        len(decided.missed),
                        schedule.misfire,
                    )
                job = jobs.get(schedule.job_id)
                batchable = (
                    job is not None
                    and job.concurrency == "allow"
                    and job.enabled
                    and not job.archived
                )
                for fire_time in decided.fire:
                    if batchable:
                        batches.setdefault(schedule.job_id, []).append((schedule, fire_time))
                    else:
                        fires.append(self._fire(schedule, fire_time))
            for job_id, items in batches.items():
                fires.extend(self._fire_batch(jobs[job_id], items))
            recorded = self._schedules.record_fires(conn, fires)
            last_runs: dict[int, int] = {}
            for fire in recorded:
                counts[fire.status] = counts.get(fire.status, 0) + 1
                if fire.run_id is not None:
                    last_runs[fire.schedule_id] = fire.run_id
            self._schedules.advance_many(
                conn,
                [
                    (
                        schedule,
                        plans[schedule.id].next_fire,
                        plans[schedule.id].fire[-1] if plans[schedule.id].fire else None,
                        last_runs.get(schedule.id),
                    )
                    for schedule in due
                ],
            )
        report = TickReport(
            started=counts["started"],
            skipped=counts["skipped"],
            failed=counts["failed"],
            missed=missed,
        )
        return report, len(due)

    def _options(self, schedule: Schedule, fire_time: float) -> RunOptions:
        return RunOptions(
            params=dict(schedule.params),
            environment=schedule.environment,
            trigger="schedule",
            trigger_id=schedule.id,
            fired_at=fire_time,
            # The same fire time can only ever make one run, whoever fires it.
            idempotency_key=f"schedule:{schedule.id}:{fire_time:.3f}",
        )

    def _fire_batch(
        self, job: Job, items: builtins.list[tuple[Schedule, float]]
    ) -> builtins.list[Fire]:
        now = time.time()
        try:
            outcomes = self._jobs.run_batch(job, [self._options(s, f) for s, f in items])
        except (InvalidRequest, Conflict, NotFound):
            return [self._fire(schedule, fire_time) for schedule, fire_time in items]
        fires = []
        for (schedule, fire_time), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, RunwrightError):
                fires.append(
                    Fire(
                        schedule_id=schedule.id,
                        fire_time=fire_time,
                        status="failed",
                        run_id=None,
                        reason=outcome.message,
                        created_at=now,
                    )
                )
            else:
                fires.append(
                    Fire(
                        schedule_id=schedule.id,
                        fire_time=fire_time,
                        status="started",
                        run_id=outcome,
                        reason=None,
                        created_at=now,
                    )
                )
        return fires

    def _fire(self, schedule: Schedule, fire_time: float) -> Fire:
        now = time.time()
        try:
            run = self._jobs.run(schedule.job, self._options(schedule, fire_time))
        except Skipped as exc:
            return Fire(
                schedule_id=schedule.id,
                fire_time=fire_time,
                status="skipped",
                run_id=None,
                reason=exc.message,
                created_at=now,
            )
        except (InvalidRequest, Conflict, NotFound) as exc:
            log.warning("schedule %s of job %s: %s", schedule.id, schedule.job, exc.message)
            return Fire(
                schedule_id=schedule.id,
                fire_time=fire_time,
                status="failed",
                run_id=None,
                reason=exc.message,
                created_at=now,
            )
        except RunwrightError:
            raise
        return Fire(
            schedule_id=schedule.id,
            fire_time=fire_time,
            status="started",
            run_id=run.id,
            reason=None,
            created_at=now,
        )
