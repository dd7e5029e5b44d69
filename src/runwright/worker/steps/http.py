"""``uses: http``: one HTTP request; its status, headers, text and JSON become the output."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from runwright.model.steps import HttpInputs
from runwright.worker.steps.common import StepEnv, StepFailed, StepTimedOut

MAX_TEXT = 1024 * 1024  # characters of the body kept in the output


def run_http(inputs: HttpInputs, env: StepEnv) -> dict[str, Any]:
    headers = dict(inputs.headers)
    auth: httpx.Auth | None = None
    if inputs.auth is not None and inputs.auth.type == "basic":
        auth = httpx.BasicAuth(inputs.auth.username or "", inputs.auth.password or "")
    elif inputs.auth is not None:
        headers["Authorization"] = f"Bearer {inputs.auth.token}"
    timeout = env.bounded(inputs.timeout)
    started = time.monotonic()
    try:
        with httpx.Client(
            timeout=timeout, follow_redirects=inputs.follow_redirects, verify=inputs.verify_tls
        ) as client:
            response = client.request(
                inputs.method,
                inputs.url,
                headers=headers,
                params={k: _query_value(v) for k, v in inputs.query.items()},
                json=inputs.json_body,
                content=inputs.body,
                auth=auth,
            )
    except httpx.TimeoutException as exc:
        raise StepTimedOut(
            f"{inputs.method} {inputs.url} did not answer within {timeout:g}s"
        ) from exc
    except httpx.HTTPError as exc:
        raise StepFailed(f"{inputs.method} {inputs.url} failed: {exc}", "connection") from exc
    took = (time.monotonic() - started) * 1000
    env.info(f"{inputs.method} {inputs.url} -> {response.status_code} in {took:.0f} ms")
    text = response.text
    output: dict[str, Any] = {
        "status": response.status_code,
        "headers": {k.lower(): v for k, v in response.headers.items()},
        "text": text[:MAX_TEXT],
    }
    if len(text) > MAX_TEXT:
        output["truncated"] = True
    if _looks_like_json(response) and len(text) <= MAX_TEXT:
        try:
            output["json"] = json.loads(text)
        except ValueError:
            env.warn("The response says it is JSON but does not parse; only text is kept.")
    expected = inputs.expect_status
    ok = response.status_code in expected if expected else 200 <= response.status_code < 300
    if not ok:
        wanted = ", ".join(map(str, expected)) if expected else "2xx"
        head = text[:300].replace("\n", " ")
        raise StepFailed(
            f"{inputs.method} {inputs.url} answered {response.status_code}, expected {wanted}"
            + (f": {head}" if head else ""),
            "http_status",
        )
    return output


def _looks_like_json(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return bool(kind == "application/json" or kind.endswith("+json"))


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return value
