"""Sign in, add accounts through the wizard against Dovecot, read their mail, switch
accounts from the side pane and from the card icon, check now from the card (JS)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from flask_popaccounts.services.fetching import wait_for_check
from tests.support.dovecot import Dovecot
from tests.web.conftest import PASSWORDS, own_source_address

from .conftest import LiveServer

pytestmark = pytest.mark.browser


def mail(subject: str, date: str, i: int) -> bytes:
    return (f"From: Friend <friend{i}@example.org>\r\nTo: me@example.com\r\n"
            f"Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <br-{i}-{time.time_ns()}@x>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from {subject}.\r\n").encode()


def sign_in(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/")
    assert "/login" in page.url
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/mail/"))


def add_account(page: Any, server: LiveServer, dovecot: Dovecot, user: str, password: str,
                name: str) -> int:
    page.goto(server.url + "/")
    page.get_by_role("link", name="Settings · Mail Accounts").click()
    page.get_by_role("link", name="Add an account").first.click()
    page.get_by_role("link", name=re.compile("^POP3")).click()
    page.get_by_role("link", name=re.compile("^Other")).click()
    page.get_by_label("Email address").fill(f"{user}@example.com")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Incoming (POP3) server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(dovecot.pop3s_port))
    page.get_by_label("Security").select_option("ssl")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Test and save").click()
    page.wait_for_url(re.compile(r"/connected$"))
    assert "Set up outgoing mail" in page.content()
    account_id = int(re.search(r"/(\d+)/connected", page.url).group(1))  # type: ignore[union-attr]
    check_now_and_wait(page, server, account_id)
    return account_id


def check_now_and_wait(page: Any, server: LiveServer, account_id: int) -> None:
    """Click the connected page's "Check now" and wait until that fetch has ended."""
    page.get_by_role("button", name="Check now").click()
    # The check runs in a thread of this process (the live server's): once the POST
    # has come back to the Mail Accounts page, the thread exists; wait for it to end.
    page.wait_for_url(re.compile(r"/settings/mail-accounts/$"))
    assert wait_for_check(server.app, account_id, timeout=30)


def mailbox_rows(page: Any, server: LiveServer, account_id: int) -> list[str]:
    """The subjects listed in the account's mailbox page, top to bottom."""
    page.goto(f"{server.url}/mail/{account_id}/")
    rows = page.locator("table.list tbody tr")
    return [rows.nth(i).locator("td a").inner_text() for i in range(rows.count())]


def test_wizard_mail_and_switching(page: Any, live_app: LiveServer, dovecot: Dovecot,
                                   new_user: tuple[str, str]) -> None:
    user1, pw1 = new_user
    dovecot.add_user(user1 + "b", "second-secret")
    user2, pw2 = user1 + "b", "second-secret"
    dovecot.deliver(user1, mail("Work older", "Mon, 30 Jun 2025 09:00:00 +0000", 1))
    dovecot.deliver(user1, mail("Work newer", "Tue, 01 Jul 2025 09:00:00 +0000", 2))
    dovecot.deliver(user2, mail("Home only", "Wed, 02 Jul 2025 09:00:00 +0000", 3))

    sign_in(page, live_app)
    assert "You have not added any mailbox yet" in page.content()

    # a wrong password first: the named error, and the password field comes back empty
    page.goto(live_app.url + "/settings/mail-accounts/add/pop3/other")
    page.get_by_label("Email address").fill(f"{user1}@example.com")
    page.get_by_label("Account name").fill("Work")
    page.get_by_label("Incoming (POP3) server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(dovecot.pop3s_port))
    page.get_by_label("Username").fill(user1)
    page.get_by_label("Password", exact=True).fill("not-the-password")
    with own_source_address(live_app.app):  # keeps Dovecot's delay off the next sign-ins
        page.get_by_role("button", name="Test and save").click()
        expect(page.get_by_role("alert").filter(has_text="Authentication failed")).to_be_visible()
    assert page.get_by_label("Password", exact=True).input_value() == ""
    assert "not-the-password" not in page.content()

    work = add_account(page, live_app, dovecot, user1, pw1, "Work")
    assert mailbox_rows(page, live_app, work) == ["Work newer", "Work older"]
    # unread rows are bold
    weight = page.locator("table.list tbody tr").first.locator("td").first.evaluate(
        "el => getComputedStyle(el).fontWeight")
    assert int(weight) >= 700

    home = add_account(page, live_app, dovecot, user2, pw2, "Home")
    assert mailbox_rows(page, live_app, home) == ["Home only"]

    # switch from the side pane
    pane = page.get_by_role("navigation", name="Accounts")
    pane.get_by_role("link", name=re.compile("^Work")).click()
    page.wait_for_url(re.compile(rf"/mail/{work}/$"))
    assert page.locator("h1").inner_text().startswith("Work")
    assert "Home only" not in page.content()

    # open a message: it is marked read
    page.get_by_role("link", name="Work newer").click()
    assert "Hello from Work newer." in page.content()
    page.goto(f"{live_app.url}/mail/{work}/")
    assert page.locator("tr.read").count() == 1

    # switch from the card icon on the Mail Accounts page
    page.goto(live_app.url + "/settings/mail-accounts/")
    page.get_by_role("link", name=f"Switch to {user2}@example.com").click()
    page.wait_for_url(re.compile(rf"/mail/{home}/$"))
    assert "Home only" in page.content()

    # "Check now" on a card: sent with fetch(), the card updates without a reload
    dovecot.deliver(user2, mail("Home later", "Thu, 03 Jul 2025 09:00:00 +0000", 4))
    page.goto(live_app.url + "/settings/mail-accounts/")
    card = page.locator(f"#account-{home}")
    assert card.locator("[data-role=message-count]").inner_text() == "1"
    card.get_by_role("button", name="Check now").click()
    # (expect, not wait_for_function: a string predicate is eval, which the CSP forbids)
    expect(card.locator("[data-role=message-count]")).to_have_text("2", timeout=30000)
    assert page.url.endswith("/settings/mail-accounts/")  # no navigation happened
