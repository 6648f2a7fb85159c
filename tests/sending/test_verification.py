"""Confirmation codes: random, >= 6 digits, hashed, bound to one address; the no-JS dialog."""

from __future__ import annotations

import hmac
from unittest import mock

from flask import Flask

from flask_popaccounts.services import verification
from tests.support.smtpd import SMTPServers
from tests.web.conftest import PREFIX, login

from .conftest import make_account
from .test_pages_sending import outgoing, send_as_id


def test_codes_are_random_with_at_least_six_digits() -> None:
    codes = {verification.generate_code(6) for _ in range(200)}
    assert len(codes) > 190 and all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(verification.generate_code(4)) == 6  # never fewer than six
    assert len(verification.generate_code(8)) == 8


def test_hash_is_keyed_and_bound_to_the_address(send_app: Flask) -> None:
    h = verification.hash_code(send_app, 1, "123456")
    assert len(h) == 64 and "123456" not in h
    assert h != verification.hash_code(send_app, 2, "123456")  # another address
    other = Flask("other")
    other.config["SECRET_KEY"] = "another-key"
    assert h != verification.hash_code(other, 1, "123456")  # keyed with the app secret


def test_comparison_is_constant_time(send_app: Flask, smtpd: SMTPServers) -> None:
    account_id = make_account(send_app, "ct@example.com", "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    sid = send_as_id(send_app, account_id)
    with mock.patch.object(verification.hmac, "compare_digest",
                           wraps=hmac.compare_digest) as spy:
        client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": "12345x"})
        code = smtpd.code_for("ct@example.com")
        client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": code})
    ours = [c for c in spy.call_args_list  # (other code uses compare_digest too)
            if all(isinstance(a, str) and len(a) == 64 for a in c.args)]
    assert len(ours) == 2


def test_verify_page_without_js_renders_the_dialog_open(send_app: Flask,
                                                         smtpd: SMTPServers) -> None:
    account_id = make_account(send_app, "nojs@example.com", "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    sid = send_as_id(send_app, account_id)
    page = client.get(f"{PREFIX}/send-as").text
    assert f'href="{PREFIX}/send-as/{sid}/verify" data-pa-verify="verify-{sid}"' in page
    assert f'<dialog id="verify-{sid}"' in page and "data-pa-autoopen" not in page
    page = client.get(f"{PREFIX}/send-as/{sid}/verify").text
    assert (f'<dialog id="verify-{sid}" class="pa-dialog" '
            f'aria-labelledby="verify-{sid}-title" open') in page
    assert f'action="{PREFIX}/send-as/{sid}/verify"' in page
    assert 'autocomplete="one-time-code"' in page


def test_no_system_mailer_is_a_clear_error(send_app: Flask) -> None:
    send_app.config["POPACCOUNTS_SYSTEM_SMTP_HOST"] = None
    account_id = make_account(send_app, "nomailer@example.com", "u", "p")
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, mode="system")
    assert resp.status_code == 422 and "This site cannot send confirmation emails" in resp.text
