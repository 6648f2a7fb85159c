"""Header injection through RFC 2047 encoded words (issue 11 item 16), read from the bytes
aiosmtpd received: every header value that leaves is checked once decoded
(``engine/safety.py``, called by ``engine/message.build_message`` and
``engine/addresses``), so an encoded CR/LF is a form error and never a header line."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine.errors import HeaderInjection
from flask_popaccounts.services import sendas
from flask_popaccounts.storage.models import Account, SendAsAddress
from tests.support.smtpd import SMTPServers
from tests.web.conftest import PREFIX, login

from .conftest import make_account
from .test_pages_sending import outgoing, send, send_as_id, sent_copies

EVIL_Q = "=?utf-8?q?Hi=0D=0ABcc:_x@evil.example?="
EVIL_B = "=?utf-8?b?SGkNCkJjYzogeEBldmlsLmV4YW1wbGU=?="  # the same, base64
# EVIL_Q encoded once more: the email package decodes it to EVIL_Q and sends that word
EVIL_2 = "=?utf-8?b?PT91dGYtOD9xP0hpPTBEPTBBQmNjOl94QGV2aWwuZXhhbXBsZT89?="


def _everything_received(smtpd: SMTPServers) -> bytes:
    return b"".join(m.data for m in (*smtpd.received(), *smtpd.relayed()))


@pytest.mark.parametrize("field,value", [
    ("subject", EVIL_Q),
    ("subject", EVIL_B),
    ("subject", f"Hello {EVIL_Q} there"),
    ("subject", EVIL_2),
    ("to", f"{EVIL_2} <friend@example.org>"),
    ("to", f"{EVIL_Q} <friend@example.org>"),
    ("to", f'"{EVIL_Q}" <friend@example.org>'),
    ("cc", f"{EVIL_B} <cc@example.org>"),
    ("bcc", f"{EVIL_Q} <bcc@example.org>"),
])
def test_an_encoded_line_break_in_compose_is_a_form_error(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str], field: str,
        value: str) -> None:
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)
    client = login(send_app.test_client())
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port)).status_code == 302
    before = len(smtpd.received())
    resp = send(client, account_id, **{field: value})
    assert resp.status_code == 422, resp.text
    assert "A field contains a line break" in resp.text
    label = {"subject": "Subject", "to": "To", "cc": "Cc", "bcc": "Bcc"}[field]
    assert f"Field to correct: {label}</p>" in resp.text  # the page names the field
    assert len(smtpd.received()) == before and sent_copies(send_app, account_id) == []
    assert b"\nBcc: x@evil" not in _everything_received(smtpd)


def test_a_stored_account_name_with_an_encoded_line_break_never_splits_from(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str]) -> None:
    """The name was refused when saved (tests/web/test_pages.py); one already in the
    database (an older version, a host's own import) is refused where From is written."""
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)
    client = login(send_app.test_client())
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port)).status_code == 302
    with send_app.app_context():
        session = get_state(send_app).session_factory()
        account = session.get(Account, account_id)
        assert account is not None
        account.name = EVIL_Q
        session.commit()
        session.close()
    before = len(smtpd.received())
    resp = send(client, account_id)
    assert resp.status_code == 422 and "A field contains a line break" in resp.text
    assert "Field to correct: From (the account" in resp.text
    assert len(smtpd.received()) == before
    assert b"Bcc: x@evil" not in _everything_received(smtpd)


def test_confirmation_mail_headers_go_through_the_same_check(
        send_app: Flask, smtpd: SMTPServers) -> None:
    email = "conf16@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    send_app.config["POPACCOUNTS_SITE_NAME"] = EVIL_Q  # named in the code email's Subject
    assert outgoing(client, account_id, mode="system").status_code == 302
    assert smtpd.relayed(email) == []  # refused before anything left
    with send_app.test_request_context():
        session = get_state(send_app).session_factory()
        row = session.get(SendAsAddress, send_as_id(send_app, account_id))
        with pytest.raises(HeaderInjection):
            sendas.send_code(session, send_app, row)
        session.close()
    assert smtpd.relayed(email) == []
    send_app.config["POPACCOUNTS_SITE_NAME"] = "Example Webmail"
    page = client.post(f"{PREFIX}/send-as/{send_as_id(send_app, account_id)}/resend",
                       follow_redirects=True).text
    assert "We emailed a confirmation code" in page and len(smtpd.relayed(email)) == 1


def test_a_vacation_subject_with_an_encoded_line_break_is_refused_when_saved(
        send_app: Flask) -> None:
    from flask_popaccounts.engine.filters import RuleInvalid
    from flask_popaccounts.services import vacation

    account_id = make_account(send_app, "vac16@example.com", "u", "p")
    with send_app.app_context():
        session = get_state(send_app).session_factory()
        account = session.get(Account, account_id)
        with pytest.raises(RuleInvalid) as info:
            vacation.save_vacation(session, account, vacation.VacationInput(
                enabled=True, starts_on="", ends_on="", subject=EVIL_Q, body="Away."))
        assert "must not contain line breaks" in " ".join(info.value.problems)
        assert vacation.get_vacation(session, account_id) is None
        session.close()
