"""Outgoing notifications: rules per job (on failure, success, recovery, after N
consecutive failures), found by the scheduler as runs finish, delivered to a webhook
URL (JSON, Slack-compatible ``text``) or by e-mail, retried with backoff."""

from __future__ import annotations

import builtins
import ipaddress
import logging
import smtplib
import socket
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runwright.config import Settings
from runwright.db.engine import is_postgres, read, write
from runwright.db.errors import translate_errors
from runwright.db.tables import cursors, jobs, notification_rules, notifications, runs
from runwright.errors import InvalidRequest, NotFound
from runwright.services.jobs import JobService

log = logging.getLogger(__name__)

EVENTS = ("failure", "success", "recovery", "failures")
CHANNELS = ("webhook", "email")
CURSOR = "notifications"
SETTLE = 2.0  # seconds: runs finished more recently are looked at on the next pass
MAX_ATTEMPTS = 8
BATCH = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: int
    job_id: int
    job: str
    event: str
    threshold: int
    channel: str
    target: str
    enabled: bool
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    id: int
    rule_id: int
    run_id: int
    event: str
    status: str
    attempts: int
    last_error: str | None
    created_at: float
    sent_at: float | None


def check_outgoing_url(url: str, allow: tuple[str, ...]) -> None:
    """Refuse URLs that reach loopback, private or link-local addresses (server-side
    request forgery) unless the host or its network is allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"Notification URL {url!r} must be an http:// or https:// URL.")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"Notification URL {url!r} has an invalid port: {exc}.") from exc
    host = parts.hostname
    if host in allow:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(f"Notification host {host!r} cannot be resolved: {exc}.") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if _allowed(address, allow):
            continue
        if (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            raise InvalidRequest(
                f"Notification URL {url!r} reaches {address}, a loopback, private or link-local "
                "address; runwright refuses these unless RUNWRIGHT_NOTIFY_ALLOW names the host "
                "or its network."
            )


def _allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: tuple[str, ...]
) -> bool:
    for entry in allow:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class NotificationService:
    def __init__(self, *, engine: Engine, jobs: JobService, settings: Settings) -> None:
        self.engine = engine
        self._jobs = jobs
        self._settings = settings
        self._insert = postgresql.insert if is_postgres(engine) else sqlite.insert

    # -- rules -------------------------------------------------------------------------
    def add(self, job: str, *, event: str, channel: str, target: str, threshold: int = 1) -> Rule:
        found = self._jobs.get(job)
        if event not in EVENTS:
            raise InvalidRequest(
                f"event must be one of {', '.join(EVENTS)} (failures: after N consecutive "
                "failures, with threshold N)."
            )
        if channel not in CHANNELS:
            raise InvalidRequest("channel must be webhook (a URL) or email (an address).")
        if not 1 <= threshold <= 1000:
            raise InvalidRequest("threshold must be between 1 and 1000.")
        if channel == "webhook":
            check_outgoing_url(target, self._settings.notify_allow)
        elif "@" not in target or len(target) > 254:
            raise InvalidRequest(f"{target!r} is not an e-mail address.")
        now = time.time()
        with translate_errors("add a notification rule"), write(self.engine) as conn:
            rule_id = conn.execute(
                sa.insert(notification_rules)
                .values(
                    job_id=found.id,
                    event=event,
                    threshold=threshold if event == "failures" else 1,
                    channel=channel,
                    target=target,
                    enabled=True,
                    created_at=now,
                )
                .returning(notification_rules.c.id)
            ).scalar_one()
            self._start_cursor(conn, now)
        return self.rule(rule_id)

    def _start_cursor(self, conn: sa.Connection, now: float) -> None:
        conn.execute(
            self._insert(cursors)
            .values(name=CURSOR, value=now - SETTLE)
            .on_conflict_do_nothing(index_elements=[cursors.c.name])
        )

    def rule(self, rule_id: int) -> Rule:
        rules = self._rules(notification_rules.c.id == rule_id)
        if not rules:
            raise NotFound(f"Notification rule {rule_id} does not exist.")
        return rules[0]

    def rules(self, job: str | None = None) -> builtins.list[Rule]:
        if job is None:
            return self._rules(sa.true())
        return self._rules(notification_rules.c.job_id == self._jobs.get(job).id)

    def _rules(self, where: Any) -> builtins.list[Rule]:
        query = (
            sa.select(notification_rules, jobs.c.name.label("job_name"))
            .join(jobs, jobs.c.id == notification_rules.c.job_id)
            .where(where)
            .order_by(notification_rules.c.id)
        )
        with translate_errors("list notification rules"), read(self.engine) as conn:
            return [
                Rule(
                    id=r.id,
                    job_id=r.job_id,
                    job=r.job_name,
                    event=r.event,
                    threshold=r.threshold,
                    channel=r.channel,
                    target=r.target,
                    enabled=bool(r.enabled),
                    created_at=r.created_at,
                )
                for r in conn.execute(query)
            ]

    def delete(self, rule_id: int) -> None:
        with translate_errors("delete a notification rule"), write(self.engine) as conn:
            conn.execute(sa.delete(notifications).where(notifications.c.rule_id == rule_id))
            deleted = conn.execute(
                sa.delete(notification_rules).where(notification_rules.c.id == rule_id)
            ).rowcount
        if not deleted:
            raise NotFound(f"Notification rule {rule_id} does not exist.")

    def deliveries(self, rule_id: int, limit: int = 20) -> builtins.list[Delivery]:
        query = (
            sa.select(notifications)
            .where(notifications.c.rule_id == rule_id)
            .order_by(notifications.c.id.desc())
            .limit(limit)
        )
        with translate_errors("list deliveries"), read(self.engine) as conn:
            return [
                Delivery(
                    id=r.id,
                    rule_id=r.rule_id,
                    run_id=r.run_id,
                    event=r.event,
                    status=r.status,
                    attempts=r.attempts,
                    last_error=r.last_error,
                    created_at=r.created_at,
                    sent_at=r.sent_at,
                )
                for r in conn.execute(query)
            ]

    # -- the scheduler's pass ----------------------------------------------------------
    def tick(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        self._detect(now)
        return self._deliver(now)

    def _detect(self, now: float) -> None:
        with translate_errors("find finished runs to notify"), read(self.engine) as conn:
            cursor = conn.execute(
                sa.select(cursors.c.value).where(cursors.c.name == CURSOR)
            ).scalar()
            if cursor is None:
                return  # no rule was ever created
            rules = self._rules(notification_rules.c.enabled.is_(True))
            upto = now - SETTLE
            if not rules:
                # Keep the cursor moving: a rule added later must not notify old runs.
                with translate_errors("move the notification cursor"), write(self.engine) as w:
                    w.execute(
                        sa.update(cursors)
                        .where(cursors.c.name == CURSOR, cursors.c.value < upto)
                        .values(value=upto)
                    )
                return
            finished = conn.execute(
                sa.select(runs.c.id, runs.c.job_id, runs.c.status, runs.c.finished_at)
                .where(
                    runs.c.job_id.in_(sorted({r.job_id for r in rules})),
                    runs.c.finished_at > cursor,
                    runs.c.finished_at <= upto,
                )
                .order_by(runs.c.finished_at)
                .limit(1000)
            ).all()
        if finished:
            upto = finished[-1].finished_at if len(finished) == 1000 else upto
        by_job: dict[int, builtins.list[Rule]] = {}
        for rule in rules:
            by_job.setdefault(rule.job_id, []).append(rule)
        with translate_errors("queue notifications"), write(self.engine) as conn:
            for run in finished:
                history = self._history(conn, run.job_id, run.finished_at)
                for rule in by_job.get(run.job_id, []):
                    if _matches(rule, run.status, history):
                        conn.execute(
                            self._insert(notifications)
                            .values(
                                rule_id=rule.id,
                                run_id=run.id,
                                event=rule.event,
                                status="pending",
                                attempts=0,
                                next_attempt_at=now,
                                created_at=now,
                            )
                            .on_conflict_do_nothing(
                                index_elements=[notifications.c.rule_id, notifications.c.run_id]
                            )
                        )
            conn.execute(
                sa.update(cursors)
                .where(cursors.c.name == CURSOR, cursors.c.value < upto)
                .values(value=upto)
            )

    def _history(self, conn: sa.Connection, job_id: int, before: float) -> builtins.list[str]:
        """Statuses of the job's finished runs up to this one, newest first."""
        rows = conn.execute(
            sa.select(runs.c.status)
            .where(
                runs.c.job_id == job_id,
                runs.c.finished_at.is_not(None),
                runs.c.finished_at <= before,
                runs.c.status.in_(["succeeded", "failed"]),
            )
            .order_by(runs.c.finished_at.desc())
            .limit(1002)
        ).all()
        return [row[0] for row in rows]

    def _deliver(self, now: float) -> int:
        query = (
            sa.select(
                notifications,
                notification_rules.c.channel,
                notification_rules.c.target,
                runs.c.job,
                runs.c.status.label("run_status"),
                runs.c.outcome,
                runs.c.error,
                runs.c.started_at,
                runs.c.finished_at,
            )
            .join(notification_rules, notification_rules.c.id == notifications.c.rule_id)
            .join(runs, runs.c.id == notifications.c.run_id)
            .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
            .order_by(notifications.c.next_attempt_at)
            .limit(BATCH)
        )
        with translate_errors("read pending notifications"), read(self.engine) as conn:
            pending = conn.execute(query).all()
        sent = 0
        for item in pending:
            # Claim it (compare and set) so that two schedulers do not both send it.
            with translate_errors("claim a notification"), write(self.engine) as conn:
                claimed = conn.execute(
                    sa.update(notifications)
                    .where(
                        notifications.c.id == item.id,
                        notifications.c.status == "pending",
                        notifications.c.next_attempt_at == item.next_attempt_at,
                    )
                    .values(next_attempt_at=now + 120)
                ).rowcount
            if not claimed:
                continue
            error = self._send(item)
            attempts = item.attempts + 1
            values: dict[str, Any] = {"attempts": attempts}
            if error is None:
                values.update(status="sent", sent_at=time.time(), last_error=None)
                sent += 1
            elif attempts >= MAX_ATTEMPTS:
                values.update(status="failed", last_error=error)
            else:
                values.update(next_attempt_at=time.time() + min(600.0, 5.0 * 2 ** (attempts - 1)))
                values.update(last_error=error)
            if error is not None:
                log.warning("notification %s for run %s: %s", item.id, item.run_id, error)
            with translate_errors("record a delivery"), write(self.engine) as conn:
                conn.execute(
                    sa.update(notifications).where(notifications.c.id == item.id).values(**values)
                )
        return sent

    def _send(self, item: Any) -> str | None:
        duration = (
            f" in {item.finished_at - item.started_at:.1f}s"
            if item.started_at and item.finished_at
            else ""
        )
        text = (
            f"runwright: job {item.job} run {item.run_id} {item.run_status}"
            + (f" ({item.outcome})" if item.outcome else "")
            + duration
            + (f": {str(item.error)[:500]}" if item.error else "")
        )
        body = {
            "text": text,
            "event": item.event,
            "job": item.job,
            "run_id": item.run_id,
            "status": item.run_status,
            "outcome": item.outcome,
            "error": item.error,
        }
        try:
            if item.channel == "webhook":
                check_outgoing_url(item.target, self._settings.notify_allow)
                response = httpx.post(item.target, json=body, timeout=10, follow_redirects=False)
                if response.status_code >= 300:
                    return f"{item.target} answered {response.status_code}"
                return None
            return self._email(item.target, text, body)
        except InvalidRequest as exc:
            return exc.message
        except (httpx.HTTPError, httpx.InvalidURL, OSError, smtplib.SMTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def _email(self, address: str, text: str, body: dict[str, Any]) -> str | None:
        s = self._settings
        if not s.smtp_host:
            return "no SMTP server is configured (RUNWRIGHT_SMTP_HOST)"
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = address
        message["Subject"] = f"[runwright] {body['job']} run {body['run_id']} {body['status']}"
        message.set_content(text + "\n")
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=15) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)
        return None


def _matches(rule: Rule, status: str, history: builtins.list[str]) -> bool:
    """Does this finished run (history[0] is its own status) trigger the rule?"""
    if status not in ("succeeded", "failed"):
        return False
    if rule.event == "failure":
        return status == "failed"
    if rule.event == "success":
        return status == "succeeded"
    if rule.event == "recovery":
        return status == "succeeded" and len(history) > 1 and history[1] == "failed"
    # failures: the streak of failures reaches the threshold exactly (once per streak)
    streak = 0
    for item in history:
        if item != "failed":
            break
        streak += 1
    return status == "failed" and streak == rule.threshold
