"""The Jinja environment of the pages: filters for times, durations and sizes, the
badges, and one ``render`` that puts what every page needs (who is signed in, the CSRF
token, what they may do, which vendor libraries are installed) into the context."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from runwright import __version__
from runwright.api.auth import csrf_token
from runwright.model.auth import Principal, Role
from runwright.web.badges import badge

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR_FILES = {
    "htmx": "vendor/htmx.min.js",
    "sse": "vendor/htmx-ext-sse.min.js",
    "chart": "vendor/chart.umd.min.js",
    "codemirror": "vendor/codemirror/codemirror.js",
}

templates = Jinja2Templates(directory=str(HERE / "templates"))
env = templates.env
env.trim_blocks = True
env.lstrip_blocks = True


def iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return (
        datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def when(epoch: float | None) -> str:
    """UTC text; app.js rewrites it to the browser's time zone."""
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(epoch: float | None, now: float | None = None) -> str:
    if epoch is None:
        return "never"
    delta = (now if now is not None else time.time()) - epoch
    future = delta < 0
    delta = abs(delta)
    if delta < 5:
        return "just now"
    text = duration(delta, coarse=True)
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None, *, coarse: bool = False) -> str:
    if seconds is None:
        return "—"
    if seconds < 1 and not coarse:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if coarse else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min" if coarse else f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def size(value: int | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def compact(value: Any) -> str:
    """A value on one line: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def vendor_present() -> dict[str, bool]:
    # Checked per render: `scripts/fetch_assets.sh` may run while the server is up.
    return {name: (STATIC / path).is_file() for name, path in VENDOR_FILES.items()}


env.filters.update(
    iso=iso, when=when, ago=ago, duration=duration, size=size, pretty=pretty_json, compact=compact
)
env.globals.update(badge=badge, version=__version__)


def render(
    request: Request,
    principal: Principal,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    section: str = "",
) -> HTMLResponse:
    vendor = vendor_present()
    values: dict[str, Any] = {
        "principal": principal,
        "csrf": csrf_token(request),
        "can_operate": principal.can(Role.OPERATOR),
        "is_admin": principal.can(Role.ADMIN),
        "vendor": vendor,
        "vendor_missing": [name for name, present in vendor.items() if not present],
        "section": section,
        "now": time.time(),
    }
    values.update(context or {})
    return templates.TemplateResponse(request, template, values, status_code=status_code)
