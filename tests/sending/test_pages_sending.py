"""The outgoing step, "Send mail as" and compose, end to end on real servers.

Dovecot for incoming, aiosmtpd for the account's SMTP servers (STARTTLS+AUTH and
implicit TLS, both with certificates from the test CA, plus an untrusted one and one
without STARTTLS) and the host's system relay, whose mailbox is where the
confirmation codes are read from.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.services import sendas
from flask_popaccounts.services.fetching import wait_for_check
from flask_popaccounts.storage.models import Account, Message, SendAsAddress, VerificationCode
from tests.support.dovecot import Dovecot, free_port
from tests.support.smtpd import SMTPServers
from tests.support.trap import Trap
from tests.web.conftest import PREFIX, account_form, login

from .conftest import make_account


def rows(app: Flask, model: Any, *where: Any) -> list[Any]:
    with app.app_context():
        session = get_state(app).session_factory()
        try:
            return list(session.scalars(select(model).where(*where)))
        finally:
            session.close()


def account_row(app: Flask, account_id: int) -> Account:
    return rows(app, Account, Account.id == account_id)[0]


def outgoing(client: FlaskClient, account_id: int, **over: Any) -> Any:
    data = {"mode": "custom", "smtp_host": "127.0.0.1", "smtp_port": "", "smtp_security": "ssl",
            "auth_mode": "same", "smtp_username": "", "smtp_password": ""}
    data.update(over)
    return client.post(f"{PREFIX}/{account_id}/outgoing", data=data)


def send(client: FlaskClient, account_id: int, **over: Any) -> Any:
    data = {"account_id": str(account_id), "to": "Friend <friend@example.org>", "cc": "",
            "bcc": "", "subject": "Hello", "body": "Hi there.\n", "in_reply_to": "",
            "references": ""}
    data.update(over)
    return client.post("/compose", data=data)


def sent_copies(app: Flask, account_id: int) -> list[Message]:
    from flask_popaccounts.storage.models import Folder

    sent = rows(app, Folder, Folder.account_id == account_id, Folder.role == "sent")[0]
    return rows(app, Message, Message.folder_id == sent.id)


def state_of(client: FlaskClient, address: str) -> str:
    page = client.get(f"{PREFIX}/send-as").text
    m = re.search(r'<tr id="send-as-(\d+)" data-state="(\w+)">\s*<td><bdi>'
                  + re.escape(address), page)
    assert m, page
    return m.group(2)


def send_as_id(app: Flask, account_id: int, kind: str = "from") -> int:
    return int(rows(app, SendAsAddress, SendAsAddress.account_id == account_id,
                    SendAsAddress.kind == kind)[0].id)


# -- the wizard's outgoing step --------------------------------------------------------------


def test_wizard_then_starttls_server_with_the_incoming_credentials(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    user, password = new_user
    email = f"{user}@example.com"
    smtpd.add_user(user, password, senders={email})  # same login at the provider's SMTP
    client = login(send_app.test_client())
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email=email, name="Work", pop_host="127.0.0.1", pop_port=str(dovecot.pop3s_port),
        pop_security="ssl", pop_username=user, password=password))
    assert resp.status_code == 302, resp.text
    account_id = int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]
    connected = client.get(resp.location).text
    assert "Set up outgoing mail" in connected
    assert client.get(f"{PREFIX}/{account_id}/outgoing").status_code == 200

    resp = outgoing(client, account_id, smtp_port=str(smtpd.submission_port),
                    smtp_security="starttls")
    assert resp.status_code == 302 and resp.location.endswith("/send-as"), resp.text
    acct = account_row(send_app, account_id)
    assert acct.smtp_verified and acct.smtp_host == "127.0.0.1" and acct.smtp_auth_mode == "same"
    assert acct.smtp_secret_enc is None  # "same": the incoming secret is reused, not copied
    assert state_of(client, email) == "verified"
    assert not smtpd.relayed(email)  # authenticated directly: no code needed (R10)

    resp = send(client, account_id, to="Zoë <zoe@example.org>", cc="cc@example.net",
                bcc="hidden@example.net", subject="Grüße aus Köln", body="Hallo, wie geht's?\n")
    assert resp.status_code == 302, resp.text
    got = smtpd.received(port=smtpd.submission_port, rcpt="zoe@example.org")[-1]
    assert got.login == user and got.mail_from == email
    assert sorted(got.rcpt_tos) == ["cc@example.net", "hidden@example.net", "zoe@example.org"]
    head = got.data.split(b"\r\n\r\n")[0]
    assert b"Bcc" not in head and b"hidden@" not in head
    assert "Grüße".encode() not in head and b"=?utf-8?" in head.lower()  # RFC 2047
    msg = got.message
    assert msg["From"].addresses[0].addr_spec == email
    assert msg["Subject"] == "Grüße aus Köln" and msg["Reply-To"] is None
    assert msg["Date"].datetime is not None and msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "text/plain" and "wie geht's" in msg.get_content()

    copies = sent_copies(send_app, account_id)
    assert len(copies) == 1 and copies[0].subject == "Grüße aus Köln" and copies[0].is_read
    assert copies[0].message_id == msg["Message-ID"]


def test_implicit_tls_server_with_its_own_credentials(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str]) -> None:
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, "pop-user", "pop-password")
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, smtp_port=str(smtpd.smtps_port), auth_mode="custom",
                    smtp_username=login_name, smtp_password=secret)
    assert resp.status_code == 302, resp.text
    acct = account_row(send_app, account_id)
    assert acct.smtp_auth_mode == "custom" and acct.smtp_secret_enc
    assert secret.encode() not in acct.smtp_secret_enc
    assert send(client, account_id).status_code == 302
    got = smtpd.received(port=smtpd.smtps_port)[-1]
    assert got.login == login_name and got.message["From"].addresses[0].addr_spec == login_name


@pytest.mark.parametrize("case", ["closed", "password", "untrusted", "no_starttls", "not_allowed"])
def test_outgoing_step_names_every_failure(send_app: Flask, smtpd: SMTPServers,
                                           smtp_user: tuple[str, str], case: str) -> None:
    login_name, secret = smtp_user
    email = login_name if case != "not_allowed" else "someone.else@example.com"
    account_id = make_account(send_app, email, "pop-user", "pop-password")
    port = {"closed": free_port(), "password": smtpd.submission_port,
            "untrusted": smtpd.untrusted_port, "no_starttls": smtpd.no_tls_port,
            "not_allowed": smtpd.submission_port}[case]
    if case == "closed":
        send_app.config["POPACCOUNTS_ALLOWED_SMTP_PORTS"] = (port,)
    security = "ssl" if case == "untrusted" else "starttls"
    typed = "wrong-password" if case == "password" else secret
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, smtp_port=str(port), smtp_security=security,
                    auth_mode="custom", smtp_username=login_name, smtp_password=typed)
    assert resp.status_code == 422, resp.text
    expected = {"closed": "Connection failed", "password": "Authentication failed",
                "untrusted": "Invalid certificate",
                "no_starttls": "The outgoing server does not offer STARTTLS",
                "not_allowed": "Sending not allowed"}[case]
    assert expected in resp.text
    notice = resp.text.split('id="test-error"', 1)[1].split("</section>", 1)[0]
    if case == "password":  # the server was reached: no advice about its name or port
        assert "server name and port" not in notice and "app password" in notice
    elif case == "closed":
        assert "server name and port" in notice
    assert typed not in resp.text  # the password is never echoed back
    assert account_row(send_app, account_id).smtp_host is None  # nothing saved


def test_port_25_refused_unless_allowed(send_app: Flask) -> None:
    account_id = make_account(send_app, "p25@example.com", "u", "p")
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, smtp_port="25", smtp_security="starttls")
    assert resp.status_code == 400 and "Only the standard SMTP submission ports" in resp.text


# -- verification through the system relay (R10) ----------------------------------------------


def test_skip_custom_server_then_verify_by_code(send_app: Flask, smtpd: SMTPServers,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    email = "relay-user@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, mode="system")
    assert resp.status_code == 302, resp.text
    code = smtpd.code_for(email)
    mail = smtpd.relayed(email)[-1]
    assert mail.mail_from == "no-reply@webmail.example"
    assert len(code) >= 6 and code.isdigit()
    assert state_of(client, email) == "pending"

    # sending from the unverified address is refused by the server side, not just hidden
    before = len(smtpd.relayed())
    resp = send(client, account_id)
    assert resp.status_code == 422 and "This address is not verified yet" in resp.text
    assert len(smtpd.relayed()) == before and sent_copies(send_app, account_id) == []
    compose = client.get("/compose").text
    assert f"&lt;{email}&gt;" not in compose  # not offered as From either

    sid = send_as_id(send_app, account_id)
    wrong = "000000" if code != "000000" else "111111"
    resp = client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": wrong})
    assert resp.status_code == 422 and "That code is not right (4 tries left)" in resp.text
    assert "<dialog" in resp.text and "open data-pa-autoopen" in resp.text  # works without JS
    resp = client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": f" {code[:3]} {code[3:]}"})
    assert resp.status_code == 302, resp.text
    assert state_of(client, email) == "verified"

    resp = send(client, account_id, subject="Through the relay")
    assert resp.status_code == 302, resp.text
    got = [m for m in smtpd.relayed("friend@example.org") if
           m.message["Subject"] == "Through the relay"][-1]
    assert got.message["From"].addresses[0].addr_spec == email
    assert got.message["Sender"].addresses[0].addr_spec == "no-reply@webmail.example"
    assert got.mail_from == "no-reply@webmail.example"
    assert len(sent_copies(send_app, account_id)) == 1

    # the code is stored only as a hash and never logged
    codes = rows(send_app, VerificationCode, VerificationCode.send_as_id == sid)
    assert codes and all(code not in c.code_hash and len(c.code_hash) == 64 for c in codes)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    assert ours and not any(code in line for line in ours)  # (aiosmtpd's own log is the server)


def test_too_many_attempts_lock_then_new_code(send_app: Flask, smtpd: SMTPServers) -> None:
    send_app.config["POPACCOUNTS_VERIFICATION_RESEND_SECONDS"] = 0
    email = "locked-user@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    code = smtpd.code_for(email)
    sid = send_as_id(send_app, account_id)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    for _ in range(4):
        assert client.post(f"{PREFIX}/send-as/{sid}/verify",
                           data={"code": wrong}).status_code == 422
    resp = client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": wrong})
    assert "Too many wrong codes" in resp.text
    resp = client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": code})
    assert resp.status_code == 422 and "Too many wrong codes" in resp.text  # right, but locked
    assert state_of(client, email) == "locked"

    assert client.post(f"{PREFIX}/send-as/{sid}/resend").status_code == 302
    new_code = smtpd.code_for(email)
    if new_code != code:  # the old code is dead for good
        assert client.post(f"{PREFIX}/send-as/{sid}/verify",
                           data={"code": code}).status_code == 422
    assert client.post(f"{PREFIX}/send-as/{sid}/verify",
                       data={"code": new_code}).status_code == 302
    assert state_of(client, email) == "verified"


def test_resend_is_rate_limited(send_app: Flask, smtpd: SMTPServers) -> None:
    email = "rate@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    sid = send_as_id(send_app, account_id)
    n = len(smtpd.relayed(email))
    resp = client.post(f"{PREFIX}/send-as/{sid}/resend", follow_redirects=True)
    assert "A code was sent very recently" in resp.text
    assert len(smtpd.relayed(email)) == n


def test_expired_code_refused_with_an_injected_clock(send_app: Flask, smtpd: SMTPServers) -> None:
    from datetime import timedelta

    from flask_popaccounts.services import verification

    email = "expiry@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    code = smtpd.code_for(email)
    sid = send_as_id(send_app, account_id)
    with send_app.test_request_context():
        session = get_state(send_app).session_factory()
        row = session.get(SendAsAddress, sid)
        assert row is not None
        issued = verification.current_code(session, sid)
        assert issued is not None
        later = issued.created_at + timedelta(hours=24, seconds=1)
        with pytest.raises(verification.CodeExpired):
            verification.check_code(session, send_app, row, code, now=later)
        assert verification.state_of(session, row, now=later) == "expired"
        just_in_time = issued.created_at + timedelta(hours=23, minutes=59)
        verification.check_code(session, send_app, row, code, now=just_in_time)
        assert row.verified_at is not None
        assert sendas.from_choices(session, row.owner_id)
        session.close()


def test_other_users_rows_are_404(send_app: Flask, smtpd: SMTPServers) -> None:
    account_id = make_account(send_app, "mine@example.com", "u", "p")
    alice = login(send_app.test_client())
    assert outgoing(alice, account_id, mode="system").status_code == 302
    sid = send_as_id(send_app, account_id)
    bob = login(send_app.test_client(), "bob")
    assert bob.get(f"{PREFIX}/{account_id}/outgoing").status_code == 404
    assert bob.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": "123456"}).status_code == 404
    assert bob.post(f"{PREFIX}/send-as/{sid}/resend").status_code == 404
    assert send(bob, account_id).status_code == 404
    assert "mine@example.com" not in bob.get(f"{PREFIX}/send-as").text


# -- Reply-To verification (R11) ----------------------------------------------------------------


def test_reply_to_must_be_verified_before_it_is_used(send_app: Flask, smtpd: SMTPServers,
                                                     smtp_user: tuple[str, str]) -> None:
    login_name, secret = smtp_user
    reply_to = "replies@elsewhere.example"
    account_id = make_account(send_app, login_name, login_name, secret, reply_to=reply_to)
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, smtp_port=str(smtpd.smtps_port))
    assert resp.status_code == 302, resp.text
    assert state_of(client, login_name) == "verified"
    assert state_of(client, reply_to) == "pending"  # a code went to the Reply-To
    code = smtpd.code_for(reply_to)

    before = len(smtpd.received(port=smtpd.smtps_port))
    resp = send(client, account_id)
    assert resp.status_code == 422 and "not verified" in resp.text
    assert len(smtpd.received(port=smtpd.smtps_port)) == before

    sid = send_as_id(send_app, account_id, "reply_to")
    assert client.post(f"{PREFIX}/send-as/{sid}/verify", data={"code": code}).status_code == 302
    assert send(client, account_id, subject="With Reply-To").status_code == 302
    got = smtpd.received(port=smtpd.smtps_port)[-1]
    assert got.message["Subject"] == "With Reply-To"
    assert got.message["Reply-To"].addresses[0].addr_spec == reply_to


# -- compose: header injection and strict addresses ---------------------------------------------


@pytest.mark.parametrize("field,value,expected", [
    ("subject", "Hi\r\nBcc: victim@example.org", "A field contains a line break"),
    ("to", "friend@example.org\r\nBcc: victim@example.org", "A field contains a line break"),
    ("to", "not an address", "An email address is not valid"),
    ("cc", "a@example.org, ;;;", "An email address is not valid"),
    ("in_reply_to", "<x@y>\nBcc: v@example.org", "A field contains a line break"),
    ("to", "", "An email address is not valid"),
])
def test_compose_refuses_injection_and_bad_addresses(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str], field: str,
        value: str, expected: str) -> None:
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)
    client = login(send_app.test_client())
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port)).status_code == 302
    before = len(smtpd.received())
    resp = send(client, account_id, **{field: value})
    assert resp.status_code == 422 and expected in resp.text, resp.text
    assert len(smtpd.received()) == before and sent_copies(send_app, account_id) == []


# -- reply and forward pick the account the message arrived on ----------------------------------


def test_reply_and_forward_from_a_fetched_message(send_app: Flask, dovecot: Dovecot,
                                                  smtpd: SMTPServers,
                                                  new_user: tuple[str, str]) -> None:
    user, password = new_user
    email = f"{user}@example.com"
    smtpd.add_user(user, password, senders={email})
    dovecot.deliver(user, (
        "From: Ann Sender <ann@example.org>\r\nTo: " + email + "\r\n"
        "Subject: Lunch?\r\nDate: Tue, 01 Jul 2025 09:00:00 +0000\r\n"
        "Message-ID: <lunch-1@example.org>\r\nReferences: <earlier@example.org>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nNoon at the usual place?\r\n").encode())
    client = login(send_app.test_client())
    other = make_account(send_app, "other@example.com", "u", "p")  # noqa: F841 (a decoy)
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email=email, name="Home", pop_host="127.0.0.1", pop_port=str(dovecot.pop3s_port),
        pop_security="ssl", pop_username=user, password=password))
    account_id = int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]
    assert outgoing(client, account_id, smtp_port=str(smtpd.submission_port),
                    smtp_security="starttls").status_code == 302
    assert client.post(f"{PREFIX}/{account_id}/check").status_code == 302
    assert wait_for_check(send_app, account_id, timeout=30)
    inbox = rows(send_app, Message, Message.account_id == account_id, Message.subject == "Lunch?")
    mid = inbox[0].id

    page = client.get(f"/mail/{account_id}/{mid}/reply").text
    assert f'<option value="{account_id}" selected>' in page
    assert 'value="Re: Lunch?"' in page and "&gt; Noon at the usual place?" in page
    assert 'name="in_reply_to" value="&lt;lunch-1@example.org&gt;"' in page
    resp = send(client, account_id, to="Ann Sender <ann@example.org>", subject="Re: Lunch?",
                body="Yes!\n", in_reply_to="<lunch-1@example.org>",
                references="<earlier@example.org> <lunch-1@example.org>")
    assert resp.status_code == 302, resp.text
    got = smtpd.received(rcpt="ann@example.org")[-1].message
    assert got["In-Reply-To"] == "<lunch-1@example.org>"
    assert got["References"] == "<earlier@example.org> <lunch-1@example.org>"
    assert got["From"].addresses[0].addr_spec == email

    page = client.get(f"/mail/{account_id}/{mid}/forward").text
    assert f'<option value="{account_id}" selected>' in page
    assert 'value="Fwd: Lunch?"' in page and "Forwarded message" in page


def test_deleting_the_account_removes_its_send_as_rows_and_codes(send_app: Flask,
                                                                 smtpd: SMTPServers) -> None:
    account_id = make_account(send_app, "gone@example.com", "u", "p",
                              reply_to="gone-replies@example.org")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    sids = [r.id for r in rows(send_app, SendAsAddress, SendAsAddress.account_id == account_id)]
    assert len(sids) == 2 and rows(send_app, VerificationCode,
                                   VerificationCode.send_as_id.in_(sids))
    assert client.post(f"{PREFIX}/{account_id}/delete").status_code == 302
    assert rows(send_app, SendAsAddress, SendAsAddress.account_id == account_id) == []
    assert rows(send_app, VerificationCode, VerificationCode.send_as_id.in_(sids)) == []


def test_a_full_storage_refuses_to_send_before_anything_leaves(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str]) -> None:
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, "pop-user", "pop-password")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port), auth_mode="custom",
                    smtp_username=login_name, smtp_password=secret).status_code == 302
    before = len(smtpd.received(port=smtpd.smtps_port))

    send_app.config["POPACCOUNTS_QUOTA_BYTES"] = 100  # far less than one message
    resp = send(client, account_id)
    assert resp.status_code == 422, resp.status_code
    assert "Your mail storage is full" in resp.text and "Free space" in resp.text
    assert len(smtpd.received(port=smtpd.smtps_port)) == before  # nothing went out
    assert sent_copies(send_app, account_id) == []

    send_app.config["POPACCOUNTS_QUOTA_BYTES"] = 10**9
    assert send(client, account_id).status_code == 302
    assert len(smtpd.received(port=smtpd.smtps_port)) == before + 1
    assert len(sent_copies(send_app, account_id)) == 1


# -- a moved outgoing server never gets the stored password (issue 11 item 18) -----------------


def test_moving_the_outgoing_server_needs_the_password_again(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str]) -> None:
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)
    client = login(send_app.test_client())
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port)).status_code == 302
    with Trap() as trap:
        port = trap.port
        send_app.config["POPACCOUNTS_ALLOWED_SMTP_PORTS"] = (
            *send_app.config["POPACCOUNTS_ALLOWED_SMTP_PORTS"], port)
        # "same" credentials, another port (or host): the incoming password stays home
        for over in ({"smtp_port": str(port)},
                     {"smtp_port": str(smtpd.smtps_port), "smtp_host": "localhost"}):
            resp = outgoing(client, account_id, **over)
            assert resp.status_code == 422, resp.text
            assert 'id="smtp_password-error"' in resp.text
            assert "Enter the password again" in resp.text
        # a password the new server would accept is not enough: it must be the stored one
        resp = outgoing(client, account_id, smtp_port=str(port), smtp_password="anything")
        assert resp.status_code == 422 and "not the password this account signs in" in resp.text
        trap.assert_untouched()  # nothing ever connected there
    acct = account_row(send_app, account_id)
    assert (acct.smtp_host, acct.smtp_port) == ("127.0.0.1", smtpd.smtps_port)
    # typed again: tested with it and saved
    resp = outgoing(client, account_id, smtp_port=str(smtpd.submission_port),
                    smtp_security="starttls", smtp_password=secret)
    assert resp.status_code == 302, resp.text
    assert account_row(send_app, account_id).smtp_port == smtpd.submission_port
    # unchanged server: no password needed
    assert outgoing(client, account_id, smtp_port=str(smtpd.submission_port),
                    smtp_security="starttls").status_code == 302


# -- Bcc: in the sender's Sent copy only (issue 11 item 29) ---------------------------------


def test_bcc_is_kept_in_the_sent_copy_and_never_sent(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str]) -> None:
    from email import message_from_bytes, policy

    from flask_popaccounts.storage.mailbox import read_raw

    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)
    client = login(send_app.test_client())
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port)).status_code == 302
    resp = send(client, account_id, to="friend@example.org",
                bcc="Zoë Geheim <secret29@example.net>, boss29@example.net",
                subject="Blind copies")
    assert resp.status_code == 302, resp.text
    got = smtpd.received(port=smtpd.smtps_port, rcpt="secret29@example.net")[-1]
    assert sorted(got.rcpt_tos) == ["boss29@example.net", "friend@example.org",
                                    "secret29@example.net"]
    wire_head = got.data.split(b"\r\n\r\n")[0]
    assert not re.search(rb"(?im)^bcc:", wire_head) and b"secret29" not in got.data
    copies = sent_copies(send_app, account_id)
    assert len(copies) == 1
    with send_app.app_context():
        session = get_state(send_app).session_factory()
        stored = read_raw(session, copies[0].id)
        session.close()
    kept = message_from_bytes(stored, policy=policy.default)
    assert [a.addr_spec for a in kept["Bcc"].addresses] == ["secret29@example.net",
                                                           "boss29@example.net"]
    assert kept["Bcc"].addresses[0].display_name == "Zoë Geheim"
    # apart from the Bcc line, the copy is the message as it was sent, byte for byte
    assert stored.endswith(got.data) and stored[:-len(got.data)].startswith(b"Bcc: ")
    assert copies[0].size == len(stored)
    # no Bcc typed: no Bcc line in the copy either
    assert send(client, account_id, subject="No blind copy").status_code == 302
    plain = next(c for c in sent_copies(send_app, account_id) if c.subject == "No blind copy")
    with send_app.app_context():
        session = get_state(send_app).session_factory()
        head = read_raw(session, plain.id).split(b"\r\n\r\n")[0]
        assert not re.search(rb"(?im)^bcc:", head)
        session.close()


def test_a_first_outgoing_server_of_another_domain_needs_the_password_typed(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str]) -> None:
    # "Same credentials as incoming" on a first outgoing setup: the stored incoming
    # password goes untyped only to the incoming server's own domain, never to a host
    # typed (or planted) elsewhere.
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)  # incoming 127.0.0.1
    client = login(send_app.test_client())
    with Trap() as trap:
        port = trap.port
        send_app.config["POPACCOUNTS_ALLOWED_SMTP_PORTS"] = (
            *send_app.config["POPACCOUNTS_ALLOWED_SMTP_PORTS"], port)
        resp = outgoing(client, account_id, smtp_host="localhost", smtp_port=str(port))
        assert resp.status_code == 422, resp.text
        assert 'id="smtp_password-error"' in resp.text
        assert "Enter the incoming password once more" in resp.text
        trap.assert_untouched()  # nothing connected: the password never left
    assert account_row(send_app, account_id).smtp_host is None
    # typed once: tested with it and saved
    resp = outgoing(client, account_id, smtp_host="localhost", smtp_port=str(smtpd.smtps_port),
                    smtp_password=secret)
    assert resp.status_code == 302, resp.text
    assert account_row(send_app, account_id).smtp_host == "localhost"


def test_a_bad_outgoing_server_name_is_explained_in_smtp_terms(send_app: Flask) -> None:
    account_id = make_account(send_app, "badhost@example.com", "u", "p")
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, smtp_host="smtp..example.com", smtp_port="465")
    assert resp.status_code == 400
    assert "not a valid server name" in resp.text and "smtp.example.com" in resp.text
    assert "pop.example.com" not in resp.text and "POP3" not in resp.text
    assert account_row(send_app, account_id).smtp_host is None
