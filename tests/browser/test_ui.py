"""What a person does in the web UI, in Chromium against a real server: upload a
script, watch a run live, cancel one, edit code, use the phone layout. The tests also
write the screenshots of docs/images/."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Server, open_context, screenshot, sign_in_with_the_form

pytestmark = pytest.mark.browser

SLOW = """\
import time

for i in range(1, 41):
    print(f"slow line {i}", flush=True)
    time.sleep(0.5)
"""
LONG = """\
import time

print("sleeping for a minute", flush=True)
time.sleep(60)
"""


def run_status(server: Server, run_id: int) -> str:
    status: str = server.api("GET", f"/api/runs/{run_id}")["status"]
    return status


def run_id_of(page: Page) -> int:
    found = re.search(r"/runs/(\d+)$", page.url)
    assert found, page.url
    return int(found.group(1))


def test_uploading_a_bad_script_shows_why_inline_then_a_good_one_is_listed(
    page: Page, server: Server, tmp_path: Any
) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("print('unclosed'\n")
    page.goto(server.url + "/scripts")
    page.set_input_files('input[name="file"]', str(bad))
    page.click('form[data-upload-form] button[type="submit"]')
    error = page.locator("form[data-upload-form] .form-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("syntax error on line 1")
    assert not [job for job in server.api("GET", "/api/jobs") if job["name"] == "broken"]

    good = tmp_path / "tidy_report.py"
    good.write_text("print('tidy')\n")
    page.set_input_files('input[name="file"]', str(good))
    page.fill('input[name="description"]', "A tidy report")
    page.click('form[data-upload-form] button[type="submit"]')
    expect(page.locator("#notice")).to_contain_text("tidy-report v1 uploaded")
    expect(page.locator('tr[data-script="tidy-report"]')).to_contain_text("A tidy report")


def test_the_live_console_shows_the_first_lines_before_the_run_finishes(
    page: Page, server: Server
) -> None:
    server.upload("slow.py", SLOW)
    page.goto(server.url + "/jobs/slow")
    page.click("text=▶ Run…")
    page.click('dialog [data-run-form] button[type="submit"]')
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_id = run_id_of(page)
    console = page.locator("[data-console-lines]")
    expect(console).to_contain_text("slow line 1", timeout=30_000)
    expect(console).to_contain_text("slow line 3")
    assert run_status(server, run_id) == "running"  # lines arrived while it ran
    expect(page.locator("#run-live .run-head__badges")).to_contain_text("Running")
    time.sleep(1.5)  # a progress refresh and a few more lines for the picture
    screenshot(page, "run-live.png")
    # The user scrolls up: following stops, and the jump button brings it back.
    # (A short screen, so that the lines so far overflow it.)
    page.locator("[data-console-screen]").evaluate(
        "el => { el.style.height = '120px'; el.scrollTop = 0; }"
    )
    page.locator("[data-console-screen]").dispatch_event("scroll")
    jump = page.locator("[data-console-jump]")
    expect(jump).to_be_visible()
    jump.click()
    expect(jump).to_be_hidden()
    page.select_option("[data-console-level]", "error")
    expect(page.locator("[data-console-lines] .l--info").first).to_be_hidden()
    server.api("POST", f"/api/runs/{run_id}/cancel")


def test_a_long_run_is_canceled_from_its_page(page: Page, server: Server) -> None:
    server.upload("long_sleep.py", LONG)
    run = server.api("POST", "/api/jobs/long-sleep/runs", json={})
    page.goto(f"{server.url}/runs/{run['id']}")
    expect(page.locator("[data-console-lines]")).to_contain_text(
        "sleeping for a minute", timeout=30_000
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('button[data-action="cancel"]')
    expect(page.locator("#notice")).to_contain_text("Cancel requested")
    expect(page.locator("#run-live .run-head__badges")).to_contain_text("Canceled", timeout=30_000)
    expect(page.locator("[data-console-state]")).to_have_text("finished")
    assert run_status(server, run["id"]) == "canceled"
    expect(page.locator('button[data-action="retry"]')).to_be_visible()


def test_editing_code_in_the_editor_and_saving_makes_version_2(page: Page, server: Server) -> None:
    server.upload("editable.py", 'print("version one")\n')
    page.goto(server.url + "/jobs/editable?tab=code")
    editor = page.locator(".CodeMirror")
    expect(editor).to_be_visible()
    expect(page.locator(".cm-string").first).to_be_visible()  # highlighted as Python
    page.locator(".CodeMirror-code").click()
    page.keyboard.press("Control+End")
    page.keyboard.type('\nprint("version two")')
    page.fill('input[name="message"]', "say version two")
    screenshot(page, "job-code.png")
    page.click('form[data-code-form] button[type="submit"]')
    expect(page.locator("#notice")).to_contain_text("Saved as v2")
    expect(page.locator("[data-current-version]")).to_have_text("v2")
    files = server.api("GET", "/api/jobs/editable/files")
    text = next(f["text"] for f in files["files"] if f["path"] == "editable.py")
    assert 'print("version two")' in text
    # A syntax error is refused inline and stores nothing.
    page.locator(".CodeMirror-code").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nprint(")
    page.click('form[data-code-form] button[type="submit"]')
    expect(page.locator("form[data-code-form] .form-error")).to_contain_text("syntax error")
    assert len(server.api("GET", "/api/jobs/editable/packages")) == 2
    page.goto(server.url + "/jobs/editable?tab=versions")
    expect(page.locator(".diff__add", has_text="version two")).to_be_visible()
    screenshot(page, "job-versions.png")


def test_the_dashboard_and_a_job_page_for_the_docs(page: Page, server: Server) -> None:
    run = server.api("POST", "/api/jobs/hello-steps/runs", json={})
    server.api("POST", "/api/jobs/hello/runs", json={})
    page.goto(f"{server.url}/runs/{run['id']}")
    expect(page.locator("#run-live .run-head__badges")).to_contain_text("Succeeded", timeout=60_000)
    expect(page.locator("tr[data-step]").first).to_be_visible()
    screenshot(page, "run-steps.png")
    page.goto(server.url + "/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("#chart-outcomes")).to_be_visible()  # Chart.js drew it
    screenshot(page, "dashboard.png")
    page.goto(server.url + "/jobs/hello")
    page.click("text=▶ Run…")
    expect(page.locator("#run-dialog")).to_be_visible()
    screenshot(page, "job.png")


def test_on_a_phone_the_nav_folds_into_a_menu_that_works(
    browser: Browser, session_state: dict[str, Any], server: Server
) -> None:
    context = open_context(
        browser,
        session_state,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        color_scheme="dark",
    )
    try:
        page = context.new_page()
        page.goto(server.url + "/jobs")
        runs_link = page.locator('#nav a[href="/runs"]')
        expect(runs_link).to_be_hidden()
        toggle = page.locator(".nav-toggle")
        expect(toggle).to_be_visible()
        toggle.tap()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(runs_link).to_be_visible()
        screenshot(page, "phone-nav.png")
        runs_link.tap()
        page.wait_for_url(re.compile(r"/runs$"))
        expect(page.locator("h1")).to_have_text("Runs")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px phone"
    finally:
        context.close()


def test_signing_in_with_a_password_and_a_wrong_one(browser: Browser, server: Server) -> None:
    server.api(
        "POST",
        "/api/users",
        json={"name": "olga", "role": "operator", "password": "olga-pass-1234"},
    )
    context, page = sign_in_with_the_form(browser, server, "olga", "not-her-password")
    try:
        expect(page.locator(".error")).to_contain_text("Unknown user or wrong password")
        page.fill('input[name="password"]', "olga-pass-1234")
        page.click('button[type="submit"]')
        page.wait_for_url(re.compile(r"/jobs$"))  # back where she was going
        expect(page.locator("header")).to_contain_text("olga")
        expect(page.locator("header")).to_contain_text("operator")
    finally:
        context.close()


def test_a_viewer_sees_no_run_button_and_a_forged_post_is_refused(
    browser: Browser, server: Server
) -> None:
    server.upload("for_viewers.py", "print('hi')\n")
    server.api(
        "POST", "/api/users", json={"name": "vic", "role": "viewer", "password": "vic-pass-12345"}
    )
    context, page = sign_in_with_the_form(browser, server, "vic", "vic-pass-12345")
    try:
        page.wait_for_url(re.compile(r"/jobs$"))
        page.goto(server.url + "/jobs/for-viewers")
        expect(page.locator("h1")).to_contain_text("for-viewers")
        expect(page.locator("text=▶ Run…")).to_have_count(0)
        # The page's own session, without the CSRF header, and with it but as a viewer.
        statuses = page.evaluate(
            """async () => {
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                const send = (headers) => fetch('/api/jobs/for-viewers/runs', {
                    method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json', ...headers}, body: '{}'});
                return [(await send({})).status, (await send({'X-CSRF-Token': csrf})).status];
            }"""
        )
        assert statuses == [403, 403], statuses
        runs = server.api("GET", "/api/runs", params={"job": "for-viewers"})["runs"]
        assert runs == []
    finally:
        context.close()
