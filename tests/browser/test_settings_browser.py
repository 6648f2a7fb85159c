"""Headless Chromium: a signature created and edited on its page shows up in compose,
switching From swaps it (our script), and a template is created and inserted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import update

from flask_popaccounts import get_state
from flask_popaccounts.services import sendas
from flask_popaccounts.storage.models import Account, SendAsAddress, utcnow
from tests.sending.conftest import make_account, smtpd  # noqa: F401 (fixture)
from tests.support.smtpd import SMTPServers

from .conftest import LiveServer
from .test_accounts_browser import sign_in

pytestmark = pytest.mark.browser

PREFIX = "/settings/mail-accounts"


def verified_account(app: Any, email: str, name: str) -> int:
    """An account whose From is verified (the code flow is proven elsewhere)."""
    account_id = make_account(app, email, email.split("@")[0], "p")
    with get_state(app).session_factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        account.name = name
        sendas.sync_send_as(s, account)
        s.execute(update(SendAsAddress).where(SendAsAddress.account_id == account_id)
                  .values(verified_at=utcnow(), verified_by="code"))
        s.commit()
    return account_id


def body_of(page: Any) -> str:
    return str(page.locator("#body").input_value()).replace("\r\n", "\n")


def test_signature_in_compose_switch_from_and_template_insert(
        page: Any, mail_live: LiveServer, smtpd: SMTPServers) -> None:  # noqa: F811
    app = mail_live.app
    a_id = verified_account(app, "home-sig@example.com", "Home")
    b_id = verified_account(app, "work-sig@example.com", "Work")
    sign_in(page, mail_live)

    # create A's signature from the account card's link, then edit it and preview
    page.goto(f"{mail_live.url}{PREFIX}/")
    page.locator(f'a[href="{PREFIX}/{a_id}/signature"]').click()
    page.get_by_label("Signature (plain text)").fill("Ann from Home")
    page.get_by_label("Signature (HTML, optional)").fill("<i>Ann</i><script>x()</script>")
    page.get_by_role("button", name="Save signature").click()
    page.wait_for_url(re.compile(rf"/{a_id}/signature$"))
    assert "Signature saved" in page.content()
    assert page.locator("[data-role=preview-html] i").inner_text() == "Ann"
    assert page.locator("[data-role=preview-html] script").count() == 0
    page.get_by_label("Signature (plain text)").fill("Ann from Home, edited")
    page.get_by_role("button", name="Preview").click()
    assert "Ann from Home, edited" in page.locator("[data-role=preview-text]").inner_text()
    page.get_by_role("button", name="Save signature").click()
    page.wait_for_url(re.compile(rf"/{a_id}/signature$"))

    page.goto(f"{mail_live.url}{PREFIX}/{b_id}/signature")
    page.get_by_label("Signature (plain text)").fill("Bob from Work")
    page.get_by_role("button", name="Save signature").click()
    page.wait_for_url(re.compile(rf"/{b_id}/signature$"))

    # compose from A shows A's signature; switching From to B swaps it (no reload)
    page.goto(f"{mail_live.url}/compose?account_id={a_id}")
    assert "-- \nAnn from Home, edited" in body_of(page)
    page.locator("#body").press("Control+Home")
    page.locator("#body").type("Hello there,")
    page.select_option("#account_id", str(b_id))
    body = body_of(page)
    assert body.startswith("Hello there,") and "Ann from Home" not in body
    assert body.count("-- \nBob from Work") == 1
    page.select_option("#account_id", str(a_id))
    assert "Bob from Work" not in body_of(page) and body_of(page).count("Ann from Home") == 1
    page.select_option("#account_id", str(b_id))
    page.get_by_label("To", exact=True).fill("zed-browser@example.org")
    page.get_by_label("Subject").fill("Swapped")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(rf"/mail/{b_id}"))
    got = smtpd.relayed("zed-browser@example.org")[-1].message
    text = got.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert got["From"].addresses[0].addr_spec == "work-sig@example.com"
    assert text.count("Bob from Work") == 1 and "Ann" not in text

    # a template, created on its page and inserted from compose (the form reloads)
    page.goto(f"{mail_live.url}{PREFIX}/{a_id}/templates")
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Template name").fill("Thank you")
    page.get_by_label("Subject").fill("Thanks {recipient_name}")
    page.get_by_label("Message").fill("Dear {recipient_name},\nthank you. {account_name}")
    page.get_by_role("button", name="Create template").click()
    page.wait_for_url(re.compile(rf"/{a_id}/templates$"))
    assert page.locator("[data-template-name='Thank you']").count() == 1

    page.goto(f"{mail_live.url}/compose?account_id={a_id}")
    page.get_by_label("To", exact=True).fill("Zoë Field <zoe-browser@example.org>")
    page.select_option("#template_id", label="Thank you")
    with page.expect_navigation():  # the form is posted; compose comes back filled in
        page.get_by_role("button", name="Insert").click()
    assert page.get_by_label("Subject").input_value() == "Thanks Zoë Field"
    body = body_of(page)
    assert body.startswith("Dear Zoë Field,\nthank you. Home")
    assert body.count("-- \nAnn from Home, edited") == 1
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(rf"/mail/{a_id}"))
    got = smtpd.relayed("zoe-browser@example.org")[-1].message
    assert got["Subject"] == "Thanks Zoë Field"
    text = got.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text.startswith("Dear Zoë Field,") and text.count("Ann from Home, edited") == 1
