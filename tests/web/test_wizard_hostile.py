"""The add-account wizard's test against misbehaving servers shows the right words
(issue 11, item 10): after the server answered, never "cannot be reached at that host
name and port"; a certificate on a STARTTLS port never talks about port 995."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_popaccounts.engine import errors as E
from tests.support.hostilepop import PASSWORD, USER, HostilePOP

from .conftest import PREFIX, account_form, login


def _notice(page: str) -> str:
    """The text of the page's test-error notice (what the user reads about the failure)."""
    m = re.search(r'<section[^>]*id="test-error".*?</section>', page, re.S)
    assert m, page
    return html.unescape(re.sub(r"<[^>]+>", " ", m.group(0)))


@pytest.mark.parametrize(("quirk", "trusted", "error"), [
    ({"silent_after_greeting": True}, True, E.ServerStoppedAnswering),
    ({"silent_after_commands": 3}, True, E.ServerStoppedAnswering),  # CAPA, STLS, CAPA
    ({"stls_inject": b"+OK\r\n"}, True, E.TLSInjection),
    ({}, False, E.CertificateInvalid),
])
def test_wizard_names_what_went_wrong_after_the_server_answered(
        make_app: Callable[..., Flask], quirk: dict[str, Any], trusted: bool,
        error: type[E.PopAccountsError]) -> None:
    with HostilePOP() as srv:
        for name, value in quirk.items():
            setattr(srv.quirks, name, value)
        app = make_app(POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
                       POPACCOUNTS_CA_FILE=srv.ca_file if trusted else None,
                       POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, srv.port),
                       POPACCOUNTS_CONNECT_TIMEOUT=5, POPACCOUNTS_READ_TIMEOUT=1)
        client = login(app.test_client())
        resp = client.post(PREFIX + "/add/pop3/other", data=account_form(
            pop_host="127.0.0.1", pop_port=str(srv.port), pop_security="starttls",
            pop_username=USER, password=PASSWORD))
        assert resp.status_code == 422
        notice = " ".join(_notice(resp.text).split())
        # a certificate error in the words of STARTTLS (the connection used), not of SSL
        words = (E.CertificateInvalid.HELP_STARTTLS if error is E.CertificateInvalid
                 else error.help)
        assert error.title in notice and words in notice
        assert "cannot be reached at that host name and port" not in notice
        assert "Check the incoming server name and port" not in notice
        assert "995" not in notice  # a STARTTLS port: no advice about another port
        if error in (E.TLSInjection, E.CertificateInvalid):
            assert not any(c.startswith((b"USER", b"PASS", b"AUTH")) for c in srv.commands)
        assert "No other mailboxes yet" in client.get(PREFIX + "/").text  # nothing saved
