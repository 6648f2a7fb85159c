"""Headless Chromium: skip the custom SMTP server, then verify the address in the Verify
dialog on "Send mail as" with the code read from the test system relay's mailbox."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.sending.conftest import make_account, smtpd  # noqa: F401 (fixture)
from tests.support.smtpd import SMTPServers

from .conftest import LiveServer
from .test_accounts_browser import sign_in

pytestmark = pytest.mark.browser


def test_verify_dialog_with_the_emailed_code(page: Any, mail_live: LiveServer,
                                             smtpd: SMTPServers) -> None:  # noqa: F811
    email = "browser-verify@example.com"
    account_id = make_account(mail_live.app, email, "u", "p")
    sign_in(page, mail_live)

    page.goto(f"{mail_live.url}/settings/mail-accounts/{account_id}/outgoing")
    page.get_by_label(re.compile("Send through this site.s mail server")).check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/send-as$"))
    assert f"We emailed a confirmation code to <bdi>{email}</bdi>" in page.content()
    row = page.locator("tr", has_text=email)
    assert row.get_attribute("data-state") == "pending"
    code = smtpd.code_for(email)

    # the Verify button opens a modal <dialog> (JS), not a new page
    row.get_by_role("link", name=f"Verify {email}").click()
    dialog = page.get_by_role("dialog", name=f"Verify {email}")
    dialog.wait_for(state="visible")
    assert "/send-as" in page.url and "/verify" not in page.url
    assert page.evaluate("document.querySelector('dialog[open]').matches(':modal')")

    # a wrong code: refused, the dialog comes back open with the error and focus in the field
    dialog.get_by_label("Confirmation code").fill("000000" if code != "000000" else "111111")
    dialog.get_by_role("button", name="Verify").click()
    dialog = page.get_by_role("dialog", name=f"Verify {email}")
    dialog.wait_for(state="visible")
    assert "That code is not right" in dialog.inner_text()
    assert page.evaluate("document.activeElement.name") == "code"

    # Cancel closes it without JS help (formmethod=dialog)
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")

    page.locator("tr", has_text=email).get_by_role("link", name=f"Verify {email}").click()
    dialog = page.get_by_role("dialog", name=f"Verify {email}")
    dialog.get_by_label("Confirmation code").fill(code)
    dialog.get_by_role("button", name="Verify").click()
    page.wait_for_load_state()
    assert f"<bdi>{email}</bdi> is verified" in page.content()
    assert page.locator("tr", has_text=email).get_attribute("data-state") == "verified"

    page.goto(f"{mail_live.url}/compose")
    assert email in page.get_by_label("From").inner_text()
