"""Triggers over HTTP: schedules, webhooks (management and the /hooks/{token} calls
themselves) and notification rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from runwright.api.deps import RuntimeDep
from runwright.api.routes.runs import ERRORS
from runwright.db.schedules import Fire, Schedule
from runwright.model.runs import to_datetime, to_epoch
from runwright.services.notifications import Delivery, Rule
from runwright.services.schedules import ScheduleSpec
from runwright.services.webhooks import Call, Issued, Webhook

router = APIRouter(tags=["triggers"])


# -- schedules -----------------------------------------------------------------------
class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(description="5 fields, or 6 with seconds first.", examples=["30 6 * * 1-5"])
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin.")
    start_at: datetime | None = None
    end_at: datetime | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = None
    misfire: str = Field(default="skip", description="skip or catch_up.")
    enabled: bool = True
    description: str = Field(default="", max_length=1000)


class ScheduleOut(BaseModel):
    id: int
    job: str
    cron: str
    timezone: str
    start_at: datetime | None
    end_at: datetime | None
    params: dict[str, Any]
    environment: str | None
    misfire: str
    enabled: bool
    description: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_run_id: int | None

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            id=s.id,
            job=s.job,
            cron=s.cron,
            timezone=s.timezone,
            start_at=to_datetime(s.start_at),
            end_at=to_datetime(s.end_at),
            params=s.params,
            environment=s.environment,
            misfire=s.misfire,
            enabled=s.enabled,
            description=s.description,
            next_fire_at=to_datetime(s.next_fire_at),
            last_fire_at=to_datetime(s.last_fire_at),
            last_run_id=s.last_run_id,
        )


class FireOut(BaseModel):
    fire_time: datetime | None
    status: str
    run_id: int | None
    reason: str | None

    @classmethod
    def of(cls, f: Fire) -> FireOut:
        return cls(
            fire_time=to_datetime(f.fire_time), status=f.status, run_id=f.run_id, reason=f.reason
        )


class UpcomingOut(BaseModel):
    timezone: str
    fires: list[str] = Field(description="ISO 8601 in the schedule's time zone.")


@router.post("/api/jobs/{name}/schedules", status_code=status.HTTP_201_CREATED, responses=ERRORS)
def add_schedule(name: str, body: ScheduleIn, runtime: RuntimeDep) -> ScheduleOut:
    """Add a schedule to a job; its parameters are checked against the job's."""
    spec = ScheduleSpec(
        cron=body.cron,
        timezone=body.timezone,
        start_at=to_epoch(body.start_at),
        end_at=to_epoch(body.end_at),
        params=body.params,
        environment=body.environment,
        misfire=body.misfire,
        enabled=body.enabled,
        description=body.description,
    )
    return ScheduleOut.of(runtime.schedules.create(name, spec))


@router.get("/api/schedules", responses=ERRORS)
def list_schedules(
    runtime: RuntimeDep, job: Annotated[str | None, Query()] = None
) -> list[ScheduleOut]:
    return [ScheduleOut.of(s) for s in runtime.schedules.list(job)]


@router.get("/api/schedules/{schedule_id}", responses=ERRORS)
def get_schedule(schedule_id: int, runtime: RuntimeDep) -> ScheduleOut:
    return ScheduleOut.of(runtime.schedules.get(schedule_id))


@router.post("/api/schedules/{schedule_id}/enable", responses=ERRORS)
def enable_schedule(schedule_id: int, runtime: RuntimeDep) -> ScheduleOut:
    """Enable; it fires next at its next fire time from now (no catch-up)."""
    return ScheduleOut.of(runtime.schedules.set_enabled(schedule_id, True))


@router.post("/api/schedules/{schedule_id}/disable", responses=ERRORS)
def disable_schedule(schedule_id: int, runtime: RuntimeDep) -> ScheduleOut:
    return ScheduleOut.of(runtime.schedules.set_enabled(schedule_id, False))


@router.delete(
    "/api/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS
)
def delete_schedule(schedule_id: int, runtime: RuntimeDep) -> None:
    runtime.schedules.delete(schedule_id)


@router.get("/api/schedules/{schedule_id}/next", responses=ERRORS)
def next_fires(
    schedule_id: int, runtime: RuntimeDep, count: Annotated[int, Query(ge=1, le=100)] = 5
) -> UpcomingOut:
    """The next fire times, in the schedule's time zone."""
    schedule = runtime.schedules.get(schedule_id)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(schedule.timezone)
    fires = runtime.schedules.upcoming(schedule_id, count)
    return UpcomingOut(
        timezone=schedule.timezone,
        fires=[datetime.fromtimestamp(f, zone).isoformat() for f in fires],
    )


