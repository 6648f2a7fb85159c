"""Adding an Outlook.com account in Chromium: the provider's sign-in really opens in a
pop-up, the user consents there, the pop-up closes itself and the wizard updates
(postMessage), then the mail arrives over XOAUTH2; and the same flow with pop-ups
blocked, where the page itself goes to the provider and comes back (R12)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.oauth.conftest import (  # noqa: F401 (fixtures)
    CLIENT_ID,
    PREFIX,
    MsUser,
    authsrv,
    mail,
    ms_user,
    oauth_config,
    oauth_dovecot,
)
from tests.support.authserver import AuthServer
from tests.support.dovecot import Dovecot
from tests.web.conftest import make_example

from .conftest import LiveServer
from .test_accounts_browser import check_now_and_wait, mailbox_rows, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def oauth_live(tmp_path: Path, authsrv: AuthServer,  # noqa: F811
               oauth_dovecot: Dovecot) -> Iterator[LiveServer]:  # noqa: F811
    app = make_example(tmp_path, WTF_CSRF_ENABLED=True,
                       **oauth_config(authsrv, oauth_dovecot))
    with LiveServer(app) as server:
        authsrv.clients[CLIENT_ID].redirect_uris.append(f"{server.url}{PREFIX}/oauth/callback")
        yield server


def open_outlook_step(page: Any, server: LiveServer, user: MsUser) -> None:
    sign_in(page, server)
    page.goto(f"{server.url}{PREFIX}/add/pop3")
    page.get_by_role("link", name=re.compile("^Outlook.com")).click()
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Account name").fill("Outlook")


def consent(window: Any, user: MsUser) -> None:
    window.wait_for_load_state()
    assert window.get_by_label("Username").input_value() == user.email  # login_hint
    window.get_by_label("Password").fill(user.password)
    window.get_by_role("button", name="Accept").click()


def test_outlook_sign_in_in_a_popup(page: Any, oauth_live: LiveServer,
                                    oauth_dovecot: Dovecot,  # noqa: F811
                                    ms_user: MsUser) -> None:  # noqa: F811
    oauth_dovecot.deliver(ms_user.email, mail("Hello from Outlook", 1))
    open_outlook_step(page, oauth_live, ms_user)
    with page.expect_popup() as popup_info:
        page.get_by_role("button", name="Authenticate").click()
    popup = popup_info.value
    status = page.locator("[data-pa-oauth-status]")
    assert "in the window that opened" in status.inner_text()
    popup.wait_for_url(re.compile(r"/authorize\?"))  # the provider's page, in the pop-up
    assert not popup.url.startswith(oauth_live.url)
    consent(popup, ms_user)
    popup.wait_for_event("close")  # it closed itself after telling the wizard
    status.get_by_text(f"\u2068{ms_user.email}\u2069 is connected.").wait_for()
    page.wait_for_url(re.compile(r"/\d+/connected$"))
    account_id = int(re.search(r"/(\d+)/connected", page.url).group(1))  # type: ignore[union-attr]
    check_now_and_wait(page, oauth_live, account_id)
    assert mailbox_rows(page, oauth_live, account_id) == ["Hello from Outlook"]


def test_outlook_sign_in_with_popups_blocked(page: Any, oauth_live: LiveServer,
                                             ms_user: MsUser) -> None:  # noqa: F811
    page.add_init_script("window.open = function () { return null; };")
    open_outlook_step(page, oauth_live, ms_user)
    page.get_by_role("button", name="Authenticate").click()
    page.wait_for_url(re.compile(r"/authorize\?"))  # this page went to the provider
    consent(page, ms_user)
    page.wait_for_url(re.compile(r"/\d+/connected$"))
    assert f"<bdi>{ms_user.email}</bdi> is connected" in page.content()
