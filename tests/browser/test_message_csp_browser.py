"""Headless Chromium: message HTML never runs script, even when the sanitiser lets it
through, and the webmail's own pages work under their Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from flask_popaccounts.services import reading
from tests.support.dovecot import Dovecot

from .conftest import LiveServer
from .test_accounts_browser import add_account, sign_in

pytestmark = pytest.mark.browser

HOSTILE = (
    b"From: Mallory <mallory@example.org>\r\nTo: me@example.com\r\nSubject: Hostile HTML\r\n"
    b"Date: Tue, 01 Jul 2025 10:00:00 +0000\r\nMessage-ID: <hostile@example.org>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p id='visible'>Hello from the HTML body.</p>"
    b"<script>document.body.setAttribute('data-script-ran', '1');"
    b"parent.document.title = 'PWNED by script'; alert('script');</script>"
    b"<img src='x:broken' alt='broken' onerror=\"document.body.setAttribute('data-onerror-ran',"
    b" '1'); parent.document.title = 'PWNED by onerror'; alert('onerror')\">"
    b"<a href='https://example.org/read'>Read more</a>\r\n"
)


@pytest.mark.parametrize("sanitiser", ["on", "missed it"])
def test_script_in_a_message_body_never_runs(page: Any, live_app: LiveServer, dovecot: Dovecot,
                                             new_user: tuple[str, str], sanitiser: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if sanitiser == "missed it":  # the last line of defence alone: the frame and its CSP
        monkeypatch.setattr(reading, "sanitize_html", lambda html: (html, False))
    user, password = new_user
    dovecot.deliver(user, HOSTILE)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console: list[tuple[str, str]] = []  # (the document that logged it, the text)
    page.on("console", lambda m: console.append((m.location.get("url", ""), m.text)))

    sign_in(page, live_app)
    account_id = add_account(page, live_app, dovecot, user, password, "Inbox")
    page.goto(f"{live_app.url}/mail/{account_id}/")
    page.get_by_role("link", name="Hostile HTML").click()
    page.wait_for_url(re.compile(rf"/mail/{account_id}/\d+$"))

    frame = page.frame_locator("iframe[data-pa-message-frame]")
    expect(frame.get_by_text("Hello from the HTML body.")).to_be_visible()
    expect(frame.get_by_role("link", name="Read more")).to_have_attribute(
        "href", "https://example.org/read")
    if sanitiser == "missed it":  # the script and the handler did reach the document
        assert frame.locator("script").count() == 1
        assert frame.locator("img[onerror]").count() == 1
    body = frame.locator("body")
    assert body.get_attribute("data-script-ran") is None
    assert body.get_attribute("data-onerror-ran") is None
    assert "PWNED" not in page.title() and page.title().startswith("Hostile HTML")
    assert dialogs == []
    # The page's own script (static, allowed by the CSP) ran: it sized the frame.
    iframe = page.locator("iframe[data-pa-message-frame]")
    expect(iframe).to_have_attribute("style", re.compile(r"block-size: \d+px"))
    frame_blocked = [t for url, t in console if url.endswith("/body")]
    if sanitiser == "missed it":  # blocked by the frame's sandbox and CSP, and said so
        assert any("Blocked script execution" in t for t in frame_blocked), console
    own_page_violations = [t for url, t in console if "Content Security Policy" in t
                           and not url.endswith("/body")]
    assert own_page_violations == [], console


def test_pages_work_under_the_csp(page: Any, live_app: LiveServer, dovecot: Dovecot,
                                  new_user: tuple[str, str]) -> None:
    """The wizard, the cards' check-now (fetch + progress JS), the mailbox, compose:
    no CSP violation anywhere (no inline script, handler or style left)."""
    user, password = new_user
    dovecot.deliver(user, HOSTILE.replace(b"Hostile HTML", b"Plain visit"))
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    sign_in(page, live_app)
    account_id = add_account(page, live_app, dovecot, user, password, "Inbox")
    page.goto(f"{live_app.url}/settings/mail-accounts/")
    card = page.locator(f"#account-{account_id}")
    expect(card.locator("[data-role=message-count]")).to_have_text("1")
    card.get_by_role("button", name="Check now").click()  # fetch() + progress.js
    expect(card.locator("[data-role=progress-text]")).not_to_have_text("", timeout=10000)
    assert page.url.endswith("/settings/mail-accounts/")  # handled by the page's JS
    for path in (f"/mail/{account_id}/", "/compose", "/settings/mail-accounts/send-as"):
        page.goto(live_app.url + path)
        # the stylesheet applied (a file, allowed): the top bar has its dark background
        bar = page.locator("header.topbar")
        assert bar.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(34, 48, 63)"
    assert violations == []