@router.get("/api/schedules/{schedule_id}/fires", responses=ERRORS)
def schedule_fires(
    schedule_id: int, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[FireOut]:
    """Recent fire times: started (with the run), skipped or failed (with the reason)."""
    return [FireOut.of(f) for f in runtime.schedules.fires(schedule_id, limit)]


# -- webhooks ------------------------------------------------------------------------
class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signed: bool = Field(default=False, description="Require X-Runwright-Signature on calls.")
    rate_limit: int = Field(default=60, ge=1, le=100_000, description="Calls per minute.")
    description: str = Field(default="", max_length=1000)


class WebhookOut(BaseModel):
    id: int
    job: str
    token_hint: str = Field(description="The first characters of the token.")
    signed: bool
    enabled: bool
    rate_limit: int
    description: str
    created_at: datetime | None
    last_called_at: datetime | None

    @classmethod
    def of(cls, w: Webhook) -> WebhookOut:
        return cls(
            id=w.id,
            job=w.job,
            token_hint=w.token_hint,
            signed=w.signed,
            enabled=w.enabled,
            rate_limit=w.rate_limit,
            description=w.description,
            created_at=to_datetime(w.created_at),
            last_called_at=to_datetime(w.last_called_at),
        )


class IssuedOut(BaseModel):
    webhook: WebhookOut
    url: str = Field(description="Shown once: the token is stored hashed.")
    token: str
    secret: str | None = Field(description="The signing secret, shown once (signed only).")


class CallOut(BaseModel):
    received_at: datetime | None
    source: str | None
    method: str
    status_code: int
    run_id: int | None
    error: str | None

    @classmethod
    def of(cls, c: Call) -> CallOut:
        return cls(
            received_at=to_datetime(c.received_at),
            source=c.source,
            method=c.method,
            status_code=c.status_code,
            run_id=c.run_id,
            error=c.error,
        )


def _issued(request: Request, issued: Issued) -> IssuedOut:
    base = str(request.base_url).rstrip("/")
    return IssuedOut(
        webhook=WebhookOut.of(issued.webhook),
        url=f"{base}/hooks/{issued.token}",
        token=issued.token,
        secret=issued.secret,
    )


@router.post("/api/jobs/{name}/webhooks", status_code=status.HTTP_201_CREATED, responses=ERRORS)
def create_webhook(name: str, body: WebhookIn, request: Request, runtime: RuntimeDep) -> IssuedOut:
    """A new webhook URL for the job. The token (and signing secret) are shown only here."""
    issued = runtime.webhooks.create(
        name, signed=body.signed, rate_limit=body.rate_limit, description=body.description
    )
    return _issued(request, issued)


@router.get("/api/webhooks", responses=ERRORS)
def list_webhooks(
    runtime: RuntimeDep, job: Annotated[str | None, Query()] = None
) -> list[WebhookOut]:
    return [WebhookOut.of(w) for w in runtime.webhooks.list(job)]


@router.post("/api/webhooks/{webhook_id}/regenerate", responses=ERRORS)
def regenerate_webhook(webhook_id: int, request: Request, runtime: RuntimeDep) -> IssuedOut:
    """A new token (and secret): the old URL stops working at once."""
    return _issued(request, runtime.webhooks.regenerate(webhook_id))


@router.post("/api/webhooks/{webhook_id}/enable", responses=ERRORS)
def enable_webhook(webhook_id: int, runtime: RuntimeDep) -> WebhookOut:
    return WebhookOut.of(runtime.webhooks.set_enabled(webhook_id, True))


@router.post("/api/webhooks/{webhook_id}/disable", responses=ERRORS)
def disable_webhook(webhook_id: int, runtime: RuntimeDep) -> WebhookOut:
    return WebhookOut.of(runtime.webhooks.set_enabled(webhook_id, False))


@router.delete(
    "/api/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS
)
def delete_webhook(webhook_id: int, runtime: RuntimeDep) -> None:
    runtime.webhooks.delete(webhook_id)


@router.get("/api/webhooks/{webhook_id}/calls", responses=ERRORS)
def webhook_calls(
    webhook_id: int, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[CallOut]:
    """The last calls: time, source address, status, run."""
    return [CallOut.of(c) for c in runtime.webhooks.history(webhook_id, limit)]


# -- notifications --------------------------------------------------------------------
class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(description="failure, success, recovery or failures (N in a row).")
    channel: str = Field(description="webhook or email.")
    target: str = Field(description="The URL or the e-mail address.")
    threshold: int = Field(default=1, ge=1, le=1000, description="N for event 'failures'.")


class RuleOut(BaseModel):
    id: int
    job: str
    event: str
    threshold: int
    channel: str
    target: str
    enabled: bool

    @classmethod
    def of(cls, r: Rule) -> RuleOut:
        return cls(
            id=r.id,
            job=r.job,
            event=r.event,
            threshold=r.threshold,
            channel=r.channel,
            target=r.target,
            enabled=r.enabled,
        )


class DeliveryOut(BaseModel):
    run_id: int
    event: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime | None
    sent_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            run_id=d.run_id,
            event=d.event,
            status=d.status,
            attempts=d.attempts,
            last_error=d.last_error,
            created_at=to_datetime(d.created_at),
            sent_at=to_datetime(d.sent_at),
        )


@router.post(
    "/api/jobs/{name}/notifications", status_code=status.HTTP_201_CREATED, responses=ERRORS
)
def add_rule(name: str, body: RuleIn, runtime: RuntimeDep) -> RuleOut:
    """Notify on a job's failures, successes or recoveries. Webhook URLs that reach
    loopback, private or link-local addresses are refused unless allowed."""
    rule = runtime.notifications.add(
        name, event=body.event, channel=body.channel, target=body.target, threshold=body.threshold
    )
    return RuleOut.of(rule)


@router.get("/api/notifications", responses=ERRORS)
def list_rules(runtime: RuntimeDep, job: Annotated[str | None, Query()] = None) -> list[RuleOut]:
    return [RuleOut.of(r) for r in runtime.notifications.rules(job)]


@router.delete(
    "/api/notifications/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS
)
def delete_rule(rule_id: int, runtime: RuntimeDep) -> None:
    runtime.notifications.delete(rule_id)


@router.get("/api/notifications/{rule_id}/deliveries", responses=ERRORS)
def deliveries(
    rule_id: int, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[DeliveryOut]:
    runtime.notifications.rule(rule_id)
    return [DeliveryOut.of(d) for d in runtime.notifications.deliveries(rule_id, limit)]
