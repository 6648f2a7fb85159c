"""Confirmation codes: random, >= 6 digits, hashed, bound to one address; the no-JS dialog."""

from __future__ import annotations

import hmac
from typing import Any
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


# -- limits that survive deleting the address (issue 11 item 17) -------------------------------


def _set_reply_to(app: Flask, account_id: int, reply_to: str) -> None:
    """What saving the account with another Reply-To does to the send-as rows."""
    from flask_popaccounts import get_state
    from flask_popaccounts.services import sendas
    from flask_popaccounts.storage.models import Account

    with app.app_context():
        session = get_state(app).session_factory()
        try:
            account = session.get(Account, account_id)
            assert account is not None
            account.reply_to = reply_to
            sendas.sync_send_as(session, account, now=get_state(app).clock())
            session.commit()
        finally:
            session.close()


def _resend(client: Any, app: Flask, account_id: int, kind: str) -> str:
    sid = send_as_id(app, account_id, kind)
    return str(client.post(f"{PREFIX}/send-as/{sid}/resend", follow_redirects=True).text)


def test_code_limits_per_address_user_and_site_survive_deleting_the_row(
        send_app: Flask, smtpd: SMTPServers) -> None:
    from tests.support.clock import FakeClock, use_clock

    clock = FakeClock()
    use_clock(send_app, clock)
    send_app.config.update(POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_DAY=2,
                           POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_USER_PER_DAY=4,
                           POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_SITE_PER_HOUR=6)
    victim = "victim-17@example.net"
    account_id = make_account(send_app, "lim17@example.com", "u", "p")
    _set_reply_to(send_app, account_id, victim)
    client = login(send_app.test_client())
    assert f"We emailed a confirmation code to <bdi>{victim}</bdi>" in _resend(
        client, send_app, account_id, "reply_to")
    # toggling the Reply-To deletes the row and makes a new one: the limit stays
    _set_reply_to(send_app, account_id, "")
    _set_reply_to(send_app, account_id, victim)
    assert "A code was sent very recently" in _resend(client, send_app, account_id,
                                                      "reply_to")
    clock.advance(minutes=2)
    assert "We emailed a confirmation code" in _resend(client, send_app, account_id,
                                                       "reply_to")
    for _ in range(2):
        _set_reply_to(send_app, account_id, "")
        _set_reply_to(send_app, account_id, victim)
        clock.advance(minutes=2)
        page = _resend(client, send_app, account_id, "reply_to")
        assert "Too many codes were sent to this address today" in page
    assert len(smtpd.relayed(victim)) == 2
    # another user cannot write to that address either (per target, whoever asks)
    other = make_account(send_app, "lim17b@example.com", "u", "p", user="bob")
    _set_reply_to(send_app, other, victim)
    bob = login(send_app.test_client(), "bob")
    assert "Too many codes were sent to this address today" in _resend(
        bob, send_app, other, "reply_to")
    assert len(smtpd.relayed(victim)) == 2
    # per user: alice's other addresses, up to 4 codes a day
    for n in range(2):
        clock.advance(minutes=2)
        _set_reply_to(send_app, account_id, f"x{n}-17@example.net")
        assert "We emailed a confirmation code" in _resend(client, send_app, account_id,
                                                           "reply_to")
    clock.advance(minutes=2)
    _set_reply_to(send_app, account_id, "x9-17@example.net")
    page = _resend(client, send_app, account_id, "reply_to")
    assert "You asked for too many confirmation codes today" in page
    assert smtpd.relayed("x9-17@example.net") == []
    # per site: bob's own addresses hit the site's hourly cap (6 sent this hour: 4 by
    # alice, then bob's)
    for n in range(2):
        clock.advance(minutes=2)
        _set_reply_to(send_app, other, f"b{n}-17@example.net")
        assert "We emailed a confirmation code" in _resend(bob, send_app, other, "reply_to")
    clock.advance(minutes=2)
    _set_reply_to(send_app, other, "b9-17@example.net")
    assert "This site is sending too many confirmation codes right now" in _resend(
        bob, send_app, other, "reply_to")
    # a day later every window has moved on
    clock.advance(hours=25)
    assert "We emailed a confirmation code" in _resend(bob, send_app, other, "reply_to")
    assert len(smtpd.relayed("b9-17@example.net")) == 1


# -- the code email leaves outside any write transaction ---------------------------------------


def test_no_write_lock_is_held_while_the_code_email_leaves(
        send_app: Flask, smtpd: SMTPServers, monkeypatch: Any) -> None:
    """On SQLite, another connection can write during the SMTP conversation (a fetch's
    commit or a page save would otherwise wait for the relay, then fail "locked")."""
    import sqlite3

    from flask_popaccounts import get_state
    from flask_popaccounts.engine import smtp as engine_smtp

    with send_app.app_context():
        path = get_state(send_app).engine.url.database
    assert path, "the store is an SQLite file here"
    real_send = engine_smtp.send
    seen: list[str] = []

    def send_watching_the_lock(*args: Any, **kwargs: Any) -> Any:
        con = sqlite3.connect(str(path), timeout=0.2)
        try:
            con.execute("BEGIN IMMEDIATE")  # takes the write lock, or waits for it
            con.rollback()
            seen.append("free")
        except sqlite3.OperationalError as exc:
            seen.append(str(exc))
        finally:
            con.close()
        return real_send(*args, **kwargs)

    monkeypatch.setattr(engine_smtp, "send", send_watching_the_lock)
    email = "lock-free@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    assert seen == ["free"] and len(smtpd.relayed(email)) == 1


def test_a_code_email_that_cannot_leave_is_taken_back(
        send_app: Flask, smtpd: SMTPServers) -> None:
    """Nothing counts against a limit, and the code already in the inbox still works."""
    from flask_popaccounts import get_state
    from flask_popaccounts.storage.models import CodeSend
    from tests.support.clock import FakeClock, use_clock
    from tests.support.dovecot import free_port

    from .test_pages_sending import state_of

    clock = FakeClock()
    use_clock(send_app, clock)
    email = "relay-down@example.com"
    account_id = make_account(send_app, email, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    first = smtpd.code_for(email)
    clock.advance(minutes=2)
    relay_port = send_app.config["POPACCOUNTS_SYSTEM_SMTP_PORT"]
    send_app.config["POPACCOUNTS_SYSTEM_SMTP_PORT"] = free_port()  # nobody listens there
    client.get(f"{PREFIX}/send-as")  # (shows the first code's message)
    page = _resend(client, send_app, account_id, "from")
    assert "Connection failed" in page and "We emailed a confirmation code to" \
        f" {email}. Click" not in page
    assert len(smtpd.relayed(email)) == 1
    send_app.config["POPACCOUNTS_SYSTEM_SMTP_PORT"] = relay_port
    with send_app.app_context():  # the failed one was not counted
        session = get_state(send_app).session_factory()
        assert [r.address for r in session.query(CodeSend).all()] == [email]
        session.close()
    sid = send_as_id(send_app, account_id)
    assert client.post(f"{PREFIX}/send-as/{sid}/verify",
                       data={"code": first}).status_code == 302  # the first still works
    assert state_of(client, email) == "verified"
