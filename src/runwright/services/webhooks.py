"""Webhooks: a secret URL per job that starts a run with the call's data.

The token is shown once and stored as its SHA-256; an optional signing secret
(shown once, stored encrypted) makes every call carry
``X-Runwright-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``, checked in
constant time, within 5 minutes, and never twice.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runwright.db.engine import read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import jobs, webhook_calls, webhooks
from runwright.errors import (
    DatabaseConflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    RunwrightError,
    TooLarge,
    Unauthorized,
)
from runwright.model.params import ParameterSpec, parse_specs
from runwright.model.runs import Job, Package, Run
from runwright.services.jobs import JobService, RunOptions
from runwright.services.secrets import SecretBox
from runwright.services.webhook_intake import REPLAY, CallIntake, PendingCall

SIGNATURE_HEADER = "x-runwright-signature"
TOLERANCE = 300.0  # seconds a signature's timestamp may differ from now
HIDDEN_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", SIGNATURE_HEADER, "x-api-key"}
)
CACHE_SECONDS = 1.0  # how long a server trusts what it read about a webhook and its job
MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    id: int
    job_id: int
    job: str
    token_hint: str
    signed: bool
    enabled: bool
    rate_limit: int
    description: str
    created_at: float
    last_called_at: float | None


@dataclass(frozen=True, slots=True)
class Issued:
    webhook: Webhook
    token: str
    secret: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    received_at: float
    source: str | None
    method: str
    status_code: int
    run_id: int | None
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    method: str
    body: bytes
    content_type: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    source: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    """What a call needs to know about its webhook and job. Kept CACHE_SECONDS, and
    dropped at once when this process changes a webhook or a job."""

    webhook: Webhook
    secret: str | None
    job: Job
    package: Package | None
    specs: list[ParameterSpec]
    loaded_at: float
    generation: tuple[int, int]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in X-Runwright-Signature."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def parse_body(body: bytes, content_type: str) -> Any:
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        return None
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise InvalidRequest(f"The body is not valid JSON: {exc}.") from exc
    text = body.decode("utf-8", errors="replace")
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


class _Window:
    """Calls per webhook in the last minute (per server process)."""

    def __init__(self) -> None:
        self._calls: dict[int, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, webhook_id: int, limit: int, now: float) -> float | None:
        """None if admitted, else seconds until a call would be."""
        with self._lock:
            calls = self._calls.setdefault(webhook_id, collections.deque())
            while calls and calls[0] <= now - 60:
                calls.popleft()
            if len(calls) >= limit:
                return max(0.1, calls[0] + 60 - now)
            calls.append(now)
            return None


def _row(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        job_id=row.job_id,
        job=row.job_name,
        token_hint=row.token_hint,
        signed=row.secret is not None,
        enabled=bool(row.enabled),
        rate_limit=row.rate_limit,
        description=row.description,
        created_at=row.created_at,
        last_called_at=getattr(row, "last_call", None),
    )


_LOOKUP = sa.select(webhooks, jobs.c.name.label("job_name")).join(
    jobs, jobs.c.id == webhooks.c.job_id
)
_LAST_CALL = (
    sa.select(sa.func.max(webhook_calls.c.received_at))
    .where(webhook_calls.c.webhook_id == webhooks.c.id)
    .correlate(webhooks)
    .scalar_subquery()
    .label("last_call")
)
_SELECT = _LOOKUP.add_columns(_LAST_CALL)


class WebhookService:
    def __init__(self, *, engine: Engine, jobs: JobService, box: SecretBox, max_body: int) -> None:
        self.engine = engine
        self._jobs = jobs
        self._box = box
        self._max_body = max_body
        self._window = _Window()
        self._intake = CallIntake(engine=engine, jobs=jobs, replay_window=2 * TOLERANCE)
        self._targets: dict[str, _Target] = {}
        self._loading: dict[str, asyncio.Future[_Target | None]] = {}
        self._generation = 0  # bumped by every change to a webhook made here

    # -- management --------------------------------------------------------------------
    def create(
        self, job: str, *, signed: bool = False, rate_limit: int = 60, description: str = ""
    ) -> Issued:
        found = self._jobs.get(job)
        if not 1 <= rate_limit <= 100_000:
            raise InvalidRequest("rate_limit must be between 1 and 100000 calls per minute.")
        token = secrets.token_urlsafe(32)
        secret = secrets.token_urlsafe(32) if signed else None
        with translate_errors("create a webhook"), write(self.engine) as conn:
            webhook_id = conn.execute(
                sa.insert(webhooks)
                .values(
                    job_id=found.id,
                    token_hash=hash_token(token),
                    token_hint=token[:6],
                    secret=self._box.encrypt(secret) if secret else None,
                    enabled=True,
                    rate_limit=rate_limit,
                    description=description,
                    created_at=time.time(),
                )
                .returning(webhooks.c.id)
            ).scalar_one()
        return Issued(self.get(webhook_id), token, secret)

    def regenerate(self, webhook_id: int) -> Issued:
        """A new token (and a new signing secret for a signed webhook); the old ones stop
        working at once."""
        current = self.get(webhook_id)
        token = secrets.token_urlsafe(32)
        secret = secrets.token_urlsafe(32) if current.signed else None
        values: dict[str, Any] = {"token_hash": hash_token(token), "token_hint": token[:6]}
        if secret is not None:
            values["secret"] = self._box.encrypt(secret)
        with translate_errors("regenerate a webhook"), write(self.engine) as conn:
            conn.execute(sa.update(webhooks).where(webhooks.c.id == webhook_id).values(**values))
        self._generation += 1
        return Issued(self.get(webhook_id), token, secret)

    def get(self, webhook_id: int) -> Webhook:
        with translate_errors("read a webhook"), read(self.engine) as conn:
            row = conn.execute(_SELECT.where(webhooks.c.id == webhook_id)).first()
        if row is None:
            raise NotFound(
                f"Webhook {webhook_id} does not exist; list them with `runwright webhook list`."
            )
        return _row(row)

    def list(self, job: str | None = None) -> builtins.list[Webhook]:
        query = _SELECT.order_by(webhooks.c.id)
        if job is not None:
            query = query.where(webhooks.c.job_id == self._jobs.get(job).id)
        with translate_errors("list webhooks"), read(self.engine) as conn:
            return [_row(row) for row in conn.execute(query)]

    def set_enabled(self, webhook_id: int, enabled: bool) -> Webhook:
        self.get(webhook_id)
        with translate_errors("change a webhook"), write(self.engine) as conn:
            conn.execute(
                sa.update(webhooks).where(webhooks.c.id == webhook_id).values(enabled=enabled)
            )
        self._generation += 1
        return self.get(webhook_id)

    def delete(self, webhook_id: int) -> None:
        self.get(webhook_id)
        with translate_errors("delete a webhook"), write(self.engine) as conn:
            conn.execute(sa.delete(webhook_calls).where(webhook_calls.c.webhook_id == webhook_id))
            conn.execute(sa.delete(webhooks).where(webhooks.c.id == webhook_id))
        self._generation += 1

    def history(self, webhook_id: int, limit: int = 20) -> builtins.list[Call]:
        self.get(webhook_id)
        query = (
            sa.select(webhook_calls)
            .where(webhook_calls.c.webhook_id == webhook_id)
            .order_by(webhook_calls.c.id.desc())
            .limit(limit)
        )
        with translate_errors("list webhook calls"), read(self.engine) as conn:
            return [
                Call(
                    received_at=r.received_at,
                    source=r.source,
                    method=r.method,
                    status_code=r.status_code,
                    run_id=r.run_id,
                    error=r.error,
                )
                for r in conn.execute(query)
            ]

    # -- calls -------------------------------------------------------------------------
    def _cached(self, token: str) -> _Target | None:
        target = self._targets.get(hash_token(token))
        if target is None:
            return None
        fresh = time.monotonic() - target.loaded_at < CACHE_SECONDS
        if fresh and target.generation == (self._generation, self._jobs.generation):
            return target
        return None

    def _load(self, token: str) -> _Target | None:
        generation = (self._generation, self._jobs.generation)
        token_hash = hash_token(token)
        with translate_errors("find the webhook"), read(self.engine) as conn:
            row = conn.execute(_LOOKUP.where(webhooks.c.token_hash == token_hash)).first()
        if row is None:
            return None
        job = self._jobs.get(row.job_name)
        target = _Target(
            webhook=_row(row),
            secret=self._box.decrypt(row.secret) if row.secret is not None else None,
            job=job,
            package=self._jobs.current_package(job) if job.kind != "task" else None,
            specs=parse_specs(job.parameters),
            loaded_at=time.monotonic(),
            generation=generation,
        )
        if len(self._targets) >= MAX_CACHED:
            self._targets.clear()
        self._targets[token_hash] = target
        return target

    async def _load_once(self, token: str) -> _Target | None:
        """Concurrent calls that miss the cache together share one read."""
        token_hash = hash_token(token)
        loading = self._loading.get(token_hash)
        if loading is None:
            loading = asyncio.ensure_future(anyio.to_thread.run_sync(self._load, token))
            self._loading[token_hash] = loading
            loading.add_done_callback(lambda _: self._loading.pop(token_hash, None))
        return await asyncio.shield(loading)

    async def call(self, token: str, incoming: Incoming) -> Run:
        """Start a run for a call; every outcome is recorded in the webhook's history.
        Runs on the server's event loop: only a cache miss and a job with a
        concurrency policy take a thread."""
        target = self._cached(token) or await self._load_once(token)
        if target is not None and target.generation != (self._generation, self._jobs.generation):
            # A shared read that began before a change made here: read again.
            target = await anyio.to_thread.run_sync(self._load, token)
        if target is None:
            raise NotFound("No webhook has this address; it may have been regenerated.")
        pending = PendingCall(
            webhook_id=target.webhook.id,
            received_at=time.time(),
            source=incoming.source,
            method=incoming.method,
            status_code=202,
        )
        try:
            pending.signature = self._admit(target, incoming, pending.received_at)
            if target.job.concurrency != "allow":
                pending.request = None
            else:
                pending.request = self._jobs.prepare(
                    target.job,
                    self._options(target, incoming),
                    package=target.package,
                    specs=target.specs,
                )
        except RunwrightError as exc:
            pending.status_code, pending.error = exc.status_code, exc.message
            pending.signature = pending.request = None
            with contextlib.suppress(RunwrightError):
                await self._intake.store(pending)
            raise
        if pending.request is None:
            return await anyio.to_thread.run_sync(self._start_alone, target, incoming, pending)
        run = await self._intake.store(pending)
        assert run is not None
        return run

    def close(self) -> None:
        self._intake.close()

    def _admit(self, target: _Target, incoming: Incoming, now: float) -> str | None:
        webhook = target.webhook
        if len(incoming.body) > self._max_body:
            raise TooLarge(
                f"The body is {len(incoming.body):,} bytes; this server takes at most "
                f"{self._max_body:,} (RUNWRIGHT_WEBHOOK_MAX_BYTES)."
            )
        if not webhook.enabled:
            raise Forbidden("This webhook is disabled; enable it with `runwright webhook enable`.")
        job = target.job
        if not job.enabled or job.archived:
            raise Forbidden(
                f"Job {job.name!r} is {'archived' if job.archived else 'disabled'}; its webhook "
                "starts no runs."
            )
        # Verified first: calls without a valid signature must not use up the rate limit.
        signature = self._verify(target.secret, incoming, now) if target.secret else None
        wait = self._window.admit(webhook.id, webhook.rate_limit, now)
        if wait is not None:
            raise RateLimited(
                f"Too many calls: this webhook takes {webhook.rate_limit} per minute; try again "
                f"in {wait:.0f}s.",
                retry_after=wait,
            )
        return signature

    def _verify(self, secret: str, incoming: Incoming, now: float) -> str:
        header = incoming.headers.get(SIGNATURE_HEADER, "")
        fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        try:
            timestamp = int(fields.get("t", ""))
        except ValueError:
            raise Unauthorized(
                "This webhook needs X-Runwright-Signature: t=<unix time>,v1=<hex HMAC-SHA256 "
                "of '<t>.<body>' with the signing secret>."
            ) from None
        if abs(now - timestamp) > TOLERANCE:
            raise Unauthorized(
                f"The signature's time is {abs(now - timestamp):.0f}s away from the server's; "
                f"at most {TOLERANCE:.0f}s is accepted. Sign each call when it is sent."
            )
        expected = sign(secret, timestamp, incoming.body).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, fields.get("v1", "")):
            raise Unauthorized("The signature does not match the body and the signing secret.")
        return hashlib.sha256(f"{timestamp}.{expected}".encode()).hexdigest()

    def _options(self, target: _Target, incoming: Incoming) -> RunOptions:
        payload = parse_body(incoming.body, incoming.content_type)
        headers = {k: v for k, v in incoming.headers.items() if k.lower() not in HIDDEN_HEADERS}
        offered: dict[str, Any] = dict(incoming.query)
        if isinstance(payload, dict):
            offered.update(payload)
        declared = {spec.name for spec in target.specs}
        return RunOptions(
            params={name: offered[name] for name in declared if name in offered},
            trigger="webhook",
            trigger_id=target.webhook.id,
            webhook={"payload": payload, "query_params": incoming.query, "headers": headers},
        )

    def _start_alone(self, target: _Target, incoming: Incoming, pending: PendingCall) -> Run:
        """A job with a concurrency policy decides on its active runs when the call
        comes: the call is recorded first (its signature reserved against replays),
        then the run starts and the record gets its outcome."""
        try:
            with translate_errors("record a webhook call"), write(self.engine) as conn:
                call_id = conn.execute(
                    sa.insert(webhook_calls)
                    .values(**pending.row(None))
                    .returning(webhook_calls.c.id)
                ).scalar_one()
        except DatabaseConflict:
            pending.refuse_as_replay()
            self._intake.store_now(pending)
            raise Unauthorized(REPLAY) from None
        try:
            run = self._jobs.run(target.job.name, self._options(target, incoming))
        except RunwrightError as exc:
            self._finish(call_id, exc.status_code, None, exc.message)
            raise
        self._finish(call_id, 202, run.id, None)
        return run

    def _finish(
        self, call_id: int, status_code: int, run_id: int | None, error: str | None
    ) -> None:
        with translate_errors("record a webhook call"), write(self.engine) as conn:
            conn.execute(
                sa.update(webhook_calls)
                .where(webhook_calls.c.id == call_id)
                .values(status_code=status_code, run_id=run_id, error=(error or "")[:1000] or None)
            )
