"""The web UI in a real browser: Debian's Chromium driven by Playwright, against a real
`runwright server` subprocess with a fresh home.

Chromium and Playwright's Python package are needed; without them these tests skip,
and with CI=true they fail (a test never skips a tool it needs in CI).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import need_service
from tests.procs import Processes, cli_env, free_port, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = os.environ.get("RUNWRIGHT_TEST_CHROMIUM", "/usr/bin/chromium")
IMAGES = Path(__file__).resolve().parent.parent.parent / "docs" / "images"
LINK = re.compile(r"(/login/link\?code=[A-Za-z0-9_\-]+)")
TIMEOUT_MS = 20_000


@dataclass
class Server:
    url: str
    home: Path
    procs: Processes

    def headers(self) -> dict[str, str]:
        """The admin token the server wrote to its home (none before users existed)."""
        token = self.home / "token"
        return {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method, self.url + path, headers=self.headers(), timeout=30, **kwargs
        )
        assert response.status_code < 300, response.text
        return response.json()

    def upload(self, filename: str, source: str) -> Any:
        return self.api("POST", "/api/scripts", files={"file": (filename, source.encode())})

    def sign_in_path(self) -> str | None:
        """The one-time sign-in link the server printed for the local admin."""
        found = LINK.search(self.procs.started[0].output())
        return found.group(1) if found else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ui-home")
    procs = Processes(tmp_path_factory.mktemp("ui-logs"))
    port = free_port()
    proc = procs.start(
        "server",
        ["server", "--port", str(port), "--tasks", "runwright.demo", "--demo"],
        cli_env(home),
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not proc.alive():
            raise AssertionError(f"the server exited early:\n{proc.output()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=60, interval=0.1, what="the server's /healthz")
        yield Server(url=url, home=home, procs=procs)
    finally:
        procs.kill_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        need_service(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_service("Playwright's Python package is missing (pip install playwright)")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def session_state(browser: Browser, server: Server) -> dict[str, Any]:
    """A signed-in browser session, shared by the module's pages (a sign-in link works
    once)."""
    context = browser.new_context()
    try:
        path = server.sign_in_path()
        if path:
            page = context.new_page()
            page.goto(server.url + path)
            page.wait_for_url(re.compile(r"/$"), timeout=TIMEOUT_MS)
        state: dict[str, Any] = dict(context.storage_state())
        return state
    finally:
        context.close()


def open_context(browser: Browser, session_state: dict[str, Any], **options: Any) -> BrowserContext:
    context = browser.new_context(storage_state=session_state, **options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser: Browser, session_state: dict[str, Any]) -> Iterator[Page]:
    context = open_context(browser, session_state, viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def sign_in_with_the_form(
    browser: Browser, server: Server, name: str, password: str
) -> tuple[BrowserContext, Page]:
    """A new browser without a session signs in on /login, sent there from /jobs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(server.url + "/jobs")
    page.wait_for_url(re.compile(r"/login\?next=/jobs$"))  # no session: to the sign-in page
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    return context, page


def screenshot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=True)
