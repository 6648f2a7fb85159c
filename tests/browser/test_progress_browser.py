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
from tests.web.conftest import PASSWORDS, make_example

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


def add_by_ids(page: Any, server: LiveServer, port: int, user: str, password: str,
               name: str) -> None:
    """The wizard's steps by their links and fields (any language)."""
    page.goto(server.url + "/settings/mail-accounts/")
    page.locator("a[href$='/settings/mail-accounts/add']").first.click()
    page.locator("a[href$='/add/pop3']").click()
    page.locator("a[href$='/add/pop3/other']").click()
    page.fill("#email", f"{user}@example.com")
    page.fill("#name", name)
    page.fill("#pop_host", "127.0.0.1")
    page.fill("#pop_port", str(port))
    page.select_option("#pop_security", "ssl")
    page.fill("#pop_username", user)
    page.fill("#password", password)
    page.locator("button.pa-button-primary[type=submit]").click()
    page.wait_for_url("**/connected")


def _words(app: Any, lang: str) -> dict[str, Any]:
    """What the card says in ``lang``, from the catalogue (as the server writes it)."""
    from flask_popaccounts.services import health
    from flask_popaccounts.storage.models import Account
    from flask_popaccounts.web import progress as web_progress

    with app.test_request_context(headers={"Accept-Language": lang}):
        some = web_progress.progress_text({"done": 987654321, "total": 2000})
        return {
            "some": re.compile("^" + re.escape(some).replace("987,654,321", r"[\d,]{1,5}")
                               + "$"),
            "result": web_progress.result_text(2000),
            "waiting": health.status_view(Account(enabled=True, status="new")).label,
            "working": health.status_view(Account(enabled=True, status="ok")).label,
        }


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_first_sync_of_2000_messages_shows_its_bar_by_itself(
        browser: Any, sched_live: LiveServer, dovecot: Dovecot, slow_link: SlowLink,
        new_user: tuple[str, str], lang: str) -> None:
    user, password = new_user
    words = _words(sched_live.app, lang)
    if lang == "en":  # the catalogue's words are the ones a reader expects
        assert words["result"] == "2,000 messages fetched"
        assert words["some"].match("1,234 of 2,000 messages")
    else:
        assert words["result"] == "جُلبت 2,000 رسالة"
    dovecot.deliver_many(user, [make_message(i, body_size=4000) for i in range(2000)])
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=lang)
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        _watch_first_sync(page, sched_live, slow_link, user, password, words)
    finally:
        context.close()


def _watch_first_sync(page: Any, sched_live: LiveServer, slow_link: SlowLink, user: str,
                      password: str, words: dict[str, Any]) -> None:
    page.goto(sched_live.url + "/login")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORDS["alice"])
    page.press("#password", "Enter")
    page.wait_for_url(re.compile(r"/mail/"))
    # The wizard saves the account; no scheduler runs yet, so its first fetch waits.
    add_by_ids(page, sched_live, slow_link.port, user, password, "Big mailbox")
    page.locator("a.pa-button[href$='/settings/mail-accounts/']").click()
    page.wait_for_url("**/settings/mail-accounts/")
    card = page.locator(".pa-card").filter(has_text=f"{user}@example.com")
    bar = card.locator("[data-role=progress]")
    expect(card.locator("[data-role=status-label]")).to_have_text(words["waiting"])
    expect(bar).to_be_hidden()
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic())
            if r.url.endswith("/progress.json") else None)

    # From here on the page is never reloaded: the scheduler comes up and takes the
    # due account; the card follows by itself.
    start = time.monotonic()
    assert start_in_process(sched_live.app, explicit=True) is not None
    expect(bar).to_be_visible(timeout=15000)
    expect(card.locator("[data-role=progress-text]")).to_have_text(words["some"],
                                                                   timeout=15000)
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
    expect(result).to_have_text(words["result"])
    expect(bar).to_be_hidden()
    expect(card.locator("[data-role=message-count]")).to_have_text("2,000")
    expect(card.locator("[data-role=storage-used]")).to_have_text(re.compile(r"^[\d.,]+ \S"))
    expect(card.locator("[data-role=storage-used]")).not_to_have_text(re.compile(r"^0 "))
    expect(card.locator("[data-role=status-label]")).to_have_text(words["working"])
    expect(card.locator("[data-role=last-check] time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-"))
    expect(card.locator("[data-role=last-check] time")).not_to_be_empty()
    assert page.url.endswith("/settings/mail-accounts/")  # no navigation happened
    assert shown >= 0.8 * seen, (shown, seen)  # the bar showed through the fetch
    assert len(texts) >= 2, texts  # and it moved
    print(f"\nfirst sync of 2,000 messages: {took:.1f} s on the page, bar visible in "
          f"{shown} of {seen} samples, {len(texts)} distinct texts, {len(polls)} polls "
          f"({len(polls) / took:.2f}/s)")
