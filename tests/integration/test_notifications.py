"""Notifications over a real database (SQLite and PostgreSQL), with a real worker, a
local HTTP receiver and a local SMTP server: which runs notify which rule, what
arrives, retries with backoff, and the refusal of private addresses."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from starlette.exceptions import StarletteDeprecationWarning

from runwright.api.app import create_app
from runwright.config import Settings
from runwright.errors import InvalidRequest
from runwright.services.jobs import JobSettings, RunOptions
from runwright.services.notifications import Delivery
from runwright.services.runtime import Runtime
from runwright.worker.context import TaskContext
from runwright.worker.registry import TaskRegistry, TaskSpec
from tests.helpers import admin_headers, running_worker, wait_for_run
from tests.procs import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

FLAKY = "note.flaky"


# -- a local HTTP receiver and SMTP server --------------------------------------------------------
@dataclass
class Receiver:
    url: str
    answer: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for at, body in self.received if at == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            assert self.headers.get("content-type") == "application/json"
            with box.lock:
                box.received.append((self.path, body))
                code = box.answer[0]
            self.send_response(code)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# -- runtimes -------------------------------------------------------------------------------------
def make_registry() -> TaskRegistry:
    registry = TaskRegistry()

    def flaky(ctx: TaskContext) -> Any:
        if ctx.payload.get("fail"):
            raise RuntimeError(f"export broke on run {ctx.run_id}")
        return {"ok": ctx.run_id}

    registry.register(TaskSpec(name=FLAKY, func=flaky))
    return registry


@contextlib.contextmanager
def opened(settings: Settings, **overrides: Any) -> Iterator[Runtime]:
    runtime = Runtime.open(
        settings.with_overrides(**overrides), create_schema=True, registry=make_registry()
    )
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
def runtime(settings: Settings, mailbox: Mailbox) -> Iterator[Runtime]:
    with opened(
        settings,
        notify_allow=("127.0.0.1",),
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_from="runwright@test.invalid",
    ) as rt:
        yield rt


def flaky_job(runtime: Runtime, name: str) -> None:
    runtime.jobs.create(name, JobSettings(kind="task", task_type=FLAKY, max_attempts=1))


def run_once(runtime: Runtime, job: str, *, fail: bool) -> int:
    run = runtime.jobs.run(job, RunOptions(params={"fail": fail}))
    done = wait_for_run(runtime, run.id, timeout=20)
    assert done.status.value == ("failed" if fail else "succeeded"), done
    return run.id


def settle() -> float:
    """A clock past the SETTLE window: runs that just finished are looked at."""
    return time.time() + 5


def deliveries(runtime: Runtime, rule_id: int) -> list[Delivery]:
    return sorted(runtime.notifications.deliveries(rule_id, 100), key=lambda d: d.run_id)


# -- rules and deliveries -------------------------------------------------------------------------
def test_failures_streaks_and_recoveries_reach_the_receiver_and_the_mailbox(
    runtime: Runtime, receiver: Receiver, mailbox: Mailbox
) -> None:
    flaky_job(runtime, "nightly")
    flaky_job(runtime, "other")
    on_failure = runtime.notifications.add(
        "nightly", event="failure", channel="webhook", target=receiver.url + "/failure"
    )
    on_recovery = runtime.notifications.add(
        "nightly", event="recovery", channel="email", target="ops@example.com"
    )
    streak = runtime.notifications.add(
        "nightly", event="failures", channel="webhook", target=receiver.url + "/streak", threshold=2
    )
    on_success = runtime.notifications.add(
        "nightly", event="success", channel="webhook", target=receiver.url + "/success"
    )
    assert (streak.event, streak.threshold, on_failure.threshold) == ("failures", 2, 1)
    assert [r.id for r in runtime.notifications.rules("nightly")] == [
        on_failure.id,
        on_recovery.id,
        streak.id,
        on_success.id,
    ]

    with running_worker(runtime, concurrency=1):
        first = run_once(runtime, "nightly", fail=True)
        second = run_once(runtime, "nightly", fail=True)
        third = run_once(runtime, "nightly", fail=True)
        recovered = run_once(runtime, "nightly", fail=False)
        run_once(runtime, "other", fail=True)  # another job: no rule of its own

    assert runtime.notifications.tick(now=time.time()) == 0  # too fresh: inside SETTLE
    sent = runtime.notifications.tick(now=settle())
    assert sent == 6  # 3 failures, 1 streak, 1 recovery, 1 success

    failures = receiver.bodies("/failure")
    assert [b["run_id"] for b in failures] == [first, second, third]
    for body in failures:
        run = runtime.runs.get(body["run_id"])
        assert body["event"] == "failure"
        assert body["job"] == "nightly"
        assert body["status"] == "failed"
        assert body["outcome"] == (run.outcome.value if run.outcome else None)
        assert f"export broke on run {body['run_id']}" in body["error"]
        assert body["text"].startswith(f"runwright: job nightly run {body['run_id']} failed")
        assert f"export broke on run {body['run_id']}" in body["text"]
    [streak_body] = receiver.bodies("/streak")
    assert (streak_body["event"], streak_body["run_id"]) == ("failures", second)
    [success_body] = receiver.bodies("/success")
    assert success_body["run_id"] == recovered
    assert success_body["text"].startswith(f"runwright: job nightly run {recovered} succeeded")
    assert success_body["error"] is None

    [(recipients, mail)] = mailbox.messages
    assert recipients == ["ops@example.com"]
    assert mail["To"] == "ops@example.com"
    assert mail["From"] == "runwright@test.invalid"
    assert mail["Subject"] == f"[runwright] nightly run {recovered} succeeded"
    assert f"runwright: job nightly run {recovered} succeeded" in mail.get_payload()

    assert [(d.run_id, d.status, d.attempts) for d in deliveries(runtime, on_failure.id)] == [
        (first, "sent", 1),
        (second, "sent", 1),
        (third, "sent", 1),
    ]
    assert [(d.run_id, d.event, d.status) for d in deliveries(runtime, streak.id)] == [
        (second, "failures", "sent")
    ]
    [mailed] = deliveries(runtime, on_recovery.id)
    assert (mailed.run_id, mailed.status, mailed.last_error) == (recovered, "sent", None)
    assert mailed.sent_at is not None

    # Nothing is found or sent twice.
    assert runtime.notifications.tick(now=settle() + 60) == 0
    assert len(receiver.received) == 5
    assert len(mailbox.messages) == 1


def test_a_new_streak_notifies_again_and_a_success_without_failure_is_no_recovery(
    runtime: Runtime, receiver: Receiver, mailbox: Mailbox
) -> None:
    flaky_job(runtime, "streaky")
    streak = runtime.notifications.add(
        "streaky", event="failures", channel="webhook", target=receiver.url + "/s", threshold=2
    )
    recovery = runtime.notifications.add(
        "streaky", event="recovery", channel="email", target="ops@example.com"
    )
    with running_worker(runtime, concurrency=1):
        ok = run_once(runtime, "streaky", fail=False)
        outcomes = [run_once(runtime, "streaky", fail=f) for f in (True, True, True, False)]
        outcomes += [run_once(runtime, "streaky", fail=f) for f in (True, True)]
    runtime.notifications.tick(now=settle())
    assert [b["run_id"] for b in receiver.bodies("/s")] == [outcomes[1], outcomes[5]]
    assert [d.run_id for d in deliveries(runtime, recovery.id)] == [outcomes[3]]
    assert ok not in [d.run_id for d in deliveries(runtime, recovery.id)]
    assert len(mailbox.messages) == 1
    assert [d.status for d in deliveries(runtime, streak.id)] == ["sent", "sent"]


def test_a_failed_delivery_is_retried_with_backoff_until_sent(
    runtime: Runtime, receiver: Receiver
) -> None:
    flaky_job(runtime, "flappy")
    rule = runtime.notifications.add(
        "flappy", event="failure", channel="webhook", target=receiver.url + "/down"
    )
    receiver.answer[0] = 500
    with running_worker(runtime, concurrency=1):
        run_id = run_once(runtime, "flappy", fail=True)

    assert runtime.notifications.tick(now=settle()) == 0
    [first] = deliveries(runtime, rule.id)
    assert (first.run_id, first.status, first.attempts) == (run_id, "pending", 1)
    assert first.last_error == f"{receiver.url}/down answered 500"
    assert first.sent_at is None

    # Not before its backoff (5 s after the failed attempt).
    assert runtime.notifications.tick(now=time.time() + 1) == 0
    assert deliveries(runtime, rule.id)[0].attempts == 1
    assert runtime.notifications.tick(now=time.time() + 6) == 0
    [second] = deliveries(runtime, rule.id)
    assert (second.status, second.attempts) == ("pending", 2)
    assert second.last_error == f"{receiver.url}/down answered 500"
    # The second backoff is twice as long.
    assert runtime.notifications.tick(now=time.time() + 6) == 0
    assert deliveries(runtime, rule.id)[0].attempts == 2

    receiver.answer[0] = 200
    assert runtime.notifications.tick(now=time.time() + 11) == 1
    [done] = deliveries(runtime, rule.id)
    assert (done.status, done.attempts, done.last_error) == ("sent", 3, None)
    assert [b["run_id"] for b in receiver.bodies("/down")] == [run_id] * 3


def test_an_email_without_an_smtp_server_is_a_delivery_error(
    settings: Settings, receiver: Receiver
) -> None:
    with opened(settings) as runtime:
        flaky_job(runtime, "mailless")
        rule = runtime.notifications.add(
            "mailless", event="failure", channel="email", target="ops@example.com"
        )
        with running_worker(runtime, concurrency=1):
            run_once(runtime, "mailless", fail=True)
        runtime.notifications.tick(now=settle())
        [pending] = deliveries(runtime, rule.id)
        assert (pending.status, pending.attempts) == ("pending", 1)
        assert pending.last_error == "no SMTP server is configured (RUNWRIGHT_SMTP_HOST)"


# -- refusals ----------------------------------------------------------------------------------
REFUSED_URLS = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://[::1]:8080/hook",
    "http://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one number
    "http://[::ffff:10.0.0.1]/hook",
]


def test_private_loopback_and_link_local_urls_are_refused(settings: Settings) -> None:
    with opened(settings) as runtime:
        flaky_job(runtime, "guarded")
        for url in REFUSED_URLS:
            with pytest.raises(InvalidRequest) as caught:
                runtime.notifications.add("guarded", event="failure", channel="webhook", target=url)
            assert "RUNWRIGHT_NOTIFY_ALLOW" in caught.value.message, url
            assert "loopback, private or link-local" in caught.value.message, url
        assert runtime.notifications.rules("guarded") == []


def test_rules_are_checked_and_allowed_networks_pass(settings: Settings) -> None:
    with opened(settings, notify_allow=("10.0.0.0/8", "127.0.0.1")) as runtime:
        flaky_job(runtime, "checked")
        add = runtime.notifications.add
        assert add("checked", event="failure", channel="webhook", target="http://10.1.2.3/h").id
        assert add("checked", event="failure", channel="webhook", target="http://127.0.0.1/h")
        for target in ("http://169.254.169.254/", "http://192.168.1.1/", "http://[::1]/"):
            with pytest.raises(InvalidRequest, match="RUNWRIGHT_NOTIFY_ALLOW"):
                add("checked", event="failure", channel="webhook", target=target)
        refused = [
            (dict(event="sometimes", channel="webhook", target="http://10.0.0.1/"), "event must"),
            (dict(event="failure", channel="sms", target="+123"), "channel must be webhook"),
            (dict(event="failure", channel="email", target="nobody"), "is not an e-mail"),
            (dict(event="failure", channel="webhook", target="ftp://10.0.0.1/"), "http://"),
            (dict(event="failure", channel="webhook", target="10.0.0.1/h"), "http://"),
            (dict(event="failures", channel="email", target="a@b.c", threshold=0), "threshold"),
        ]
        for kwargs, message in refused:
            with pytest.raises(InvalidRequest) as caught:
                add("checked", **kwargs)  # type: ignore[arg-type]
            assert message in caught.value.message, kwargs
        assert len(runtime.notifications.rules("checked")) == 2


def test_the_address_is_checked_again_at_delivery(settings: Settings, receiver: Receiver) -> None:
    with opened(settings, notify_allow=("127.0.0.1",)) as allowed:
        flaky_job(allowed, "rechecked")
        rule = allowed.notifications.add(
            "rechecked", event="failure", channel="webhook", target=receiver.url + "/x"
        )
        with running_worker(allowed, concurrency=1):
            run_once(allowed, "rechecked", fail=True)
    # The setting was removed since: the rule is still there, its deliveries are refused.
    with opened(settings) as strict:
        strict.notifications.tick(now=settle())
        [pending] = deliveries(strict, rule.id)
        assert pending.status == "pending"
        assert "RUNWRIGHT_NOTIFY_ALLOW" in (pending.last_error or "")
    assert receiver.received == []


def test_the_api_answers_422_for_a_refused_address(settings: Settings) -> None:
    with opened(settings) as runtime:
        flaky_job(runtime, "api-rules")
        with TestClient(
            create_app(runtime),
            raise_server_exceptions=False,
            headers=admin_headers(runtime),
        ) as client:
            refused = client.post(
                "/api/jobs/api-rules/notifications",
                json={"event": "failure", "channel": "webhook", "target": "http://10.9.9.9/x"},
            )
            assert refused.status_code == 422
            assert "RUNWRIGHT_NOTIFY_ALLOW" in refused.json()["error"]
            made = client.post(
                "/api/jobs/api-rules/notifications",
                json={"event": "recovery", "channel": "email", "target": "ops@example.com"},
            )
            assert made.status_code == 201, made.text
            rule_id = made.json()["id"]
            assert client.get(f"/api/notifications/{rule_id}/deliveries").json() == []
            assert client.delete(f"/api/notifications/{rule_id}").status_code == 204
            assert client.get(f"/api/notifications/{rule_id}/deliveries").status_code == 404


def test_bug_a_url_with_a_bad_port_is_refused_not_a_500(settings: Settings) -> None:
    """SRC BUG: check_outgoing_url reads urlsplit(url).port, which raises ValueError
    ("Port out of range 0-65535" / "Port could not be cast to integer value") for such
    URLs; it is not an InvalidRequest, so the API answers 500 instead of 422."""
    with opened(settings) as runtime:
        flaky_job(runtime, "ported")
        with TestClient(
            create_app(runtime),
            raise_server_exceptions=False,
            headers=admin_headers(runtime),
        ) as client:
            answers = {
                target: client.post(
                    "/api/jobs/ported/notifications",
                    json={"event": "failure", "channel": "webhook", "target": target},
                )
                for target in ("http://example.com:99999/hook", "http://example.com:port/")
            }
        assert {t: r.status_code for t, r in answers.items()} == {t: 422 for t in answers}, {
            t: r.text for t, r in answers.items()
        }


def test_bug_a_bad_port_on_an_allowed_host_is_refused_and_never_breaks_a_pass(
    settings: Settings,
) -> None:
    """SRC BUG: for a host named in RUNWRIGHT_NOTIFY_ALLOW, check_outgoing_url returns
    before looking at the port, so 'http://127.0.0.1:port/x' is accepted; at delivery
    httpx raises InvalidURL, which _send does not catch (it is no httpx.HTTPError):
    NotificationService.tick raises, the rest of the batch is not delivered in that
    pass, and the delivery stays pending with 0 attempts, retried every 120 s forever."""
    problems: list[str] = []
    with opened(settings, notify_allow=("127.0.0.1",)) as runtime:
        flaky_job(runtime, "badport")
        try:
            rule = runtime.notifications.add(
                "badport", event="failure", channel="webhook", target="http://127.0.0.1:port/x"
            )
        except InvalidRequest:
            return
        problems.append("add() accepted http://127.0.0.1:port/x")
        with running_worker(runtime, concurrency=1):
            run_once(runtime, "badport", fail=True)
        try:
            runtime.notifications.tick(now=settle())
        except Exception as exc:
            problems.append(f"tick() raised {type(exc).__name__}: {exc}")
        [delivery] = deliveries(runtime, rule.id)
        if delivery.attempts == 0 or not delivery.last_error:
            problems.append(f"the delivery recorded nothing: {delivery}")
    assert not problems, problems


def test_bug_a_new_rule_does_not_notify_runs_that_ended_before_it(
    runtime: Runtime, receiver: Receiver
) -> None:
    """SRC BUG: the detection cursor is created with the first rule and only moves while
    some rule exists (_detect returns early without rules). Once every rule was deleted,
    the next rule added notifies every run that ended in between (up to 1000 a pass):
    here a failure from before the rule existed."""
    flaky_job(runtime, "history")
    first = runtime.notifications.add(
        "history", event="failure", channel="webhook", target=receiver.url + "/old"
    )
    runtime.notifications.tick(now=time.time())
    runtime.notifications.delete(first.id)
    with running_worker(runtime, concurrency=1):
        old_run = run_once(runtime, "history", fail=True)
    time.sleep(2.5)  # past SETTLE: a scheduler pass would have looked at it by now
    runtime.notifications.tick(now=time.time())  # no rule: nothing to do
    second = runtime.notifications.add(
        "history", event="failure", channel="webhook", target=receiver.url + "/new"
    )
    ended = runtime.runs.get(old_run).finished_at
    assert ended is not None
    assert ended < second.created_at
    runtime.notifications.tick(now=settle())
    assert receiver.bodies("/new") == [], "a run that ended before the rule was notified"
