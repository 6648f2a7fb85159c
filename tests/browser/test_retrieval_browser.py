"""The wizard's retrieval settings in Chromium: "only mail that arrives from now on" and
a folder named after the account, then the edit page of the same account."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.dovecot import Dovecot

from .conftest import LiveServer
from .test_accounts_browser import check_now_and_wait, mailbox_rows, sign_in

pytestmark = pytest.mark.browser


def mail(subject: str, minute: int) -> bytes:
    return (f"From: Friend <friend@example.org>\r\nTo: me@example.com\r\n"
            f"Subject: {subject}\r\nDate: Tue, 01 Jul 2025 09:{minute:02d}:00 +0000\r\n"
            f"Message-ID: <rt-{minute}-{time.time_ns()}@x>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from {subject}.\r\n").encode()


def test_wizard_from_now_on_into_the_account_folder(page: Any, live_app: LiveServer,
                                                     dovecot: Dovecot,
                                                     new_user: tuple[str, str]) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [mail("Old one", 1), mail("Old two", 2)])
    sign_in(page, live_app)

    page.goto(live_app.url + "/settings/mail-accounts/add/pop3/other")
    settings = page.locator("fieldset#retrieval-settings")
    expect(settings.locator("legend").first).to_have_text("Retrieval settings")
    assert page.get_by_label("The Inbox").is_checked()  # the defaults
    assert page.get_by_label("All mail on the server").is_checked()
    assert not page.get_by_label("Mark as read on arrival").is_checked()
    assert page.get_by_label("A folder of this account").count() == 0  # none yet
    expect(page.get_by_label("Days to keep on the server")).to_be_hidden()
    expect(settings.get_by_text("POP cannot choose mail by date.")).to_be_visible()

    page.get_by_label("Email address").fill(f"{user}@example.com")
    page.get_by_label("Account name").fill("Old ISP")
    page.get_by_label("Incoming (POP3) server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(dovecot.pop3s_port))
    page.get_by_label("Security").select_option("ssl")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("A folder named after the account (created if missing)").check()
    page.get_by_label("Only mail that arrives from now on").check()
    page.get_by_label("Delete from the server once stored here").check()
    page.get_by_role("button", name="Test and save").click()
    page.wait_for_url(re.compile(r"/connected$"))
    account_id = int(re.search(r"/(\d+)/connected", page.url).group(1))  # type: ignore[union-attr]
    connected = page.url
    check_now_and_wait(page, live_app, account_id)

    # nothing old was imported; the account's folder is there, empty, in the side pane
    assert mailbox_rows(page, live_app, account_id) == []
    pane = page.get_by_role("navigation", name="Accounts")
    folder = pane.get_by_role("link", name=re.compile("^Old ISP$"))
    expect(folder).to_be_visible()
    assert len(dovecot.server_messages(user)) == 2  # seen, never deleted

    dovecot.deliver(user, mail("New one", 3))
    page.goto(connected)
    check_now_and_wait(page, live_app, account_id)
    page.goto(f"{live_app.url}/mail/{account_id}/")
    page.get_by_role("navigation", name="Accounts").get_by_role(
        "link", name="Old ISP 1 unread message").click()
    page.wait_for_url(re.compile(rf"/mail/{account_id}/folder/\d+/$"))
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    assert rows.first.locator("td a").inner_text() == "New one"
    assert "unread" in (rows.first.get_attribute("class") or "")
    assert len(dovecot.server_messages(user)) == 2  # the new one deleted, the old kept

    # the edit page: the first import is done (said so); an existing folder now offered
    page.goto(f"{live_app.url}/settings/mail-accounts/{account_id}/edit")
    assert page.get_by_label("Only mail that arrives from now on").count() == 0
    expect(page.get_by_text("2 messages that were on the server when the account was "
                            "added were left there and not imported.")).to_be_visible()
    assert page.get_by_label("A folder named after the account (created if missing)"
                             ).is_checked()
    folder_select = page.get_by_label("Folder", exact=True)
    expect(folder_select).to_be_hidden()
    page.get_by_label("A folder of this account").check()
    expect(folder_select).to_be_visible()
    folder_select.select_option(label="Old ISP")
    page.get_by_label("Mark as read on arrival").check()
    page.get_by_role("button", name="Test and save").click()
    page.wait_for_url(re.compile(r"/settings/mail-accounts/$"))
    page.goto(f"{live_app.url}/settings/mail-accounts/{account_id}/edit")
    assert page.get_by_label("A folder of this account").is_checked()
    assert page.get_by_label("Mark as read on arrival").is_checked()
    expect(page.get_by_label("Folder", exact=True)).to_have_value(re.compile(r"^\d+$"))
