"""The pages as an Arabic and an English reader meet them, in Chromium.

The browser asks for its language the way a reader's does (``Accept-Language`` from the
context's locale; nothing forced in the config). In each language: sign in, walk the
wizard from the account type to the outgoing step against the real Dovecot and
aiosmtpd, save the outgoing server, and read the Mail Accounts page with a card in every
status. Every page must carry the reader's ``lang``/``dir``, and in Arabic show no
English word outside data (tests/support/visible_text.py); on the right-to-left page
the cards' addresses must still read left to right. A screenshot of each page lands in
the test's folder for a person to look at.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from flask_popaccounts import get_state
from flask_popaccounts.storage.models import Account
from tests.sending.conftest import dns_server, owner_id, smtpd  # noqa: F401 (fixtures)
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers
from tests.support.visible_text import untranslated
from tests.web.conftest import PASSWORDS

from .conftest import LiveServer

pytestmark = pytest.mark.browser

STATUSES = [("needs_password", "auth_failed"), ("needs_reauth", "token_rejected"),
            ("retrying", "connection_failed"), ("needs_attention", "certificate_invalid"),
            ("paused_quota", None), ("new", None)]


def _read(page: Any, lang: str, shots: Path, name: str) -> None:
    """The page is in the reader's language and direction; a screenshot for a person."""
    page.wait_for_load_state()
    html = page.locator("html")
    assert html.get_attribute("lang") == lang, (name, page.url)
    assert html.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr"), (name, page.url)
    if lang == "ar":
        left = untranslated(page.content())
        assert left == [], f"{name} ({page.url}):\n" + "\n".join(left)
    page.screenshot(path=str(shots / f"{name}-{lang}.png"), full_page=True)


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_wizard_to_the_outgoing_step_and_every_card(
        browser: Any, mail_live: LiveServer, dovecot: Dovecot, smtpd: SMTPServers,  # noqa: F811
        new_user: tuple[str, str], lang: str, tmp_path: Path) -> None:
    user, password = new_user
    smtpd.add_user(user, password)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=lang)
    page = context.new_page()
    page.set_default_timeout(20000)
    base = mail_live.url
    try:
        page.goto(base + "/login")
        _read(page, lang, tmp_path, "login")
        page.fill("#username", "alice")
        page.fill("#password", PASSWORDS["alice"])
        page.press("#password", "Enter")
        page.wait_for_url(re.compile(r"/mail/"))
        _read(page, lang, tmp_path, "mailbox-empty")

        page.goto(base + "/settings/mail-accounts/")
        _read(page, lang, tmp_path, "accounts-empty")
        page.locator("a[href$='/settings/mail-accounts/add']").first.click()
        _read(page, lang, tmp_path, "wizard-type")
        page.locator("a[href$='/add/pop3']").click()
        _read(page, lang, tmp_path, "wizard-provider")
        page.locator("a[href$='/add/pop3/other']").click()
        _read(page, lang, tmp_path, "wizard-account")
        page.fill("#email", f"{user}@example.com")
        page.fill("#name", "Work" if lang == "en" else "العمل")
        page.fill("#pop_host", "127.0.0.1")
        page.fill("#pop_port", str(dovecot.pop3s_port))
        page.select_option("#pop_security", "ssl")
        page.fill("#pop_username", user)
        page.fill("#password", password)
        page.locator("button.pa-button-primary[type=submit]").click()
        page.wait_for_url(re.compile(r"/connected$"))
        _read(page, lang, tmp_path, "wizard-connected")
        account_id = int(re.search(r"/(\d+)/connected", page.url).group(1))  # type: ignore[union-attr]

        page.locator(f"a[href$='/{account_id}/outgoing']").first.click()
        _read(page, lang, tmp_path, "wizard-outgoing")
        page.check("input[name=mode][value=custom]")
        page.fill("#smtp_host", "127.0.0.1")
        page.fill("#smtp_port", str(smtpd.submission_port))
        page.select_option("#smtp_security", "starttls")
        page.check("input[name=auth_mode][value=same]")
        page.locator("button.pa-button-primary[type=submit]").click()
        page.wait_for_load_state()
        _read(page, lang, tmp_path, "after-outgoing")

        _cards_in_every_status(mail_live, lang)
        page.goto(base + "/settings/mail-accounts/")
        _read(page, lang, tmp_path, "accounts-every-status")
        cards = page.locator(".pa-card")
        assert cards.count() == 1 + len(STATUSES)
        labels = {page.locator(f"#account-{aid} [data-role=status-label]").inner_text()
                  for aid in _ids(mail_live)[1:]}
        assert len(labels) == len(STATUSES)  # every status in its own words
        if lang == "ar":
            assert all(re.search("[\u0600-\u06ff]", label) for label in labels), labels
            # an address on the right-to-left page still reads left to right
            address = page.locator(f"#account-{account_id} bdi", has_text=user).first
            assert address.evaluate("el => getComputedStyle(el).direction") == "ltr"
    finally:
        context.close()


def _ids(server: LiveServer) -> list[int]:
    with get_state(server.app).session_factory() as s:
        return [a.id for a in s.query(Account).order_by(Account.id)]


def _cards_in_every_status(server: LiveServer, lang: str) -> None:
    app = server.app
    owner = owner_id(app)
    now = datetime.now(timezone.utc)
    with get_state(app).session_factory() as s:
        if s.query(Account).count() > 1:
            return
        model = s.query(Account).first()
        assert model is not None
        for n, (status, code) in enumerate(STATUSES):
            s.add(Account(owner_id=owner, email=f"{lang}{n}@example.net", name=f"Box {n}",
                          send_from=f"{lang}{n}@example.net", provider="other",
                          pop_host=f"pop{n}.example.net", pop_port=995, pop_security="ssl",
                          pop_username=f"u{n}", status=status, last_error_code=code,
                          next_due_at=now + timedelta(minutes=30),
                          message_count=n * 500, bytes_stored=n * 2_000_000,
                          secret_enc=model.secret_enc))
        s.commit()
