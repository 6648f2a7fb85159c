"""The Mail Accounts page as a user watches it: a 2,000-message first sync shows its
progress bar by itself and ends in a result on the card (R16); the account form shows
"Days to keep on the server" only with the delete-after-days policy."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from flask_popaccounts import get_state
from flask_popaccounts.jobs.scheduler import start_in_process
from tests.support.dovecot import Dovecot
from tests.support.mail import make_message
from tests.support.slowlink import SlowLink
from tests.web.conftest import make_example

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


def add_through_wizard(page: Any, server: LiveServer, port: int, user: str,
                       password: str, name: str) -> None:
    page.goto(server.url + "/settings/mail-accounts/")
    page.get_by_role("link", name="Add an account").first.click()
    page.get_by_role("link", name="POP3", exact=False).first.click()
    page.get_by_role("link", name="Other", exact=False).first.click()
    page.get_by_label("Email address").fill(f"{user}@example.com")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Incoming (POP3) server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(port))
    page.get_by_label("Security").select_option("ssl")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Test and save").click()
    page.wait_for_url("**/connected")


#: The provider's speed towards us (bytes/s): 2,000 messages of ~4.3 KB take ~5 s.
LINK_RATE = 2_000_000


@pytest.fixture
def slow_link(dovecot: Dovecot) -> Iterator[SlowLink]:
    """Dovecot's implicit-TLS port behind a link slower than loopback."""
    with SlowLink("127.0.0.1", dovecot.pop3s_port, rate=LINK_RATE) as link:
        yield link


@pytest.fixture
def sched_live(tmp_path: Path, dovecot: Dovecot, slow_link: SlowLink) -> Iterator[LiveServer]:
    """The example webmail (CSRF on, CSP as shipped) reaching Dovecot over the slow link;
    its scheduler is started by the test, with the default 30 s tick, and shut down after."""
    app = make_example(
        tmp_path,
        WTF_CSRF_ENABLED=True,
        POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, slow_link.port),
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
    )
    try:
        with LiveServer(app) as server:
            yield server
    finally:
        sched = get_state(app).scheduler
        if sched is not None:
            sched.shutdown(wait=True)


SOME_OF_2000 = re.compile(r"^(\d{1,3}|1,\d{3}) of 2,000 messages$")


def test_first_sync_of_2000_messages_shows_its_bar_by_itself(
        page: Any, sched_live: LiveServer, dovecot: Dovecot, slow_link: SlowLink,
        new_user: tuple[str, str]) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [make_message(i, body_size=4000) for i in range(2000)])
    sign_in(page, sched_live)
    # The wizard saves the account; no scheduler runs yet, so its first fetch waits.
    add_through_wizard(page, sched_live, slow_link.port, user, password, "Big mailbox")
    page.get_by_role("link", name="Back to Mail Accounts").click()
    page.wait_for_url("**/settings/mail-accounts/")
    card = page.locator(".pa-card").filter(has_text=f"{user}@example.com")
    bar = card.locator("[data-role=progress]")
    expect(card.locator("[data-role=status-label]")).to_have_text("Waiting for the first fetch")
    expect(bar).to_be_hidden()
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic())
            if r.url.endswith("/progress.json") else None)

    # From here on the page is never reloaded: the scheduler comes up and takes the
    # due account; the card follows by itself.
    start = time.monotonic()
    assert start_in_process(sched_live.app, explicit=True) is not None
    expect(bar).to_be_visible(timeout=15000)
    expect(card.locator("[data-role=progress-text]")).to_have_text(SOME_OF_2000, timeout=15000)
    expect(card.locator("progress")).to_have_attribute("max", "2000")
    seen, shown, texts = 0, 0, set()
    result = card.locator("[data-role=fetch-result]")
    deadline = time.monotonic() + 120
    while not result.is_visible() and time.monotonic() < deadline:
        seen += 1
        if bar.is_visible():
            shown += 1
            texts.add(card.locator("[data-role=progress-text]").inner_text())
        page.wait_for_timeout(100)
    took = time.monotonic() - start
    expect(result).to_have_text("2,000 messages fetched")
    expect(bar).to_be_hidden()
    expect(card.locator("[data-role=message-count]")).to_have_text("2,000")
    expect(card.locator("[data-role=storage-used]")).not_to_have_text("0 bytes")
    expect(card.locator("[data-role=status-label]")).to_have_text("Working")
    expect(card.locator("[data-role=last-check] time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-"))
    expect(card.locator("[data-role=last-check]")).not_to_have_text("Not yet")
    assert page.url.endswith("/settings/mail-accounts/")  # no navigation happened
    assert shown >= 0.8 * seen, (shown, seen)  # the bar showed through the fetch
    assert len(texts) >= 2, texts  # and it moved
    print(f"\nfirst sync of 2,000 messages: {took:.1f} s on the page, bar visible in "
          f"{shown} of {seen} samples, {len(texts)} distinct texts, {len(polls)} polls "
          f"({len(polls) / took:.2f}/s)")
