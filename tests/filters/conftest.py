"""Filters and vacation on real servers: Dovecot in, aiosmtpd out (the sending fixtures)."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from flask import Flask
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.services import outgoing
from flask_popaccounts.storage.models import Account, SendAsAddress
from tests.sending.conftest import dns_server, owner_id, send_app, smtpd  # noqa: F401 (fixtures)
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers


def setup_account(app: Flask, dovecot: Dovecot, servers: SMTPServers, user: str, password: str,
                  *, forward_to: str = "me@home.example") -> int:
    """An account on Dovecot whose SMTP is the STARTTLS server (same login, any sender:
    the null sender must be allowed), plus a verified address of the same owner that
    forwards may go to."""
    servers.add_user(user, password)  # no sender restriction: MAIL FROM:<> must pass
    owner = owner_id(app)
    with app.test_request_context():
        session = get_state(app).session_factory()
        try:
            account = svc.create_account(app, session, owner, svc.AccountInput(
                email=f"{user}@example.com", name=f"{user} box", send_from="", reply_to="",
                is_default=False, provider="other", pop_host="127.0.0.1",
                pop_port=dovecot.pop3s_port, pop_security=Security.SSL, pop_username=user,
                password=password, delete_policy=DeletePolicy.KEEP, delete_after_days=0,
                fetch_interval_minutes=5))
            outgoing.save_outgoing(session, app, account, outgoing.OutgoingInput(
                host="127.0.0.1", port=servers.submission_port, security=Security.STARTTLS,
                auth_mode="same"))
            if forward_to and session.scalar(select(SendAsAddress).where(
                    SendAsAddress.address == forward_to, SendAsAddress.owner_id == owner)) is None:
                home = svc.create_account(app, session, owner, svc.AccountInput(
                    email=forward_to, name="Home", send_from="", reply_to="", is_default=False,
                    provider="other", pop_host="127.0.0.1", pop_port=dovecot.pop3s_port,
                    pop_security=Security.SSL, pop_username="nobody", password="x"))
                row = SendAsAddress(account_id=home.id, owner_id=owner, address=forward_to,
                                    kind="from", verified_at=datetime.now(timezone.utc),
                                    verified_by="code")
                session.add(row)
                session.commit()
            return int(account.id)
        finally:
            session.close()


def mail(n: int, to: str, *, frm: str = "Bob Sender <bob@example.org>", subject: str = "Hello",
         extra: str = "", body: str = "Just a note.", arrived: datetime | None = None
         ) -> bytes:
    """A message dated July 2025 that the last server received ``arrived`` (default:
    now; only mail that arrived after a rule was switched on triggers its forwards)."""
    when = format_datetime(arrived or datetime.now(timezone.utc))
    return (f"Received: from mx.example.org by mx.example.net; {when}\r\n"
            f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 01 Jul 2025 09:{n:02d}:00 +0000\r\n"
            f"Message-ID: <msg-{n}-{abs(hash(to)) % 10**8}@example.org>\r\n{extra}"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def db(app: Flask) -> Any:
    return get_state(app).session_factory()


def account(app: Flask, account_id: int) -> Account:
    with db(app) as s:
        row = s.get(Account, account_id)
        assert row is not None
        return row
