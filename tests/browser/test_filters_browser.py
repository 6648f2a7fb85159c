"""Headless Chromium: create a filter and a vacation reply through the pages, fetch real
mail from Dovecot with "Check now", and see their effect (folders, flags, the reply
aiosmtpd received)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from flask_popaccounts.services.fetching import wait_for_check
from flask_popaccounts.storage.models import Folder, Message
from tests.filters.conftest import db, mail, setup_account
from tests.sending.conftest import smtpd  # noqa: F401 (fixture)
from tests.support.dovecot import Dovecot
from tests.support.isolation import plain
from tests.support.smtpd import SMTPServers

from .conftest import LiveServer
from .test_accounts_browser import sign_in

pytestmark = pytest.mark.browser


def test_filter_and_vacation_made_in_the_pages_act_on_fetched_mail(
        page: Any, mail_live: LiveServer, dovecot: Dovecot, smtpd: SMTPServers,  # noqa: F811
        new_user: tuple[str, str]) -> None:
    user, pw = new_user
    app = mail_live.app
    aid = setup_account(app, dovecot, smtpd, user, pw, forward_to="")
    me = f"{user}@example.com"
    sign_in(page, mail_live)
    page.goto(f"{mail_live.url}/settings/mail-accounts/")
    card = page.locator(f"#account-{aid}") if page.locator(f"#account-{aid}").count() else page
    card.get_by_role("link", name="Filters").first.click()
    page.wait_for_url(re.compile(rf"/{aid}/filters$"))
    page.get_by_role("link", name="New rule").click()

    # a mistake first: the editor explains it and keeps the form
    page.get_by_label("Name", exact=True).fill("Invoices")
    page.get_by_label("Condition 1: look at").select_option("subject")
    page.get_by_label("Condition 1: test").select_option("matches")
    page.get_by_label("Condition 1: value").fill("(inv+)+")
    page.get_by_label("Action 1", exact=True).select_option("move")
    page.get_by_label("Action 1: folder or address").fill("Bills")
    page.get_by_label("Action 2", exact=True).select_option("flag")
    page.get_by_role("button", name="Save rule").click()
    alert = page.get_by_role("alert")
    assert "repeated group contains another repeat" in alert.inner_text()
    page.get_by_label("Condition 1: test").select_option("contains")
    page.get_by_label("Condition 1: value").fill("invoice")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url(re.compile(rf"/{aid}/filters$"))
    assert "Rule “<bdi>Invoices</bdi>” saved." in page.content()
    assert "If Subject contains “invoice”: Move to folder Bills; Flag" in plain(page.content())

    page.get_by_role("link", name="Vacation reply").click()
    page.wait_for_url(re.compile(rf"/{aid}/vacation$"))
    page.get_by_label("Send a vacation reply").check()
    page.get_by_label("Text", exact=True).fill("I am hiking until Monday.")
    page.get_by_role("button", name="Save").click()
    assert page.locator("#vacation-state").inner_text().startswith("On now")

    dovecot.deliver_many(user, [
        mail(1, me, frm=f"Dana <dana-{user}@example.org>", subject="Invoice 7"),
        mail(2, me, frm=f"news-{user}@example.org", subject="Digest",
             extra="List-Id: <d.example.org>\r\n"),
    ])
    page.goto(f"{mail_live.url}/settings/mail-accounts/")
    with page.expect_response(re.compile(rf"/{aid}/check")):  # (progress.js posts it)
        page.locator(f"form[action$='/{aid}/check'] button").click()
    assert wait_for_check(app, aid, timeout=30)
    with db(app) as s:
        placed = dict(s.execute(select(Message.subject, Folder.name)
                                .join(Folder, Folder.id == Message.folder_id)
                                .where(Message.account_id == aid)).all())
        flagged = s.scalar(select(Message.is_flagged).where(Message.account_id == aid,
                                                            Message.subject == "Invoice 7"))
    assert placed == {"Invoice 7": "Bills", "Digest": "Inbox"} and flagged
    got = [r for r in smtpd.received() if r.login == user]
    assert [r.rcpt_tos for r in got] == [[f"dana-{user}@example.org"]]  # not the list
    assert got[0].mail_from == "<>" and got[0].message["Auto-Submitted"] == "auto-replied"
    assert "hiking" in got[0].message.get_content()

    # "Run on existing mail" from the list page reports what it matched
    page.goto(f"{mail_live.url}/settings/mail-accounts/{aid}/filters")
    page.get_by_role("button", name="Run on existing mail").click()
    assert "1 message matched" in page.content()
