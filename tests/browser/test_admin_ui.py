"""What an admin and an operator do on the admin and inventory pages, in Chromium
against a real server: add a user and sign in with the password shown once, create and
revoke a token, add and import targets, add a credential and a sensitive variable
whose secrets never come back into the page."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Server, sign_in_with_the_form

pytestmark = pytest.mark.browser

CREDENTIAL_CANARY = "canary-ui-credential-password-3e8f"
VARIABLE_CANARY = "canary-ui-sensitive-value-b71c"
IMPORT_CSV = """\
name,address,port,tags
imp-1,10.9.1.1,22,web
imp 2,10.9.1.2,22,web
imp-3,10.9.1.3,2200,db
"""


def accept_the_confirm(page: Page) -> None:
    page.once("dialog", lambda dialog: dialog.accept())


def test_an_admin_adds_a_user_whose_generated_password_signs_in(
    page: Page, server: Server, browser: Browser
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(server.url + "/users")
    form = page.locator("form[data-api-form]")
    form.locator('input[name="name"]').fill("gene")
    form.locator('select[name="role"]').select_option("operator")
    form.locator('button[type="submit"]').click()
    shown = page.locator("[data-reveal]")
    expect(shown).to_be_visible()
    expect(shown.locator("[data-reveal-title]")).to_have_text("The password of gene")
    expect(shown).to_contain_text("Shown this once")
    password = shown.locator("[data-reveal-value]").input_value()
    assert len(password) >= 10
    shown.locator("[data-copy]").click()
    expect(shown.locator("[data-copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == password
    # The list shows the new user without a reload that would lose the password.
    expect(page.locator('tr[data-user="gene"]')).to_contain_text("operator")
    assert password not in page.content()
    shown.locator("[data-reveal-close]").click()
    expect(shown).to_be_hidden()
    assert shown.locator("[data-reveal-value]").input_value() == ""

    context, other = sign_in_with_the_form(browser, server, "gene", password)
    try:
        other.wait_for_url(re.compile(r"/jobs$"))
        expect(other.locator("header")).to_contain_text("gene")
        expect(other.locator("header")).to_contain_text("operator")
        expect(other.locator('#nav a[href="/users"]')).to_have_count(0)
        other.goto(server.url + "/users")
        expect(other.locator("h1")).to_have_text("Not allowed")
    finally:
        context.close()


def test_the_last_admin_is_neither_demoted_nor_disabled_and_the_row_says_why(
    page: Page, server: Server
) -> None:
    page.goto(server.url + "/users")
    row = page.locator('tr[data-user="admin"]')
    role = row.locator("select[data-call-select]")
    role.select_option("viewer")
    error = row.locator(".form-error")
    expect(error).to_contain_text("last enabled admin")
    expect(error).to_contain_text("make another user admin first")
    expect(role).to_have_value("admin")  # what is still true
    accept_the_confirm(page)
    row.locator("button", has_text="Disable").click()
    expect(error).to_contain_text("last enabled admin")
    assert server.api("GET", "/api/users/admin")["role"] == "admin"


def test_a_token_from_the_tokens_page_works_until_it_is_revoked(page: Page, server: Server) -> None:
    page.goto(server.url + "/tokens")
    form = page.locator("form[data-api-form]")
    form.locator('input[name="name"]').fill("ui-bot")
    form.locator('select[name="role"]').select_option("viewer")
    form.locator('button[type="submit"]').click()
    shown = page.locator("[data-reveal]")
    expect(shown).to_be_visible()
    expect(shown).to_contain_text("shown this once")
    token = shown.locator("[data-reveal-value]").input_value()
    headers = {"Authorization": f"Bearer {token}"}
    me = httpx.get(server.url + "/api/me", headers=headers, timeout=10)
    assert me.status_code == 200, me.text
    assert me.json() == {"name": "token:ui-bot", "role": "viewer", "via": "token"}
    row = page.locator('tr[data-token="ui-bot"]')
    expect(row).to_contain_text("active")
    assert token not in page.content()

    accept_the_confirm(page)
    row.locator("button", has_text="Revoke").click()
    expect(page.locator("#notice")).to_contain_text("ui-bot is revoked")
    expect(page.locator('tr[data-token="ui-bot"]')).to_contain_text("revoked")
    deadline = time.monotonic() + 5  # revocation takes effect within 2 s
    while httpx.get(server.url + "/api/me", headers=headers, timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "the revoked token still works after 5 s"
        time.sleep(0.2)


def test_an_operator_adds_edits_and_imports_targets(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    server.api(
        "POST",
        "/api/users",
        json={"name": "opal", "role": "operator", "password": "opal-pass-1234"},
    )
    context, page = sign_in_with_the_form(browser, server, "opal", "opal-pass-1234")
    try:
        page.wait_for_url(re.compile(r"/jobs$"))
        page.goto(server.url + "/targets")
        page.locator('[data-open-form="target-dialog"][data-mode="create"]').click()
        dialog = page.locator("#target-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator('input[name="port"]')).to_have_value("22")
        dialog.locator('input[name="name"]').fill("web-ui-1")
        dialog.locator('input[name="address"]').fill("10.9.0.1")
        dialog.locator('input[name="port"]').fill("2222")
        dialog.locator('input[name="tags"]').fill("web, ui")
        dialog.locator('textarea[name="vars"]').fill("rack=4\nsite=fra")
        dialog.locator('input[name="description"]').fill("added in the UI")
        dialog.locator('button[type="submit"]').click()
        expect(page.locator("#notice")).to_contain_text("web-ui-1 is added")
        row = page.locator('tr[data-target="web-ui-1"]')
        expect(row).to_contain_text("10.9.0.1:2222")
        stored = server.api("GET", "/api/targets/web-ui-1")
        assert stored["tags"] == ["web", "ui"]
        assert stored["vars"] == {"rack": 4, "site": "fra"}
        assert stored["enabled"] is True

        row.locator("button", has_text="Edit").click()
        expect(dialog.locator('input[name="name"]')).to_have_value("web-ui-1")
        expect(dialog.locator('textarea[name="vars"]')).to_have_value("rack=4\nsite=fra")
        dialog.locator('input[name="enabled"]').uncheck()
        dialog.locator('textarea[name="vars"]').fill("rack=five")
        dialog.locator('input[name="port"]').fill("70000")
        dialog.locator('button[type="submit"]').click()
        expect(dialog.locator(".form-error")).to_contain_text("port")  # the API's refusal
        dialog.locator('input[name="port"]').fill("2222")
        dialog.locator('button[type="submit"]').click()
        expect(page.locator("#notice")).to_contain_text("web-ui-1 is saved")
        expect(page.locator('tr[data-target="web-ui-1"]')).to_contain_text("disabled")
        stored = server.api("GET", "/api/targets/web-ui-1")
        assert stored["enabled"] is False
        assert stored["vars"] == {"rack": "five"}

        hosts = tmp_path / "hosts.csv"
        hosts.write_text(IMPORT_CSV)
        page.set_input_files('form[data-import-form] input[name="file"]', str(hosts))
        page.click('form[data-import-form] button[type="submit"]')
        report = page.locator("[data-import-report]")
        expect(report).to_be_visible()
        expect(report.locator("[data-import-summary]")).to_contain_text(
            "Imported: 2 created, 0 updated, 1 refused"
        )
        refused = report.locator('tr[data-status="refused"]')
        expect(refused).to_have_count(1)
        expect(refused).to_have_attribute("data-import-row", "3")
        expect(refused).to_contain_text("imp 2")
        expect(refused).to_contain_text("not valid")
        expect(report.locator('tr[data-status="created"]')).to_have_count(2)
        expect(page.locator('tr[data-target="imp-3"]')).to_contain_text("10.9.1.3:2200")
        assert [
            t["name"] for t in server.api("GET", "/api/targets") if t["name"].startswith("imp")
        ] == [
            "imp-1",
            "imp-3",
        ]
        page.goto(server.url + "/credentials")  # operators read credentials; admins change them
        expect(page.locator("h1")).to_have_text("Credentials")
        expect(page.locator("[data-open-form]")).to_have_count(0)
        expect(page.locator("[data-call]")).to_have_count(0)
    finally:
        context.close()


def test_a_credential_added_in_the_form_never_shows_its_password(
    page: Page, server: Server
) -> None:
    page.goto(server.url + "/credentials")
    page.locator('[data-open-form="credential-dialog"][data-mode="create"]').click()
    dialog = page.locator("#credential-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator('textarea[name="private_key"]')).to_be_hidden()
    dialog.locator('input[name="name"]').fill("ui-cred")
    dialog.locator('input[name="username"]').fill("deploy")
    dialog.locator('input[name="password"]').fill(CREDENTIAL_CANARY)
    dialog.locator('input[name="tags"]').fill("web")
    dialog.locator('button[type="submit"]').click()
    expect(page.locator("#notice")).to_contain_text("ui-cred is added")
    row = page.locator('tr[data-credential="ui-cred"]')
    expect(row).to_contain_text("deploy")
    expect(row).to_contain_text("password")
    assert CREDENTIAL_CANARY not in page.content()

    row.locator("button", has_text="Edit").click()
    expect(dialog.locator('input[name="password"]')).to_have_value("")
    expect(dialog).to_contain_text("Leave the secret fields empty to keep the stored secret")
    dialog.locator('input[name="priority"]').fill("5")
    dialog.locator('button[type="submit"]').click()
    expect(page.locator("#notice")).to_contain_text("ui-cred is saved")
    stored = server.api("GET", "/api/credentials/ui-cred")
    assert (stored["priority"], stored["kind"]) == (5, "password")

    page.locator('tr[data-credential="ui-cred"] button', has_text="Edit").click()
    dialog.locator('input[name="secret_kind"][value="key"]').check()
    expect(dialog.locator('input[name="password"]')).to_be_hidden()
    dialog.locator('textarea[name="private_key"]').fill("not a key at all")
    dialog.locator('button[type="submit"]').click()
    expect(dialog.locator(".form-error")).to_contain_text("private_key")
    dialog.locator("button", has_text="Cancel").click()
    assert server.api("GET", "/api/credentials/ui-cred")["kind"] == "password"
    assert CREDENTIAL_CANARY not in page.content()
    assert "not a key at all" not in page.content()


def test_a_sensitive_variable_set_in_the_form_is_never_shown_again(
    page: Page, server: Server
) -> None:
    page.goto(server.url + "/variables")
    page.locator('[data-open-form="variable-dialog"][data-mode="create"]').click()
    dialog = page.locator("#variable-dialog")
    dialog.locator('input[name="name"]').fill("ui_secret")
    dialog.locator('textarea[name="value"]').fill(VARIABLE_CANARY)
    dialog.locator('input[name="sensitive"]').check()
    dialog.locator('button[type="submit"]').click()
    expect(page.locator("#notice")).to_contain_text("ui_secret is set")
    row = page.locator('tr[data-variable="ui_secret"]')
    expect(row).to_contain_text("sensitive")
    assert VARIABLE_CANARY not in page.content()

    row.locator("button", has_text="Edit").click()
    expect(dialog.locator('textarea[name="value"]')).to_have_value("")
    expect(dialog).to_contain_text("type it again")
    dialog.locator('input[name="description"]').fill("for the UI test")
    dialog.locator('button[type="submit"]').click()
    expect(dialog.locator(".form-error")).to_contain_text("Type the value")
    dialog.locator('textarea[name="value"]').fill(VARIABLE_CANARY)
    dialog.locator('button[type="submit"]').click()
    expect(page.locator("#notice")).to_contain_text("ui_secret is saved")
    expect(page.locator('tr[data-variable="ui_secret"]')).to_contain_text("for the UI test")
    assert VARIABLE_CANARY not in page.content()
    listed = [v for v in server.api("GET", "/api/variables") if v["name"] == "ui_secret"]
    assert listed[0]["sensitive"] is True
    assert listed[0]["value"] is None
