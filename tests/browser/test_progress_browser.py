"""The Mail Accounts page as a user watches it: a 2,000-message first sync shows its
progress bar by itself and ends in a result on the card (R16); the account form shows
"Days to keep on the server" only with the delete-after-days policy."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.dovecot import Dovecot

from .conftest import LiveServer
from .test_accounts_browser import sign_in

pytestmark = pytest.mark.browser

ADD_FORM = "/settings/mail-accounts/add/pop3/other"
DAYS = "Days to keep on the server"


def test_days_to_keep_follows_the_delete_policy(page: Any, live_app: LiveServer,
                                                browser: Any) -> None:
    sign_in(page, live_app)
    page.goto(live_app.url + ADD_FORM)
    days = page.get_by_label(DAYS)
    expect(page.get_by_label("Keep a copy on the server")).to_be_checked()
    expect(days).to_be_hidden()
    page.get_by_label("Delete from the server after some days").check()
    expect(days).to_be_visible()
    expect(days).to_have_value("7")
    page.get_by_label("Delete from the server once stored here").check()
    expect(days).to_be_hidden()
    page.get_by_label("Delete from the server after some days").check()
    expect(days).to_be_visible()

    # Without JS the field is simply there (the server ignores it for the other choices).
    context = browser.new_context(java_script_enabled=False)
    try:
        plain = context.new_page()
        sign_in(plain, live_app)
        plain.goto(live_app.url + ADD_FORM)
        expect(plain.get_by_label(DAYS)).to_be_visible()
    finally:
        context.close()


def add_through_wizard(page: Any, server: LiveServer, dovecot: Dovecot, user: str,
                       password: str, name: str) -> None:
    page.goto(server.url + "/settings/mail-accounts/")
    page.get_by_role("link", name="Add an account").first.click()
    page.get_by_role("link", name="POP3", exact=False).first.click()
    page.get_by_role("link", name="Other", exact=False).first.click()
    page.get_by_label("Email address").fill(f"{user}@example.com")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Incoming (POP3) server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(dovecot.pop3s_port))
    page.get_by_label("Security").select_option("ssl")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Test and save").click()
    page.wait_for_url("**/connected")
